"""Translate the original EasyAnimate flag dialect into ours.

The seed command lines use ``--train_batch_size``, ``--checkpointing_steps``, ``--mixed_precision``,
... which have twins in ``TrainingArguments`` under other names. Everything here is a pure
function over ``{key: value}`` dicts so the CLI and recipe YAML share one translation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
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


def translate_legacy(values: dict[str, Any], explicit_keys: set[str] | None = None) -> dict[str, Any]:
    """Return ``values`` with original flag names replaced by ours.

    ``explicit_keys`` are the keys the user wrote (as opposed to defaults); a legacy flag and its twin
    both written by the user is an error naming both, since silently preferring one hides a mistake.
    """
    explicit_keys = set(values) if explicit_keys is None else explicit_keys
    translated: dict[str, Any] = {}
    for key, value in values.items():
        flag = LEGACY_FLAGS.get(key)
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


# --- --config_path: the original model YAML --------------------------------------------------------

class ModelConfigMismatch(ValueError):
    """``--config_path`` describes another architecture than the checkpoint being trained."""


# YAML keys that diffusers stores in the transformer's own config.json under the same name: the checkpoint
# is authoritative, the YAML value is compared with it.
TRANSFORMER_CONFIG_KEYS = (
    "after_norm",
    "time_position_encoding_type",
    "resize_inpaint_mask_directly",
    "add_noise_in_inpaint_model",
)
# YAML keys that are applied as given: enable_text_attention_mask decides whether V5's BERT/T5 prompt
# encoders run with attention masks (models/loading.py reads it).
APPLIED_KEYS = ("transformer_additional_kwargs.enable_text_attention_mask",)
# Original class names -> the diffusers class that implements them (None: no diffusers implementation).
ORIGINAL_TRANSFORMER_TYPES = {
    "EasyAnimateTransformer3DModel": "EasyAnimateTransformer3DModel",
    "HunyuanTransformer3DModel": "HunyuanTransformer3DModel",  # V4, ported in models/legacy
    "Transformer3DModel": "Transformer3DModel",  # V2/V3, ported in models/legacy
}


@dataclass
class ModelConfigReading:
    """What ``--config_path`` contributed: keys that were checked against the checkpoint, and the rest."""

    path: str
    found: bool
    checked: dict[str, Any]
    mismatched: dict[str, tuple[Any, Any]]
    not_applicable: list[str]
    applied: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # V2-V4: YAML value over the checkpoint's

    def report(self) -> str | None:
        """One warning naming what was not used (None when everything applied)."""
        if not self.found:
            return (
                f"--config_path {self.path}: file not found; the checkpoint's own configs are used "
                "(diffusers-layout repos carry their architecture in transformer/config.json and vae/config.json)."
            )
        parts = []
        if self.not_applicable:
            parts.append(
                "does not apply to a diffusers-layout checkpoint and is ignored: " + ", ".join(self.not_applicable)
            )
        if self.mismatched:
            parts.append(
                "disagrees with the checkpoint, which wins: "
                + ", ".join(f"{key}={yaml!r} (checkpoint {ckpt!r})" for key, (yaml, ckpt) in self.mismatched.items())
            )
        if self.applied:
            parts.append(
                "overrides the checkpoint's transformer config, as the original trainer applies it: "
                + ", ".join(f"{key}={yaml!r} (config.json {ckpt!r})" for key, (yaml, ckpt) in self.applied.items())
            )
        return f"--config_path {self.path}: " + "; ".join(parts) if parts else None


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _read_yaml_mapping(config_path: str) -> dict:
    import yaml

    with open(config_path, encoding="utf-8") as handle:
        tree = yaml.safe_load(handle) or {}
    if not isinstance(tree, dict):
        raise ModelConfigMismatch(f"--config_path {config_path}: expected a YAML mapping, got {type(tree).__name__}")
    return tree


def read_model_config(
    config_path: str,
    transformer_config: dict[str, Any],
    vae_config: dict[str, Any],
    model_index: dict[str, Any],
) -> ModelConfigReading:
    """Compare the original YAML with a diffusers checkpoint's configs; raise if they name another architecture.

    What applies: the transformer / VAE class (must match), the text-encoder layout (V5.1 single Qwen2-VL vs
    V5 BERT + T5, must match ``model_index.json``), CLIP-in-inpaint (diffusers has no CLIP branch),
    ``enable_text_attention_mask`` (used by the prompt encoders), and the transformer options diffusers keeps
    in ``config.json`` (compared; the checkpoint wins). Everything else
    (MagVIT slicing/caching, mini-batch sizes, control-model switches) is built into diffusers' classes.
    """

    if not os.path.isfile(config_path):
        return ModelConfigReading(config_path, False, {}, {}, [])
    from .models.legacy import version_of_config

    if version_of_config(transformer_config) is not None:
        return read_legacy_model_config(config_path, transformer_config, vae_config)
    tree = _read_yaml_mapping(config_path)
    flat = _flatten(tree)
    checked: dict[str, Any] = {}
    mismatched: dict[str, tuple[Any, Any]] = {}
    not_applicable: list[str] = []

    transformer_type = flat.get("transformer_additional_kwargs.transformer_type")
    checkpoint_class = transformer_config.get("_class_name")
    if transformer_type is not None:
        if ORIGINAL_TRANSFORMER_TYPES.get(transformer_type, transformer_type) != checkpoint_class:
            raise ModelConfigMismatch(
                f"--config_path {config_path} describes a {transformer_type} transformer but the checkpoint's is "
                f"{checkpoint_class}; pass the YAML of the model you train (or drop --config_path)."
            )
        checked["transformer_additional_kwargs.transformer_type"] = transformer_type
    vae_type = flat.get("vae_kwargs.vae_type")
    if vae_type is not None:
        if vae_type != vae_config.get("_class_name"):
            raise ModelConfigMismatch(
                f"--config_path {config_path} describes a {vae_type} VAE but the checkpoint's is "
                f"{vae_config.get('_class_name')}."
            )
        checked["vae_kwargs.vae_type"] = vae_type

    multi = flat.get("text_encoder_kwargs.enable_multi_text_encoder")
    if multi is not None:
        has_second = bool((model_index.get("text_encoder_2") or [None, None])[1])
        if bool(multi) != has_second:
            raise ModelConfigMismatch(
                f"--config_path {config_path} has enable_multi_text_encoder={multi} but the checkpoint has "
                f"{'two text encoders' if has_second else 'one text encoder'} (V5 uses BERT + T5, V5.1 Qwen2-VL)."
            )
        checked["text_encoder_kwargs.enable_multi_text_encoder"] = multi
    if "text_encoder_kwargs.replace_t5_to_llm" in flat:
        checked["text_encoder_kwargs.replace_t5_to_llm"] = flat["text_encoder_kwargs.replace_t5_to_llm"]

    clip = flat.get("transformer_additional_kwargs.enable_clip_in_inpaint")
    if clip is not None:
        if clip:
            mismatched["transformer_additional_kwargs.enable_clip_in_inpaint"] = (clip, False)
        else:
            checked["transformer_additional_kwargs.enable_clip_in_inpaint"] = clip

    for name in APPLIED_KEYS:
        if name in flat:
            checked[name] = flat[name]
    for key in TRANSFORMER_CONFIG_KEYS:
        name = f"transformer_additional_kwargs.{key}"
        if name in flat:
            if key in transformer_config and transformer_config[key] != flat[name]:
                mismatched[name] = (flat[name], transformer_config[key])
            else:
                checked[name] = flat[name]
    not_applicable = sorted(key for key in flat if key not in checked and key not in mismatched)
    return ModelConfigReading(config_path, True, checked, mismatched, not_applicable)


def read_legacy_model_config(
    config_path: str, transformer_config: dict[str, Any], vae_config: dict[str, Any]
) -> ModelConfigReading:
    """The original YAML against a V2-V4 checkpoint, read as the original trainer reads it.

    ``transformer_additional_kwargs`` override ``transformer/config.json`` (the original's ``from_pretrained_2d``
    passes them to ``from_config``), so they are applied; a key that changes the architecture then shows up as a
    weight mismatch when the checkpoint loads. ``vae_kwargs`` never reach the original VAE (it passes them as one
    unused keyword), so ``vae/config.json`` rules and the YAML is only compared with it. The text-encoder layout
    must match the release: BERT + T5 for V4, T5 alone for V2/V3.
    """

    tree = _read_yaml_mapping(config_path)
    flat = _flatten(tree)
    checked: dict[str, Any] = {}
    mismatched: dict[str, tuple[Any, Any]] = {}
    applied: dict[str, tuple[Any, Any]] = {}
    checkpoint_class = transformer_config.get("_class_name")
    transformer_type = flat.get("transformer_additional_kwargs.transformer_type")
    if transformer_type is not None and transformer_type != checkpoint_class:
        raise ModelConfigMismatch(
            f"--config_path {config_path} describes a {transformer_type} transformer but the checkpoint's is "
            f"{checkpoint_class}; pass the YAML of the model you train (or drop --config_path)."
        )
    multi = flat.get("text_encoder_kwargs.enable_multi_text_encoder")
    if multi is not None:
        wants_two = checkpoint_class == "HunyuanTransformer3DModel"
        if bool(multi) != wants_two:
            raise ModelConfigMismatch(
                f"--config_path {config_path} has enable_multi_text_encoder={multi}, but this checkpoint's release uses "
                f"{'BERT + T5 (V4)' if wants_two else 'T5 alone (V2/V3)'}; pass the YAML of the model you train."
            )
        checked["text_encoder_kwargs.enable_multi_text_encoder"] = multi
    for name, value in (tree.get("transformer_additional_kwargs") or {}).items():
        key = f"transformer_additional_kwargs.{name}"
        if name == "transformer_type":
            checked[key] = value
        elif name in transformer_config and transformer_config[name] == value:
            checked[key] = value
        else:
            applied[key] = (value, transformer_config.get(name))
    for name, value in (tree.get("vae_kwargs") or {}).items():
        key = f"vae_kwargs.{name}"
        if name == "vae_type" or vae_config.get(name, value) == value:
            checked[key] = value
        else:
            mismatched[key] = (value, vae_config.get(name))
    nested = ("transformer_additional_kwargs.", "vae_kwargs.")
    not_applicable = sorted(key for key in flat if key not in checked and key not in mismatched
                            and not key.startswith(nested))
    return ModelConfigReading(config_path, True, checked, mismatched, not_applicable, applied)


def report_model_config(
    config_path: str | None, model_path: str, revision: str | None = None, cache_dir: str | None = None
) -> ModelConfigReading | None:
    """Read ``--config_path`` against the checkpoint's configs and warn once about what did not apply."""
    if not config_path:
        return None
    from diffusers import AutoencoderKLMagvit, DiffusionPipeline, EasyAnimateTransformer3DModel

    common = {"revision": revision, "cache_dir": cache_dir}
    transformer_config = dict(EasyAnimateTransformer3DModel.load_config(model_path, subfolder="transformer", **common))
    vae_config = dict(AutoencoderKLMagvit.load_config(model_path, subfolder="vae", **common))
    model_index = dict(DiffusionPipeline.load_config(model_path, **common))
    reading = read_model_config(config_path, transformer_config, vae_config, model_index)
    message = reading.report()
    if message:
        logger.warning(message)
    return reading
