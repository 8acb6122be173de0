"""The memory plan of one run: its checkpoint (family, configs), its largest batch (:mod:`hf_easyanimate.data.plan`)
and its flags, traced by :mod:`.planner`. ``plan-memory`` plans a recipe with it; a GPU run prints its start-up line.

The flags are read from the argument objects by name (``model_args.rank``, ``data_args.video_sample_size``,
``args.bf16``, ...): ``plan-memory``, which must not build ``TrainingArguments`` (that sets up the launch), passes one
namespace of the parsed values for all three.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..data.plan import PlanConfig, largest_batch
from ..models.checkpoint import Checkpoint
from .planner import MemoryPlan, PlanContext, RunShape, build_context, plan
from .storage import storage_dtype


def encoder_bytes(checkpoint: Checkpoint, dtype: torch.dtype) -> int:
    """Bytes of the frozen encoders (text encoder(s), VAE, CLIP image encoder) in ``dtype``: counted from the
    checkpoint folder's configs on the meta device when it is local, else the family's published sizes."""
    size = torch.empty((), dtype=dtype).element_size()
    folder = checkpoint.path
    if not os.path.isdir(folder):
        return int(checkpoint.family.encoder_parameters * size)
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModel

    total = 0
    for name in ("text_encoder", "text_encoder_2", "image_encoder"):
        sub = os.path.join(folder, name)
        if os.path.isfile(os.path.join(sub, "config.json")):
            with init_empty_weights():
                total += sum(p.numel() for p in AutoModel.from_config(AutoConfig.from_pretrained(sub)).parameters())
    if checkpoint.vae_config is not None:
        total += sum(p.numel() for p in checkpoint.family.vae_skeleton(checkpoint.vae_config).parameters())
    return total * size


def _optimizer(args) -> str:
    name = "came" if getattr(args, "use_came", False) else str(getattr(args.optim, "value", args.optim) or "adamw_torch")
    return "adamw" if name.startswith("adamw_torch") else name


def run_shape(model_args, data_args, args, checkpoint: Checkpoint) -> tuple[RunShape, tuple[str, ...]]:
    """What decides the run's memory, and the token-length table when there is one."""
    largest = largest_batch(PlanConfig.from_data_args(data_args, checkpoint.frame_grid),
                            int(args.per_device_train_batch_size))
    weight = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else torch.float32
    shape = RunShape(
        batch_size=largest.batch_size, frames=largest.frames, height=largest.height, width=largest.width,
        text_tokens=int(model_args.tokenizer_max_length or 256), weight_dtype=weight,
        base_weight_dtype=storage_dtype(args.base_weight_dtype), rank=int(model_args.rank),
        target_modules=tuple(model_args.lora_target_modules) if model_args.lora_target_modules else None,
        optimizer=_optimizer(args),
        gradient_checkpointing=bool(args.activation_checkpointing or args.gradient_checkpointing),
        activation_offload=bool(args.activation_offload), blocks_to_swap=int(args.blocks_to_swap or 0),
        train_mode=str(model_args.train_mode or "normal"),
        encoders_resident=not args.low_vram and not data_args.latent_cache_dir,
    )
    return shape, largest.table


@dataclass
class RunPlan:
    """A run's plan and what it was made from (the plan-memory output and the training start-up line)."""

    checkpoint: Checkpoint
    shape: RunShape
    table: tuple[str, ...]
    context: PlanContext
    result: MemoryPlan


def plan_run(checkpoint: Checkpoint, model_args, data_args, args) -> RunPlan:
    """Trace the run's largest batch on the checkpoint's architecture (meta device: no weights, no GPU)."""
    shape, table = run_shape(model_args, data_args, args, checkpoint)
    context = build_context(checkpoint.transformer_config, checkpoint.source, shape, checkpoint.latent_channels,
                            checkpoint.frame_grid, encoder_bytes=encoder_bytes(checkpoint, shape.weight_dtype))
    return RunPlan(checkpoint, shape, table, context, plan(context, shape))


def startup_line(checkpoint: Checkpoint, model_args, data_args, args) -> str:
    """The planner's prediction for a run about to start, in one line (a prediction never stops a run)."""
    try:
        result = plan_run(checkpoint, model_args, data_args, args).result
    except Exception as error:
        return f"memory plan: not available ({error})"
    return f"memory plan: {result.line()} at the largest bucket ({result.tokens:,} tokens); details: hf-easyanimate " \
           "plan-memory RECIPE.yaml"
