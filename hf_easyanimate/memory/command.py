"""``hf-easyanimate plan-memory RECIPE.yaml [--gpu_memory_gb 24] [--flag value ...]``: predicted peak GPU memory of
the run the recipe describes, part by part, and the cheapest flags that make it fit."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .planner import (
    GIB,
    SLOWDOWN,
    MemoryPlan,
    PlanContext,
    PlannerError,
    RunShape,
    build_context,
    find_transformer_config,
    format_table,
    plan,
    suggestions,
)
from .storage import storage_dtype

DESCRIPTION = (
    "Predict the peak GPU memory of a LoRA run from its recipe, without a GPU and without reading any weights: the "
    "transformer is built on the meta device from the checkpoint's config (its folder, the Hub cache, or the "
    "published configs shipped with hf_easyanimate) and one training step is traced at the recipe's largest "
    "bucket. Prints the parts, says whether the run fits --gpu_memory_gb and, if not, the cheapest flags that "
    "make it fit. Exit status 0: fits; 1: does not fit as given; 2: bad recipe or no config found."
)
# Approximate parameter counts of the frozen encoders (text encoder(s) + VAE), by generation: what is resident on
# the GPU when neither --low_vram nor --latent_cache_dir keeps them away.
ENCODER_PARAMETERS = {"v5.1": 8.29e9 + 0.21e9, "v5": 0.33e9 + 1.67e9 + 0.21e9, "v4": 0.33e9 + 1.67e9 + 0.15e9,
                      "v3": 4.76e9 + 0.15e9, "v2": 4.76e9 + 0.15e9}


def encoder_bytes(model: str, version: str, dtype: torch.dtype) -> int:
    """Bytes of the frozen encoders (text encoder(s), VAE, CLIP image encoder) in ``dtype``: counted from the
    checkpoint folder's configs on the meta device when it is local, else the published models' approximate sizes."""
    size = torch.empty((), dtype=dtype).element_size()
    if not os.path.isdir(model):
        return int(ENCODER_PARAMETERS.get(version, 0) * size)
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModel

    total = 0
    for name in ("text_encoder", "text_encoder_2", "image_encoder"):
        folder = os.path.join(model, name)
        if os.path.isfile(os.path.join(folder, "config.json")):
            with init_empty_weights():
                total += sum(p.numel() for p in AutoModel.from_config(AutoConfig.from_pretrained(folder)).parameters())
    vae_config = os.path.join(model, "vae", "config.json")
    if os.path.isfile(vae_config):
        from diffusers import AutoencoderKLMagvit

        from ..models.legacy import LegacyMagvitVAE
        from ..models.legacy.loading import constructor_config, read_json

        config = read_json(vae_config)
        cls = LegacyMagvitVAE if version in ("v4", "v3", "v2") else AutoencoderKLMagvit
        values = constructor_config(cls, config, vae_config) if cls is LegacyMagvitVAE else {
            k: v for k, v in config.items() if not k.startswith("_")}
        with init_empty_weights():
            total += sum(p.numel() for p in cls.from_config(values).parameters())
    return total * size


def largest_bucket(values: dict, frame_grid) -> tuple[int, int, int, int, list[str]]:
    """(batch, frames, height, width) of the most tokens the recipe can train at once, and the token table."""
    from ..data.buckets import (
        ASPECT_RATIO_512,
        batch_tile_factor,
        bucket_size,
        frames_on_vae_grid,
        frames_per_resolution,
    )

    batch, n_frames = int(values["per_device_train_batch_size"]), int(values["video_sample_n_frames"])
    video, image = int(values["video_sample_size"]), int(values["image_sample_size"])
    token_size = int(values["token_sample_size"])

    def tokens(frames: int, height: int, width: int) -> int:
        return frame_grid.latent_frames(frames) * (height // 16) * (width // 16)

    def sizes(side: int) -> list[tuple[int, int]]:
        if not values["enable_bucket"]:
            return [(side, side)]
        return [(side, side)] + [bucket_size(key, side) for key in ASPECT_RATIO_512]  # ties: the square one

    candidates, table = [], []
    if values["enable_bucket"] and values["random_hw_adapt"] and values["training_with_video_token_length"]:
        for side, frames in frames_per_resolution(video, image, n_frames, token_size, frame_grid).items():
            tile = batch_tile_factor(n_frames, token_size, frames, side, side)
            table.append(f"  {side}px: {frames} frames, {tokens(frames, side, side):,} tokens x batch {batch * tile}")
            candidates += [(batch * tile, frames, h, w) for h, w in sizes(side)]
    else:
        candidates += [(batch, frames_on_vae_grid(n_frames, frame_grid), h, w) for h, w in sizes(video)]
    candidates += [(batch, 1, h, w) for h, w in sizes(image)]
    best = max(candidates, key=lambda c: c[0] * tokens(c[1], c[2], c[3]))
    return (*best, table)


def _grid_and_latents(model: str, version: str):
    from ..data.buckets import FrameGrid
    from ..models.vae import legacy_frame_grid

    config_file = os.path.join(model, "vae", "config.json")
    config = {}
    if os.path.isfile(config_file):
        with open(config_file, encoding="utf-8") as handle:
            config = json.load(handle)
    if version in ("v4", "v3", "v2"):
        grid = legacy_frame_grid(config) if config else (FrameGrid(9, False, 3) if version == "v2"
                                                          else FrameGrid(8, False, 2))
        return grid, int(config.get("latent_channels", 4))
    return FrameGrid(4), int(config.get("latent_channels", 16))


def _version(config: dict, model: str) -> str:
    from ..models.legacy import version_of_config

    legacy = version_of_config(config)
    if legacy:
        return legacy
    return "v5" if config.get("text_embed_dim_t5") else "v5.1"


def shape_from_values(values: dict, version: str, frame_grid) -> tuple[RunShape, list[str]]:
    batch, frames, height, width, table = largest_bucket(values, frame_grid)
    weight = torch.bfloat16 if values.get("bf16") else torch.float16 if values.get("fp16") else torch.float32
    optimizer = "came" if values.get("use_came") else str(values.get("optim") or "adamw_torch")
    if optimizer.startswith("adamw_torch"):
        optimizer = "adamw"
    shape = RunShape(
        batch_size=batch, frames=frames, height=height, width=width,
        text_tokens=int(values.get("tokenizer_max_length") or 256), weight_dtype=weight,
        base_weight_dtype=storage_dtype(values.get("base_weight_dtype")), rank=int(values.get("rank", 128)),
        target_modules=tuple(values["lora_target_modules"]) if values.get("lora_target_modules") else None,
        optimizer=optimizer,
        gradient_checkpointing=bool(values.get("activation_checkpointing") or values.get("gradient_checkpointing")),
        activation_offload=bool(values.get("activation_offload")), blocks_to_swap=int(values.get("blocks_to_swap") or 0),
        train_mode=str(values.get("train_mode") or "normal"),
        encoders_resident=not values.get("low_vram") and not values.get("latent_cache_dir"),
    )
    return shape, table


@dataclass
class RecipePlan:
    """A recipe's plan and what it was made from (the plan-memory output and the training start-up line)."""

    model: str
    version: str
    source: str
    shape: RunShape
    table: list[str]
    context: PlanContext
    result: MemoryPlan


