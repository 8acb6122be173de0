"""The LoRA: which layers it adapts (peft), and its two file formats (the peft adapter and the original's kohya
``lora_unet__*`` file), converted losslessly into each other."""

from .adapter import (
    ADAPTED_CLASS_NAMES,
    REGEX_CHARACTERS,
    LoraTargetError,
    adapted_non_linear_modules,
    add_lora,
    build_lora_config,
    linear_module_paths,
    require_linear_targets,
    resolve_target_modules,
)

__all__ = [
    "ADAPTED_CLASS_NAMES",
    "REGEX_CHARACTERS",
    "LoraTargetError",
    "adapted_non_linear_modules",
    "add_lora",
    "build_lora_config",
    "linear_module_paths",
    "require_linear_targets",
    "resolve_target_modules",
]
