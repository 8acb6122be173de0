"""Predicted peak accelerator memory of a LoRA run, part by part, and the cheapest flags that make it fit.

The recipe's transformer is built on the meta device from its real config (the checkpoint folder, the Hub cache,
or the published configs shipped in ``hf_easyanimate/configs``: no weights are read), with the run's LoRA. Then:

* weights: counted per parameter in its stored dtype (``--base_weight_dtype`` follows the layerwise-casting skip
  patterns exactly; ``--blocks_to_swap`` leaves two blocks' worth resident: the running one and the prefetched one);
* LoRA weights, gradients (fp32) and the optimizer state per optimizer: AdamW 8 B per parameter, 8-bit AdamW 2 B,
  Adafactor a factored second moment (rows + columns of each matrix), CAME factored moments plus a first moment;
* activations: one training step (forward, loss, backward; gradient checkpointing and activation offload as the
  recipe sets them) *traced on the meta device* at the recipe's largest bucket, with every tensor counted while it
  is alive (:class:`~hf_easyanimate.memory.accounting.LiveBytes`). Attention is counted as the fused kernels hold
  it (output and log-sum-exp saved, no T x T matrix); LoRA gradients are counted as they appear. A V5 / V5.1
  transformer, whose blocks are all alike and run one after the other, is traced with 3 and 4 blocks and the
  peak extended linearly to its depth (every part of it, saved block inputs and LoRA gradients alike, grows by the
  same amount per block): a 48-block 12B plans in seconds instead of tracing 48 blocks;
* encoders while resident (not with ``--low_vram`` or the latent cache), and a fixed CUDA workspace reserve.

The prediction targets the steady-state step (after the first, when the optimizer state exists). The test
``tests/test_memory_planner.py`` pins it against a measured CPU step within 15 %.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .accounting import LiveBytes
from .storage import storage_dtype, stored_bytes

GIB = 1024**3
CUDA_WORKSPACE = int(1.0 * GIB)  # cuBLAS / cuDNN workspaces and the caching allocator's slack
OPTIMIZER_BYTES_PER_PARAMETER = {"adamw": 8, "adamw_8bit": 2}
EIGHT_BIT_OPTIMIZERS = ("adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "ademamix_8bit")
VAE_SCALE, PATCH = 8, 2
# expected slowdown of each memory flag, for ordering suggestions (a rough guide, printed with them)
SLOWDOWN = {"optim": 0.0, "base_weight_dtype": 0.05, "gradient_checkpointing": 0.3, "activation_offload": 0.15,
            "blocks_to_swap": 0.03}


class PlannerError(ValueError):
    """The plan cannot be made (no config found offline, ...); the message says where it looked."""


# --- the model's config -------------------------------------------------------------------------------------------

def find_transformer_config(model: str, revision: str | None = None, cache_dir: str | None = None) -> tuple[dict, str]:
    """(transformer config, where it came from): the folder, the Hub cache, then the packaged published configs."""
    from ..models.checkpoint import CheckpointConfigNotFound, plan_checkpoint

    try:
        checkpoint = plan_checkpoint(model, revision, cache_dir)
    except CheckpointConfigNotFound as error:
        raise PlannerError(str(error)) from None
    return checkpoint.transformer_config, checkpoint.source


# --- what the run uses ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunShape:
    """The settings of a run that decide its memory."""

    batch_size: int = 1
    frames: int = 49
    height: int = 512
    width: int = 512
    text_tokens: int = 256
    weight_dtype: torch.dtype = torch.bfloat16
    base_weight_dtype: torch.dtype | None = None
    rank: int = 128
    target_modules: tuple[str, ...] | None = None
    optimizer: str = "adamw"
    gradient_checkpointing: bool = True
    activation_offload: bool = False
    blocks_to_swap: int = 0
    train_mode: str = "inpaint"
    encoders_resident: bool = False

    def flags(self) -> dict[str, Any]:
        return {"base_weight_dtype": str(self.base_weight_dtype).replace("torch.", "") if self.base_weight_dtype
                else None, "optim": self.optimizer, "gradient_checkpointing": self.gradient_checkpointing,
                "activation_offload": self.activation_offload, "blocks_to_swap": self.blocks_to_swap}


@dataclass
class MemoryPlan:
    parts: dict[str, int]  # part -> bytes
    shape: RunShape
    tokens: int
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def line(self) -> str:
        main = ", ".join(f"{name} {value / GIB:.1f}" for name, value in self.parts.items() if value >= 0.05 * GIB)
        return f"predicted peak GPU memory {self.total / GIB:.1f} GiB ({main} GiB)"


def latent_grid(config: dict, frames: int, height: int, width: int, frame_grid) -> tuple[int, int, int]:
    return frame_grid.latent_frames(frames), height // VAE_SCALE, width // VAE_SCALE


def _lora_parameters(model: torch.nn.Module, rank: int, targets) -> list[tuple[str, int, int]]:
    from ..models.lora import resolve_target_modules

    resolved = resolve_target_modules(model, list(targets) if targets else None)
    modules = dict(model.named_modules())
    if isinstance(resolved, str):
        import re

        names = [n for n, m in modules.items() if isinstance(m, torch.nn.Linear) and re.fullmatch(resolved, n)]
    else:
        names = [n for n in resolved if n in modules]
    return [(n, modules[n].in_features, modules[n].out_features) for n in names]


def optimizer_state_bytes(optimizer: str, shapes: list[tuple[int, int]]) -> int:
    """Steady-state optimizer memory for LoRA matrices of ``shapes`` (rows, columns), fp32."""
    params = sum(r * c for r, c in shapes)
    name = optimizer.lower()
    if name in EIGHT_BIT_OPTIMIZERS or name.endswith("8bit"):
        return params * OPTIMIZER_BYTES_PER_PARAMETER["adamw_8bit"]
    if name.startswith("adafactor"):
        return sum((r + c) * 4 for r, c in shapes)
    if name == "came":  # factored second moment and residual, first moment
        return sum(2 * (r + c) * 4 + r * c * 4 for r, c in shapes)
    return params * OPTIMIZER_BYTES_PER_PARAMETER["adamw"]


class _FusedAttention(torch.autograd.Function):
    """Stands in for ``scaled_dot_product_attention`` in a meta trace: the memory of the fused kernels
    (flash / memory-efficient / CPU flash): the output, and the inputs, output and log-sum-exp saved for
    backward; no T x T attention matrix."""

    @staticmethod
    def forward(ctx, query, key, value):
        out = query.new_empty((*query.shape[:-1], value.shape[-1]))
        lse = query.new_empty(query.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(query, key, value, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        query, key, value, _, _ = ctx.saved_tensors
        return torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)


def _fused_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
    return _FusedAttention.apply(query, key, value)


@contextlib.contextmanager
def _fused_attention_everywhere():
    """``scaled_dot_product_attention`` is :func:`_fused_attention` for the trace, on every thread.

    Not a ``TorchFunctionMode``: modes are thread-local, and the checkpoint recompute of a traced backward runs inside
    autograd's engine, where one does not reach (the recompute then meets the unfused attention and fails its
    metadata check). The attribute is set back however the trace ends.
    """
    functional = torch.nn.functional
    original = functional.scaled_dot_product_attention
    functional.scaled_dot_product_attention = _fused_attention
    try:
        yield
    finally:
        functional.scaled_dot_product_attention = original


def _meta_offload():
    """``save_on_cpu`` on the meta device: a saved tensor leaves the count until backward brings it back."""

    def pack(tensor):
        return tensor.shape, tensor.dtype

    def unpack(packed):
        shape, dtype = packed
        return torch.empty(shape, dtype=dtype, device="meta")

    return torch.autograd.graph.saved_tensors_hooks(pack, unpack)


def fake_prompt(transformer: torch.nn.Module, batch: int, text_tokens: int, dtype, device) -> dict:
    """Prompt embeddings of the transformer's text widths (their values do not matter for memory)."""
    return _family(transformer).dummy_prompt(transformer.config, batch, text_tokens, dtype, device)


