"""One bf16 LoRA training step of a random EasyAnimate V5.1 transformer at 512x512x49, on a CUDA GPU.

The transformer has the real V5.1 12B width (48 heads x 64 = 3072, text width 3584, InP input channels
2 x 16 + 1) with fewer layers; the LoRA is ours (rank 128, alpha 64, the default targets). Per depth it
measures, side by side in one process, the median step time and the peak CUDA memory with and without
gradient checkpointing, then fits time and memory linearly in the number of layers and extrapolates to the
real 48. Inputs are random: no checkpoint is downloaded.

    python bench/bench_gpu_step.py                     # depths 4 and 8, 5 timed steps each
    python bench/bench_gpu_step.py --layers 8 12 --steps 10

Needs CUDA; exits with a message otherwise. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import SMOKE_HELP, ratio  # noqa: E402

V51 = {
    "num_attention_heads": 48,
    "attention_head_dim": 64,
    "in_channels": 33,  # noisy latents (16) + mask (1) + masked-video latents (16): the InP checkpoints
    "out_channels": 16,
    "patch_size": 2,
    "time_embed_dim": 512,
    "text_embed_dim": 3584,
    "sample_width": 128,
    "sample_height": 128,
}
LATENT_CHANNELS = 16
TEXT_TOKENS = 256  # tokenizer_max_length


def latent_shape(height: int, width: int, frames: int) -> tuple[int, int, int, int]:
    """MagVIT: 8x spatial, 4x temporal compression (first frame kept): 49 frames -> 13 latent frames."""
    return LATENT_CHANNELS, (frames - 1) // 4 + 1, height // 8, width // 8


def build(layers: int, checkpointing: bool, rank: int, device: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    from diffusers import EasyAnimateTransformer3DModel

    from hf_easyanimate.models.lora import add_lora, build_lora_config

    with torch.device(device):
        transformer = EasyAnimateTransformer3DModel(num_layers=layers, mmdit_layers=layers, **V51)
    transformer = transformer.to(torch.bfloat16).requires_grad_(False)
    if checkpointing:
        transformer.enable_gradient_checkpointing()
    config = build_lora_config(transformer, rank, rank // 2)
    model = add_lora(transformer, config)  # LoRA weights in fp32, as in training
    trainable = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(trainable, lr=1e-4, eps=1e-10, weight_decay=5e-3)


def one_step(model, optimizer, inputs: dict) -> None:
    with torch.autocast(inputs["hidden_states"].device.type, dtype=torch.bfloat16):
        pred = model(**inputs, return_dict=False)[0]
    loss = (pred.float() - inputs["hidden_states"].float()).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(layers: int, checkpointing: bool, steps: int, rank: int, size: tuple[int, int, int],
            device: str = "cuda") -> dict:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model, optimizer = build(layers, checkpointing, rank, device)
    channels, frames, height, width = latent_shape(*size)
    generator = torch.Generator(device).manual_seed(0)
    randn = lambda *shape: torch.randn(*shape, device=device, dtype=torch.bfloat16, generator=generator)  # noqa: E731
    inputs = {
        "hidden_states": randn(1, channels, frames, height, width),
        "inpaint_latents": randn(1, channels + 1, frames, height, width),  # mask + masked-video latents
        "encoder_hidden_states": randn(1, TEXT_TOKENS, V51["text_embed_dim"]),
        "timestep": torch.tensor([500.0], device=device),
    }
    lora_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    try:
        one_step(model, optimizer, inputs)  # warm-up: kernels, allocator, optimizer state
        synchronize(device)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            one_step(model, optimizer, inputs)
            synchronize(device)
            times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        result = {"median_s": statistics.median(times), "peak_gib": peak}
    except torch.cuda.OutOfMemoryError:
        result = {"median_s": float("nan"), "peak_gib": float("inf")}
    result.update(layers=layers, checkpointing=checkpointing, lora_parameters=lora_parameters)
    del model, optimizer, inputs
    gc.collect()
    return result


def linear_fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    return mean_y - b * mean_x, b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 8], help="depths to measure (8+ included)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--size", type=int, nargs=3, default=[512, 512, 49], metavar=("H", "W", "FRAMES"))
    parser.add_argument("--target_layers", type=int, default=48)
    parser.add_argument("--device", default="cuda", help="'cpu' only to smoke-test the script (no memory figures)")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP + " (depths 2 and 3, 1 step, 128x128x9)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.layers, args.steps, args.size = [2, 3], 1, [128, 128, 9]
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu_step: needs a CUDA GPU (none found); nothing measured.")
        return 0
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}, size {args.size}")
    rows = []
    for layers in args.layers:
        with_ckpt = measure(layers, True, args.steps, args.rank, tuple(args.size), args.device)
        without = measure(layers, False, args.steps, args.rank, tuple(args.size), args.device)
        rows.append(with_ckpt)
        print(
            f"layers {layers:3d}: checkpointing {with_ckpt['median_s']:.3f} s/step, {with_ckpt['peak_gib']:.2f} GiB | "
            f"without {without['median_s']:.3f} s/step, {without['peak_gib']:.2f} GiB | "
            f"time ratio {with_ckpt['median_s'] / without['median_s']:.2f}, "
            f"memory ratio {with_ckpt['peak_gib'] / without['peak_gib']:.2f} | LoRA params {with_ckpt['lora_parameters']:,}"
        )
        ratio(f"step time, checkpointing / without ({layers} layers)", with_ckpt["median_s"] / without["median_s"])
    if len(rows) >= 2:
        depths = [row["layers"] for row in rows]
        time_a, time_b = linear_fit(depths, [row["median_s"] for row in rows])
        mem_a, mem_b = linear_fit(depths, [row["peak_gib"] for row in rows])
        target = args.target_layers
        print(
            f"extrapolated to {target} layers (checkpointing, bf16, LoRA rank {args.rank}): "
            f"{time_a + time_b * target:.2f} s/step ({time_b:.3f} s per layer), "
            f"{mem_a + mem_b * target:.1f} GiB peak ({mem_b:.2f} GiB per layer)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