def plan_recipe(values: dict) -> RecipePlan:
    """Config lookup, largest bucket and the traced plan for parsed recipe ``values``."""
    model = values["pretrained_model_name_or_path"]
    config, source = find_transformer_config(model, values.get("revision"), values.get("cache_dir"))
    version = _version(config, model)
    grid, latent_channels = _grid_and_latents(model, version)
    shape, table = shape_from_values(values, version, grid)
    context = build_context(config, source, shape, latent_channels, grid,
                            encoder_bytes=encoder_bytes(model, version, shape.weight_dtype))
    return RecipePlan(model, version, source, shape, table, context, plan(context, shape))


def plan_memory_main(argv: Sequence[str] | None = None) -> int:
    from ..parser import RecipeError, parse_values

    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--gpu_memory_gb", type=float, default=24.0, help="GPU memory to fit (GiB).")
    if not argv or any(arg in ("-h", "--help") for arg in argv):
        print("usage: hf-easyanimate plan-memory RECIPE.yaml [--gpu_memory_gb 24] [--flag value ...]\n\n" + DESCRIPTION)
        return 0 if argv else 2
    own, rest = extra.parse_known_args(argv)
    try:
        values = parse_values(rest)
        if not values.get("pretrained_model_name_or_path"):
            raise RecipeError("--pretrained_model_name_or_path is required (the recipe names the checkpoint)")
        planned = plan_recipe(values)
    except (RecipeError, PlannerError, ValueError) as error:
        print(f"hf-easyanimate plan-memory: error: {error}", file=sys.stderr)
        return 2
    model, version, source, shape, table = planned.model, planned.version, planned.source, planned.shape, planned.table
    context, result = planned.context, planned.result
    budget = int(own.gpu_memory_gb * GIB)
    print(f"model: {model} (EasyAnimate {version.upper()}; transformer config: {source})")
    print(f"largest bucket: batch {shape.batch_size} x {shape.frames} frames x {shape.height}x{shape.width} px = "
          f"{result.tokens:,} video tokens per sample (+ text); gradient checkpointing "
          f"{'on' if shape.gradient_checkpointing else 'off'}, optimizer {shape.optimizer}, LoRA rank {shape.rank}")
    if table:
        print("token-length table (--training_with_video_token_length):")
        print("\n".join(table))
    print(format_table(result, budget))
    for note in result.notes:
        print(f"note: {note}")
    if result.total <= budget:
        print(f"fits: {result.total / GIB:.1f} GiB of {own.gpu_memory_gb:g} GiB")
        return 0
    print(f"does not fit: {result.total / GIB:.1f} GiB > {own.gpu_memory_gb:g} GiB")
    options = suggestions(context, shape, budget)
    fitting = [(p, flags) for p, flags in options if p.total <= budget]
    if fitting:
        best, flags = fitting[0]
        slowdown = sum(SLOWDOWN[flag.split()[0].lstrip("-")] * (int(flag.split()[-1]) if "blocks_to_swap" in flag
                                                                   else 1) for flag in flags)
        print(f"suggestion (cheapest first, about +{slowdown:.0%} step time): {' '.join(flags)} -> "
              f"{best.total / GIB:.1f} GiB")
        print(format_table(best, budget))
    else:
        last, flags = options[-1] if options else (result, ["(as given)"])
        print(f"no flag set fits: the smallest is {last.total / GIB:.1f} GiB with {' '.join(flags)}; lower --rank, "
              "the bucket size (--video_sample_size / --token_sample_size) or --video_sample_n_frames, or use a "
              "larger GPU")
    return 1


def startup_line(model_args, data_args, args) -> str | None:
    """The planner's prediction for a run about to start, in one line (None when it cannot be made)."""
    values = {**vars(model_args), **vars(data_args),
              **{key: getattr(args, key) for key in dir(args) if not key.startswith("_") and not callable(
                  getattr(type(args), key, None))}}
    values["optim"] = str(getattr(args.optim, "value", args.optim))
    try:
        result = plan_recipe(values).result
    except Exception as error:  # a prediction never stops a run
        return f"memory plan: not available ({error})"
    return f"memory plan: {result.line()} at the largest bucket ({result.tokens:,} tokens); details: hf-easyanimate " \
           "plan-memory RECIPE.yaml"