def _family(transformer: torch.nn.Module):
    from ..models.family import family_of

    family = family_of({**transformer.config, "_class_name": type(transformer).__name__})  # the config drops it
    if family is None:
        raise PlannerError(f"{type(transformer).__name__} is not an EasyAnimate transformer")
    return family


def fake_inputs(transformer: torch.nn.Module, shape: RunShape, latent_channels: int, frame_grid, device="meta",
                dtype=None) -> dict:
    """The keyword arguments of one training forward at ``shape`` (noisy latents, prompt, inpaint, CLIP)."""
    from ..models.inputs import transformer_inputs

    dtype = dtype or shape.weight_dtype
    frames, height, width = latent_grid(transformer.config, shape.frames, shape.height, shape.width, frame_grid)
    size = (shape.batch_size, latent_channels, frames, height, width)
    noisy = torch.zeros(size, dtype=dtype, device=device)
    in_channels = int(transformer.config["in_channels"])
    inpaint = None
    if in_channels > latent_channels:
        inpaint = torch.zeros((shape.batch_size, in_channels - latent_channels, frames, height, width), dtype=dtype,
                              device=device)
    reference = {}
    if inpaint is not None and shape.train_mode == "inpaint":
        reference = _family(transformer).dummy_reference(transformer, shape.batch_size, dtype, device)
    timesteps = torch.zeros(shape.batch_size, dtype=torch.float32, device=device)
    prompt = fake_prompt(transformer, shape.batch_size, shape.text_tokens, dtype, device)
    return transformer_inputs(transformer, noisy, timesteps, prompt, inpaint_latents=inpaint, **reference)


