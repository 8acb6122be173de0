"""The original EasyAnimate flag dialect, translated into ours.

The seed command lines use ``--train_batch_size``, ``--checkpointing_steps``, ``--mixed_precision``,
... which have twins in ``TrainingArguments`` under other names. Everything here is a pure
function over ``{key: value}`` dicts so the CLI and recipe YAML share one translation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


class LegacyFlagConflict(ValueError):
    """An original flag and its Hugging Face twin were both given."""


@dataclass(frozen=True)
class LegacyFlag:
    """One original flag: what it becomes, and how its value converts."""

    target: str | None
    convert: Callable[[Any], dict[str, Any]] | None = None
    note: str = ""

    def translate(self, value: Any) -> dict[str, Any]:
        if self.convert is not None:
            return self.convert(value)
        if self.target is None:
            return {}
        return {self.target: value}


def _mixed_precision(value: Any) -> dict[str, Any]:
    """`bf16` -> `--bf16 true --fp16 false`, `fp16` -> `--fp16 true --bf16 false`, `no` -> both false"""
    # Both twins are set so that `--mixed_precision no --bf16 true` is a conflict, not a silent choice.
    value = str(value).lower()
    if value in ("no", "none", "fp32", ""):
        return {"bf16": False, "fp16": False}
    if value in ("bf16", "fp16"):
        return {"bf16": value == "bf16", "fp16": value == "fp16"}
    raise ValueError(f"--mixed_precision={value!r}: must be one of 'no', 'fp16', 'bf16'")


def _use_8bit_adam(value: Any) -> dict[str, Any]:
    """`--optim adamw_bnb_8bit` (needs bitsandbytes)"""
    return {"optim": "adamw_bnb_8bit"} if _truthy(value) else {}


def _not_sigma_loss(value: Any) -> dict[str, Any]:
    """`--loss_type ddpm` (the V5-era spelling, before --loss_type existed)"""
    return {"loss_type": "ddpm"} if _truthy(value) else {}


def _allow_tf32(value: Any) -> dict[str, Any]:
    """`--tf32 true`"""
    return {"tf32": True} if _truthy(value) else {}


def same_cli_value(value: Any, tokens: list[str]) -> bool:
    """Whether command-line ``tokens`` (``--flag`` -> [], ``--flag false`` -> ['false']) say ``value``."""
    if isinstance(value, bool):
        if not tokens:
            return value
        return len(tokens) == 1 and tokens[0].strip().lower() in _BOOL_WORDS and _truthy(tokens[0]) == value
    return tokens == [str(value)]


_BOOL_WORDS = ("1", "0", "true", "false", "yes", "no", "y", "n", "on", "off")


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "on")
    return bool(value)


# original flag -> translation. ``target=None`` and no converter: accepted and dropped (with the note logged).
LEGACY_FLAGS: dict[str, LegacyFlag] = {
    "train_batch_size": LegacyFlag("per_device_train_batch_size"),
    "checkpointing_steps": LegacyFlag("save_steps"),
    "checkpoints_total_limit": LegacyFlag("save_total_limit"),
    "adam_weight_decay": LegacyFlag("weight_decay"),
    "lr_scheduler": LegacyFlag("lr_scheduler_type"),
    "lr_warmup_steps": LegacyFlag("warmup_steps"),
    "max_train_steps": LegacyFlag("max_steps"),
    "mixed_precision": LegacyFlag(None, _mixed_precision),
    "use_8bit_adam": LegacyFlag(None, _use_8bit_adam),
    "allow_tf32": LegacyFlag(None, _allow_tf32),
    "deepspeed_config_file": LegacyFlag("deepspeed"),
    "validation_batch_size": LegacyFlag("per_device_eval_batch_size"),
    # transformers 5 renamed it and warns (FutureWarning) on the old name; the seed lines use the old one.
    "gradient_checkpointing": LegacyFlag("activation_checkpointing"),
    "not_sigma_loss": LegacyFlag(None, _not_sigma_loss),
    "non_ema_revision": LegacyFlag(
        None, note="--non_ema_revision has no effect (the original only printed a deprecation warning for it)."
    ),
    "logging_dir": LegacyFlag(
        None, note="--logging_dir is ignored: TensorBoard logs go to <output_dir>/runs (Trainer's layout)."
    ),
}


# Our own other spellings of a flag (no original flag): the same setting under the name another command uses.
ALIASES: dict[str, LegacyFlag] = {
    "clip_model": LegacyFlag("validation_clip_model"),  # `hf-easyanimate compare --clip_model`
}
# Every name the parser translates: the original's flags and our aliases.
TRANSLATED: dict[str, LegacyFlag] = {**LEGACY_FLAGS, **ALIASES}


def translate_legacy(values: dict[str, Any], explicit_keys: set[str] | None = None) -> dict[str, Any]:
    """Return ``values`` with original flag names replaced by ours.

    ``explicit_keys`` are the keys the user wrote (as opposed to defaults); a legacy flag and its twin
    both written by the user is an error naming both, since silently preferring one hides a mistake.
    """
    explicit_keys = set(values) if explicit_keys is None else explicit_keys
    translated: dict[str, Any] = {}
    for key, value in values.items():
        flag = TRANSLATED.get(key)
        if flag is None:
            translated.setdefault(key, value)
            continue
        if flag.note:
            logger.warning(flag.note)
        for new_key, new_value in flag.translate(value).items():
            if new_key in explicit_keys and new_key in values and values[new_key] != new_value:
                raise LegacyFlagConflict(
                    f"--{key} and --{new_key} are the same setting under two names and disagree "
                    f"({value!r} vs {values[new_key]!r}); keep one of them."
                )
            translated[new_key] = new_value
    return translated
