"""The original YAML read against a V5 / V5.1 checkpoint in the diffusers layout.

What applies: the transformer / VAE class (must match), the text-encoder layout (V5.1 single Qwen2-VL vs V5
BERT + T5, must match ``model_index.json``), CLIP-in-inpaint (diffusers has no CLIP branch),
``enable_text_attention_mask`` (used by the prompt encoders), and the transformer options diffusers keeps in
``config.json`` (compared; the checkpoint wins). Everything else (MagVIT slicing/caching, mini-batch sizes,
control-model switches) is built into diffusers' classes and reported as not applicable.
"""

from __future__ import annotations

from typing import Any

from ..original_config import ModelConfigMismatch, ModelConfigReading, flatten, read_yaml_mapping

# YAML keys that diffusers stores in the transformer's own config.json under the same name: the checkpoint
# is authoritative, the YAML value is compared with it.
TRANSFORMER_CONFIG_KEYS = (
    "after_norm",
    "time_position_encoding_type",
    "resize_inpaint_mask_directly",
    "add_noise_in_inpaint_model",
)
# YAML keys that are applied as given: enable_text_attention_mask decides whether V5's BERT/T5 prompt
# encoders run with attention masks (the family's loader reads it).
APPLIED_KEYS = ("transformer_additional_kwargs.enable_text_attention_mask",)
# Original class names -> the class that implements them here.
ORIGINAL_TRANSFORMER_TYPES = {
    "EasyAnimateTransformer3DModel": "EasyAnimateTransformer3DModel",
    "HunyuanTransformer3DModel": "HunyuanTransformer3DModel",  # V4, ported in models/legacy
    "Transformer3DModel": "Transformer3DModel",  # V2/V3, ported in models/legacy
}


def _check_classes(config_path: str, flat: dict, transformer_config: dict, vae_config: dict, checked: dict) -> None:
    """The YAML's transformer and VAE types must be the checkpoint's."""
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


def _check_text_encoders(config_path: str, flat: dict, model_index: dict, checked: dict) -> None:
    """One text encoder (V5.1) or two (V5), as ``model_index.json`` has them."""
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


def _compare_options(flat: dict, transformer_config: dict, checked: dict, mismatched: dict) -> None:
    """CLIP-in-inpaint (diffusers has none), the applied keys, and the options config.json also holds."""
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


def read_diffusers_model_config(
    config_path: str, transformer_config: dict[str, Any], vae_config: dict[str, Any], model_index: dict[str, Any],
) -> ModelConfigReading:
    """The reading of ``config_path`` for a V5 / V5.1 checkpoint (see the module docstring)."""
    flat = flatten(read_yaml_mapping(config_path))
    checked: dict[str, Any] = {}
    mismatched: dict[str, tuple[Any, Any]] = {}
    _check_classes(config_path, flat, transformer_config, vae_config, checked)
    _check_text_encoders(config_path, flat, model_index, checked)
    _compare_options(flat, transformer_config, checked, mismatched)
    not_applicable = sorted(key for key in flat if key not in checked and key not in mismatched)
    return ModelConfigReading(config_path, True, checked, mismatched, not_applicable)
