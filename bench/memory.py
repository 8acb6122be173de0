"""Memory: peak RSS of a tiny CPU run (cached vs uncached), and an analytic accelerator-memory table for the
real V5.1 12B LoRA run at 512x512x49, 768x768x21 and 1024x1024x13.

    python bench/memory.py [--steps 20] [--smoke]

The tiny runs each happen in a fresh interpreter (``ru_maxrss`` is per process). The table is arithmetic
(printed as markdown), with the assumptions stated beside it in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import SMOKE_HELP, ratio  # noqa: E402

GIB = 2**30
# V5.1 12B transformer (counted from diffusers' EasyAnimateTransformer3DModel on the meta device, issue 6).
TRANSFORMER_PARAMS = 11.80e9
LAYERS, WIDTH, TEXT_TOKENS = 48, 3072, 256
LORA_PARAMS = 915.0e6  # rank 128 on the default targets (677 Linear layers)
TEXT_ENCODER_PARAMS = 8.29e9  # Qwen2-VL-7B
LIVE_TENSORS_PER_BLOCK = 20  # bf16 T x d tensors a block keeps for its backward (q, k, v, out, norms, 4x FFN)


def tokens(height: int, width: int, frames: int) -> int:
    """Video tokens (VAE /8 spatially, /4 in time on 4n+1 frames, patch 2) plus the text tokens."""
    return ((frames - 1) // 4 + 1) * (height // 16) * (width // 16) + TEXT_TOKENS


def table() -> list[dict]:
    rows = []
    weights = TRANSFORMER_PARAMS * 2 / GIB
    lora = LORA_PARAMS * 4 / GIB  # fp32 LoRA weights; the same again for grads; 2x for AdamW m, v
    encoder = TEXT_ENCODER_PARAMS * 2 / GIB
    for height, width, frames in ((512, 512, 49), (768, 768, 21), (1024, 1024, 13)):
        t = tokens(height, width, frames)
        block = LIVE_TENSORS_PER_BLOCK * t * WIDTH * 2 / GIB
        saved_inputs = LAYERS * t * WIDTH * 2 / GIB
        with_ckpt = saved_inputs + 2 * block  # block inputs + one block recomputed, with its gradients
        without = LAYERS * block + block  # every block's activations + the gradients of one
        base = weights + 4 * lora
        rows.append({
            "size": f"{height}x{width}x{frames}", "tokens": t, "weights": weights, "lora": lora, "grads": lora,
            "optimizer": 2 * lora, "act_ckpt": with_ckpt, "act_full": without,
            "total_ckpt_cached": base + with_ckpt, "total_full_cached": base + without,
            "total_ckpt_resident_encoder": base + with_ckpt + encoder,
        })
    return rows


def child(steps: int, cached: bool) -> None:
    from _tiny import argv, prepare

    from hf_easyanimate.assembly import run
    from hf_easyanimate.trainers.lora_config import parse_args

    with tempfile.TemporaryDirectory() as folder:
        model, meta = prepare(folder)
        extra = ["--latent_cache_dir", os.path.join(folder, "latents")] if cached else []
        flags = argv(model, meta, os.path.join(folder, "out"), steps, *extra)
        if cached:
            subprocess.run([sys.executable, __file__, "--precompute-only", *flags], check=True, capture_output=True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run(*parse_args(flags))
        print(f"RSS {before / 1024:.0f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


def main() -> None:
    if sys.argv[1:2] == ["--precompute-only"]:
        from hf_easyanimate.commands.precompute import main as precompute_main

        sys.exit(precompute_main(sys.argv[2:]))
    if sys.argv[1:2] == ["--child"]:
        child(int(sys.argv[2]), sys.argv[3] == "cached")
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    options = parser.parse_args()
    if options.smoke:
        options.steps = 2
    peaks = {}
    for mode in ("uncached", "cached"):
        out = subprocess.run([sys.executable, __file__, "--child", str(options.steps), mode], capture_output=True,
                             text=True, check=True).stdout
        line = next(x for x in out.splitlines() if x.startswith("RSS "))
        peaks[mode] = [float(v) for v in line.split()[1:]]
    print(f"{'tiny run, ' + str(options.steps) + ' steps':<24}{'RSS before run MiB':>20}{'peak RSS MiB':>14}")
    for mode, (before, peak) in peaks.items():
        print(f"{mode:<24}{before:>20.0f}{peak:>14.0f}")
    ratio("peak RSS uncached / cached", peaks["uncached"][1] / peaks["cached"][1])
    print()
    print("| size | tokens | weights bf16 | LoRA fp32 | LoRA grads | AdamW m,v | activations (ckpt) | activations "
          "(no ckpt) | total ckpt, cached | total no ckpt, cached | total ckpt + resident Qwen2-VL |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in table():
        print(f"| {r['size']} | {r['tokens']:,} | {r['weights']:.1f} | {r['lora']:.1f} | {r['grads']:.1f} | "
              f"{r['optimizer']:.1f} | {r['act_ckpt']:.1f} | {r['act_full']:.1f} | **{r['total_ckpt_cached']:.1f}** | "
              f"{r['total_full_cached']:.1f} | {r['total_ckpt_resident_encoder']:.1f} |")


if __name__ == "__main__":
    main()
