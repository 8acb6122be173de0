"""LoRA on the diffusers EasyAnimate transformer, with peft."""

from __future__ import annotations

import torch
from peft import LoraConfig, PeftModel, get_peft_model

# The Linear layers of the attention and feed-forward blocks, the layers the original trainer adapts.
DEFAULT_TARGET_MODULES: tuple[str, ...] = (
    "attn1.to_q",
    "attn1.to_k",
    "attn1.to_v",
    "attn1.to_out.0",
    "attn1.add_q_proj",
    "attn1.add_k_proj",
    "attn1.add_v_proj",
    "attn1.to_add_out",
    "ff.net.0.proj",
    "ff.net.2",
    "txt_ff.net.0.proj",
    "txt_ff.net.2",
)


def _init_weights(value: str) -> bool | str:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    return value


def build_lora_config(
    rank: int,
    alpha: float,
    dropout: float = 0.0,
    target_modules: list[str] | None = None,
    init_lora_weights: str = "true",
) -> LoraConfig:
    """peft config equivalent to the original network: scale = alpha / rank on each adapted Linear."""
    targets: list[str] | str = list(target_modules) if target_modules else list(DEFAULT_TARGET_MODULES)
    if isinstance(targets, list) and len(targets) == 1 and any(ch in targets[0] for ch in "*[]()|^$\\"):
        targets = targets[0]  # a single regex
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        init_lora_weights=_init_weights(init_lora_weights),
    )


def add_lora(transformer: torch.nn.Module, config: LoraConfig, base_model: str | None = None) -> PeftModel:
    """Wrap the frozen transformer; only LoRA parameters train, and they stay float32.

    ``base_model`` is recorded in ``adapter_config.json`` so the adapter names what it was trained on.
    """
    model = get_peft_model(transformer, config)
    if base_model is not None:
        model.peft_config["default"].base_model_name_or_path = base_model
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return model