def step_peak(model: torch.nn.Module, inputs: dict, gradient_checkpointing: bool, activation_offload: bool,
              meta: bool = True) -> int:
    """Peak bytes of the tensors a training step creates (activations, LoRA gradients, temporaries)."""
    transformer = _unwrap(model)
    if gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    else:
        transformer.disable_gradient_checkpointing()
    attention = _fused_attention_everywhere() if meta else contextlib.nullcontext()
    offload = (_meta_offload() if meta else torch.autograd.graph.save_on_cpu()) if activation_offload \
        else contextlib.nullcontext()
    with attention, LiveBytes() as counter:
        with offload:
            output = model(**inputs)[0]
        loss = output.float().square().mean()
        loss.backward()
        del output, loss
    for parameter in model.parameters():
        parameter.grad = None
    return counter.peak


def _unwrap(model):
    from ..models.inputs import base_transformer

    return base_transformer(model)


# --- the plan ------------------------------------------------------------------------------------------------------

@dataclass
class PlanContext:
    """The meta model with its LoRA, built once per plan-memory call."""

    config: dict
    source: str
    model: torch.nn.Module
    lora: list[tuple[str, int, int]]
    latent_channels: int
    frame_grid: Any
    encoder_bytes: int = 0
    uniform_blocks: bool = False  # the family's forward is a plain loop over identical blocks
    _peaks: dict = field(default_factory=dict)


def build_context(config: dict, source: str, shape: RunShape, latent_channels: int, frame_grid,
                  encoder_bytes: int = 0) -> PlanContext:
    from peft import LoraConfig, get_peft_model

    from ..models.family import family_of

    family = family_of(config)
    if family is None:
        raise PlannerError(f"{source}: {config.get('_class_name')!r} is not an EasyAnimate transformer")
    transformer = family.transformer_skeleton(config).requires_grad_(False)
    _buffers_to_meta(transformer)  # empty-weight init leaves buffers (V2-V4 position tables) on the CPU
    torch.nn.Module.to(transformer, shape.weight_dtype)
    lora = _lora_parameters(transformer, shape.rank, shape.target_modules)
    peft_config = LoraConfig(r=shape.rank, lora_alpha=shape.rank, target_modules=[name for name, _, _ in lora])
    with torch.device("meta"):
        model = get_peft_model(transformer, peft_config)
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return PlanContext(config, source, model, lora, latent_channels, frame_grid, encoder_bytes, family.uniform_blocks)


def _buffers_to_meta(model: torch.nn.Module) -> None:
    for module in model.modules():
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.device.type != "meta":
                module._buffers[name] = buffer.to("meta")


