"""Third-party notices a user cannot act on, filtered where they are logged (never by silencing a library).

* DeepSpeed prints "Setting accelerator to CPU ..." the moment anything imports it, and accelerate imports it
  whenever it unwraps a model, so every run on a GPU-less machine printed it even without DeepSpeed.
* diffusers warns that ``cache_mag_vae`` (and the other mode keys the original EasyAnimate VAE configs carry) "will
  be ignored": every real V5/V5.1 checkpoint has them, and they describe what diffusers' class does anyway. The model
  families register such keys (:func:`register_benign_config_keys`); this module names no model.
* Processes other than the main one print errors only (their notices repeat rank 0's), from the start of the
  process: the argument checks run before Trainer's per-process log levels exist.

``install()`` is called by the command-line entry points; a library user importing hf_easyanimate keeps every
library's logging untouched.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

# class name -> config keys whose "were passed to X, but are not expected" notice says nothing a user can act on
BENIGN_CONFIG_KEYS: dict[str, frozenset[str]] = {}
_CONFIG_WARNING = re.compile(r"The config attributes \{(.*)\} were passed to (\w+), but are not expected")
_KEY = re.compile(r"'(\w+)':")
_STATE = {"installed": False, "deepspeed_in_use": False}


def deepspeed_in_use(value: bool | None = None) -> bool:
    """Whether this run uses DeepSpeed (then its banner stays); set by the training entry point once parsed."""
    if value is not None:
        _STATE["deepspeed_in_use"] = bool(value)
    launcher = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    return _STATE["deepspeed_in_use"] or launcher


class _DeepSpeedBanner(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return deepspeed_in_use() or not str(record.getMessage()).startswith("Setting accelerator to CPU")


def register_benign_config_keys(class_name: str, keys: set[str]) -> None:
    """Config keys of ``class_name`` whose "will be ignored" notice is dropped once :func:`install` ran."""
    BENIGN_CONFIG_KEYS[class_name] = BENIGN_CONFIG_KEYS.get(class_name, frozenset()) | frozenset(keys)


class _BenignConfigKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        match = _CONFIG_WARNING.search(str(record.getMessage()))
        if match is None or match.group(2) not in BENIGN_CONFIG_KEYS:
            return True
        keys = set(_KEY.findall(match.group(1)))
        return not keys or not keys <= BENIGN_CONFIG_KEYS[match.group(2)]


def process_rank() -> int:
    """This process's global rank as the launcher set it (0 without a launcher)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)


def install() -> None:
    """Attach the filters (idempotent); on non-main processes, errors only from here on."""
    if _STATE["installed"]:
        return
    _STATE["installed"] = True
    # DeepSpeed creates its logger on import and keeps the object: a filter attached now is still there then.
    logging.getLogger("DeepSpeed").addFilter(_DeepSpeedBanner())
    logging.getLogger("diffusers.configuration_utils").addFilter(_BenignConfigKeys())
    if process_rank() != 0:
        for name in ("hf_easyanimate", "transformers", "diffusers", "peft", "accelerate", "datasets"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")
