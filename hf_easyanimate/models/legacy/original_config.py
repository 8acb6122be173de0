"""The original YAML read against a V4 / V3 / V2 checkpoint, as the original trainer reads it."""

from __future__ import annotations

from typing import Any

from ..original_config import ModelConfigMismatch, ModelConfigReading, flatten, read_yaml_mapping


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

    tree = read_yaml_mapping(config_path)
    flat = flatten(tree)
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