def plan(context: PlanContext, shape: RunShape) -> MemoryPlan:
    """The parts of the predicted peak for ``shape`` (see the module docstring)."""
    base = _unwrap(context.model)
    weights = stored_bytes(base, shape.base_weight_dtype, shape.weight_dtype)
    notes = []
    if shape.blocks_to_swap:
        from .block_swap import transformer_blocks

        blocks = list(transformer_blocks(base))
        swapped = blocks[len(blocks) - shape.blocks_to_swap:]
        sizes = [stored_bytes(block, shape.base_weight_dtype, shape.weight_dtype) for block in swapped]
        weights -= sum(sizes) - min(2, len(sizes)) * max(sizes)
        notes.append(f"{shape.blocks_to_swap} block(s) in CPU memory ({sum(sizes) / GIB:.1f} GiB, pinned)")
    lora_params = sum(shape.rank * (i + o) for _, i, o in context.lora)
    shapes = [(shape.rank, i) for _, i, _ in context.lora] + [(o, shape.rank) for _, _, o in context.lora]
    key = (shape.batch_size, shape.frames, shape.height, shape.width, shape.text_tokens, shape.gradient_checkpointing,
           shape.activation_offload, shape.train_mode)
    if key not in context._peaks:
        context._peaks[key] = traced_peak(context, shape)
    peak = context._peaks[key]
    gradients = lora_params * 4
    parts = {
        "base weights": weights,
        "LoRA weights": lora_params * 4,
        "optimizer state": optimizer_state_bytes(shape.optimizer, shapes),
        "gradients": gradients,
        "activations": max(peak - gradients, 0),
        "encoders (resident)": context.encoder_bytes if shape.encoders_resident else 0,
        "CUDA workspace": CUDA_WORKSPACE,
    }
    tokens = math.prod(latent_grid(base.config, shape.frames, shape.height, shape.width, context.frame_grid))
    return MemoryPlan(parts, shape, tokens // (PATCH * PATCH), notes)


TRACED_DEPTHS = (3, 4)  # from 3 blocks on, each adds the same (2 -> 3 does not: the first block is special)


def _uniform_blocks(base: torch.nn.Module, uniform: bool) -> str | None:
    """The name of ``base``'s block list when its peak grows linearly with depth (see the module docstring):
    ``uniform`` says the family's forward is a plain loop over its blocks; they must also be alike."""
    blocks = getattr(base, "transformer_blocks", None)
    if not uniform or not isinstance(blocks, torch.nn.ModuleList):
        return None
    if len(blocks) <= TRACED_DEPTHS[-1]:
        return None
    shapes = {tuple((name, tuple(p.shape)) for name, p in block.named_parameters()) for block in blocks}
    return "transformer_blocks" if len(shapes) == 1 else None


def traced_peak(context: PlanContext, shape: RunShape, extrapolate: bool = True) -> int:
    """Peak bytes of one traced step of ``shape``; for uniform-depth models from two shallow traces."""
    base = _unwrap(context.model)
    name = _uniform_blocks(base, context.uniform_blocks) if extrapolate else None

    def trace() -> int:
        inputs = fake_inputs(base, shape, context.latent_channels, context.frame_grid)
        return step_peak(context.model, inputs, shape.gradient_checkpointing, shape.activation_offload)

    if name is None:
        return trace()
    blocks = getattr(base, name)
    peaks = []
    try:
        for depth in TRACED_DEPTHS:
            setattr(base, name, torch.nn.ModuleList(blocks[:depth]))
            peaks.append(trace())
    finally:
        setattr(base, name, blocks)
    low, high = TRACED_DEPTHS
    per_block = (peaks[1] - peaks[0]) // (high - low)
    return peaks[0] + (len(blocks) - low) * per_block


def suggestions(context: PlanContext, shape: RunShape, budget: int) -> list[tuple[MemoryPlan, list[str]]]:
    """Flag sets in order of expected slowdown, each added to the previous: the first that fits is the advice."""
    steps: list[tuple[str, dict]] = []
    if shape.optimizer.lower() not in EIGHT_BIT_OPTIMIZERS:
        steps.append(("--optim adamw_bnb_8bit", {"optimizer": "adamw_bnb_8bit"}))
    if shape.base_weight_dtype is None or shape.base_weight_dtype.itemsize > 1:
        steps.append(("--base_weight_dtype float8_e4m3fn", {"base_weight_dtype": torch.float8_e4m3fn}))
    if not shape.gradient_checkpointing:
        steps.append(("--gradient_checkpointing true", {"gradient_checkpointing": True}))
    if not shape.activation_offload:
        steps.append(("--activation_offload true", {"activation_offload": True}))
    results, current, flags = [], shape, []
    for flag, change in steps:
        current = replace(current, **change)
        flags = [*flags, flag]
        result = plan(context, current)
        results.append((result, flags))
        if result.total <= budget:
            return results
    from .block_swap import transformer_blocks

    count = len(transformer_blocks(_unwrap(context.model)))
    if current.gradient_checkpointing:
        for swap in range(1, count + 1):
            result = plan(context, replace(current, blocks_to_swap=swap))
            if result.total <= budget or swap == count:
                results.append((result, [*flags, f"--blocks_to_swap {swap}"]))
                break
    return results


def format_table(plan_: MemoryPlan, budget: int | None = None) -> str:
    rows = [f"| {name} | {value / GIB:.2f} |" for name, value in plan_.parts.items()]
    lines = ["| part | GiB |", "|---|---|", *rows, f"| **total** | **{plan_.total / GIB:.2f}** |"]
    if budget is not None:
        lines.append(f"| GPU memory | {budget / GIB:.2f} |")
    return "\n".join(lines)


def storage_of(name: str | None) -> torch.dtype | None:
    return storage_dtype(name)


def __getattr__(name: str):  # LINEAR_DEPTH_CLASSES, transformer_block_count of 0.1: the family and checkpoint say it
    from ..utils.deprecation import moved_name

    return moved_name(__name__, name)
