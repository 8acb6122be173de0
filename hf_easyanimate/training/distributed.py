"""What the distributed engine wraps and optimises (``--report_model_info``), and the ZeRO-2 config of the seed.

How a launch becomes Trainer's process group is :mod:`hf_easyanimate.config.launch`.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

# The seed's config/zero_stage2_config.json, with "auto" wherever Trainer knows the value (batch sizes,
# accumulation, precision, clipping). recipes/deepspeed/zero2.json holds the same settings; a test keeps them equal.
ZERO2_CONFIG: dict[str, Any] = {
    "bf16": {"enabled": "auto"},
    "fp16": {"enabled": "auto"},
    "train_micro_batch_size_per_gpu": "auto",
    "train_batch_size": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "dump_state": True,
    "zero_optimization": {
        "stage": 2,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "sub_group_size": 1_000_000_000,
        "reduce_bucket_size": 500_000_000,
    },
}


def describe_engine(trainer: Any) -> dict[str, Any]:
    """What the distributed engine of ``trainer`` wraps and optimises, on this rank.

    Used by ``--report_model_info`` and the distributed tests: only LoRA parameters may be optimised, and the
    frozen VAE / text encoder must not be inside the DDP or DeepSpeed wrapper.
    """
    wrapped = trainer.model_wrapped
    names = {id(parameter): name for name, parameter in trainer.model.named_parameters()}
    optimised = _optimised_parameters(trainer)
    optimised_names = sorted(names.get(id(parameter), "<unnamed>") for parameter in optimised)
    wrapper_modules = {id(module) for module in wrapped.modules()} if isinstance(wrapped, torch.nn.Module) else set()
    encoders = trainer.encoders
    frozen = {"vae": encoders.vae, **{f"text_encoder_{i}": m for i, m in enumerate(_text_encoders(encoders))}}
    base = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    return {
        "rank": trainer.args.process_index,
        "world_size": trainer.args.world_size,
        "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
        "wrapper": type(wrapped).__name__,
        "optimised_parameters": len(optimised),
        "optimised_elements": int(sum(p.numel() for p in optimised)),
        "optimised_all_lora": bool(optimised_names) and all("lora_" in name for name in optimised_names),
        "trainable_lora_parameters": sum(1 for n, p in trainer.model.named_parameters() if p.requires_grad),
        "frozen_encoders_inside_wrapper": sorted(k for k, m in frozen.items() if id(m) in wrapper_modules),
        "frozen_encoders_trainable": sorted(
            k for k, m in frozen.items() if any(p.requires_grad for p in m.parameters())
        ),
        "gradient_checkpointing": bool(getattr(base, "gradient_checkpointing", False)),
    }


def _text_encoders(encoders: Any) -> list[torch.nn.Module]:
    prompt = encoders.prompt_encoder
    found = getattr(prompt, "text_encoders", None)
    return list(found) if found is not None else [prompt.text_encoder]


def _optimised_parameters(trainer: Any) -> list[torch.nn.Parameter]:
    """Model parameters the optimizer updates (ZeRO keeps them in ``bit16_groups``, others in param_groups)."""
    optimizer = trainer.optimizer
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer / DeepSpeed wrapper
    groups = getattr(inner, "bit16_groups", None)  # DeepSpeed ZeRO-1/2: the module's own parameters
    if groups is None:
        inner = getattr(inner, "optimizer", inner)
        groups = [group["params"] for group in inner.param_groups]
    return [parameter for group in groups for parameter in group]


class EngineReport(TrainerCallback):
    """``--report_model_info``: log what each rank's engine wraps and optimises; rank 0 writes model_info.json."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        report = describe_engine(self.trainer)
        reports = [report]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            reports = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(reports, report)
        if args.process_index == 0:
            os.makedirs(args.output_dir, exist_ok=True)
            with open(os.path.join(args.output_dir, "model_info.json"), "w", encoding="utf-8") as handle:
                json.dump({"ranks": reports}, handle, indent=2)
            logger.warning(
                "model info: %s wraps the transformer; it optimises %d LoRA tensors (%d values); frozen encoders "
                "inside the wrapper: %s; gradient checkpointing: %s",
                report["wrapper"], report["optimised_parameters"], report["optimised_elements"],
                report["frozen_encoders_inside_wrapper"] or "none", report["gradient_checkpointing"],
            )
        return control


def __getattr__(name: str):  # the launch helpers of 0.1 (launched_world_size, ...), now in config/launch.py
    from ..utils.deprecation import moved_name

    return moved_name(__name__, name)
