"""LoRA on the diffusers EasyAnimate transformer, with peft.

Which layers: the original trainer's ``LoRANetwork`` walks every module whose class is in its target list, and
the transformer's own class (``EasyAnimateTransformer3DModel``) is in that list, so it adapts *every* ``nn.Linear``
of the transformer: time embedding, text projection, the adaLN modulation (``norm1/norm2.linear``), attention,
feed-forward, ``norm_out.linear`` and ``proj_out``. (It would also take 1x1 convolutions; the transformer has none,
and its patch embedding ``proj`` is a 2x2 convolution, which the original skips.) Our default enumerates the Linear
modules of the model itself instead of matching names, so it stays right for any depth or text-projection layout.

The original matches the class *name* (``Linear``), not subclasses: in V4's CLIP resampler the
``nn.MultiheadAttention.out_proj`` (a ``NonDynamicallyQuantizableLinear``) is therefore not adapted, and neither is it
here. The V2/V3 motion modules (``attn_temporal``) are adapted, as the original trainer asks
(``add_lora_in_attn_temporal=True``).
"""

from __future__ import annotations

import torch
from peft import LoraConfig, PeftModel, get_peft_model

REGEX_CHARACTERS = "*[]()|^$\\+?{}"


class LoraTargetError(ValueError):
    """``--lora_target_modules`` does not select layers the LoRA can adapt; the message names them."""


ADAPTED_CLASS_NAMES = ("Linear", "LoRACompatibleLinear")  # the original LoRANetwork's match, by class name


def linear_module_paths(module: torch.nn.Module) -> list[str]:
    """Dotted paths of every ``nn.Linear`` in ``module`` (by class name, as the original), in definition order."""
    return [name for name, child in module.named_modules()
            if isinstance(child, torch.nn.Linear) and type(child).__name__ in ADAPTED_CLASS_NAMES]


def resolve_target_modules(transformer: torch.nn.Module, target_modules: list[str] | None) -> list[str] | str:
    """The ``target_modules`` value for peft: every Linear by default, else the user's names or single regex."""
    if not target_modules:
        return linear_module_paths(transformer)
    if len(target_modules) == 1 and any(character in target_modules[0] for character in REGEX_CHARACTERS):
        return target_modules[0]  # one regex, matched by peft with re.fullmatch
    return list(target_modules)


def _init_weights(value: str | bool) -> bool | str:
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    return value


def build_lora_config(
    transformer: torch.nn.Module,
    rank: int,
    alpha: float,
    dropout: float = 0.0,
    target_modules: list[str] | None = None,
    init_lora_weights: str | bool = "true",
) -> LoraConfig:
    """peft config equivalent to the original network: ``scale = alpha / rank`` on each adapted layer.

    ``init_lora_weights`` 'true' is the original's initialisation (kaiming-uniform down, zero up).
    """
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=resolve_target_modules(transformer, target_modules),
        init_lora_weights=_init_weights(init_lora_weights),
    )


def add_lora(transformer: torch.nn.Module, config: LoraConfig, base_model: str | None = None) -> PeftModel:
    """Wrap the frozen transformer; only LoRA parameters train, and they stay float32.

    ``base_model`` is recorded in ``adapter_config.json`` so the adapter names what it was trained on.
    """
    try:
        model = get_peft_model(transformer, config)
    except ValueError as error:  # peft: "Target modules ... not found in the base model"
        raise LoraTargetError(f"--lora_target_modules={config.target_modules!r}: {error}") from error
    if base_model is not None:
        model.peft_config["default"].base_model_name_or_path = base_model
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return model


def adapted_non_linear_modules(model: PeftModel) -> list[str]:
    """Adapted layers that are not ``nn.Linear``: the EasyAnimate/kohya file cannot hold them."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [
        name
        for name, module in model.get_base_model().named_modules()
        if isinstance(module, BaseTunerLayer) and not isinstance(module.get_base_layer(), torch.nn.Linear)
    ]


def require_linear_targets(model: PeftModel) -> None:
    """Fail before training when ``--save_lora_format`` includes the EasyAnimate file but a target is not Linear."""
    others = adapted_non_linear_modules(model)
    if others:
        raise LoraTargetError(
            f"--lora_target_modules selects layers that are not Linear ({', '.join(others[:5])}"
            f"{', ...' if len(others) > 5 else ''}); the EasyAnimate/ComfyUI LoRA file holds Linear layers only. "
            "Target Linear layers, or pass --save_lora_format peft."
        )
