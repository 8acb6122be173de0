"""Peak GPU memory and step time of the 24 GB recipe's step beside the plain recipe's, with the planner's
prediction beside each (issue 15).

    python bench/bench_gpu_memory.py                      # 8 blocks of the real V5.1 width, 512x512x49, 24 GB cap
    python bench/bench_gpu_memory.py --layers 12 --gpu_memory_gb 24 --steps 3

The process is capped at --gpu_memory_gb with ``torch.cuda.set_per_process_memory_fraction``, so a large GPU
behaves like a 24 GB one (an over-budget run fails with an out-of-memory error, which is reported, not hidden).
A random ``EasyAnimateTransformer3DModel`` of the real V5.1 12B width (48 heads x 64, text 3584, InP input) with
``--layers`` MMDiT blocks runs one LoRA step (rank 128, every Linear) at 512x512x49 (13,312 video tokens + 256
text tokens) with:

* plain: bf16 weights, AdamW, gradient checkpointing (the seed recipe);
* 24 GB: fp8 base weights, 8-bit AdamW when bitsandbytes is installed (else AdamW, said so), activation offload,
  and the 24 GB recipe's share of swapped blocks (12 of 48, i.e. a quarter of --layers).

For each it prints the median step time, ``torch.cuda.max_memory_allocated`` and the planner's prediction for the
same model and shape (weights + LoRA state + activations; the CUDA workspace reserve is not in
``max_memory_allocated``). Without CUDA it says so and exits.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import SMOKE_HELP, ratio  # noqa: E402

GIB = 1024**3


def build_transformer(layers: int):
    from diffusers import EasyAnimateTransformer3DModel

    config = {"num_attention_heads": 48, "attention_head_dim": 64, "in_channels": 33, "out_channels": 16,
              "patch_size": 2, "num_layers": layers, "mmdit_layers": layers, "time_embed_dim": 512,
              "text_embed_dim": 3584, "add_norm_text_encoder": True, "sample_width": 128, "sample_height": 128}
    return config, EasyAnimateTransformer3DModel.from_config(config)


def run_variant(name: str, layers: int, steps: int, fp8: bool, eight_bit: bool, offload: bool, swap: int) -> dict:
    from hf_easyanimate.data.buckets import FrameGrid
    from hf_easyanimate.memory.block_swap import swap_blocks
    from hf_easyanimate.memory.offload import activation_offload
    from hf_easyanimate.memory.planner import RunShape, build_context, fake_inputs, plan
    from hf_easyanimate.memory.storage import store_weights
    from hf_easyanimate.models.lora import add_lora, build_lora_config

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    device = torch.device("cuda")
    shape = RunShape(batch_size=1, frames=49, height=512, width=512, text_tokens=256, weight_dtype=torch.bfloat16,
                     base_weight_dtype=torch.float8_e4m3fn if fp8 else None, rank=128,
                     optimizer="adamw_bnb_8bit" if eight_bit else "adamw", gradient_checkpointing=True,
                     activation_offload=offload, blocks_to_swap=swap)
    config, transformer = build_transformer(layers)
    transformer = transformer.to(torch.bfloat16).requires_grad_(False)
    if fp8:
        store_weights(transformer, torch.float8_e4m3fn, torch.bfloat16)
    model = add_lora(transformer, build_lora_config(transformer, 128, 64))
    checkpoint = None
    if swap:
        from functools import partial

        checkpoint = partial(torch.utils.checkpoint.checkpoint, use_reentrant=False, early_stop=False)
    transformer.enable_gradient_checkpointing(gradient_checkpointing_func=checkpoint)
    swapper = swap_blocks(transformer, swap, device)
    model.to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if eight_bit:
        import bitsandbytes as bnb

        optimizer = bnb.optim.AdamW8bit(trainable, lr=1e-5, eps=1e-10, weight_decay=5e-3)
    else:
        optimizer = torch.optim.AdamW(trainable, lr=1e-5, eps=1e-10, weight_decay=5e-3, fused=True)
    inputs = fake_inputs(transformer, shape, 16, FrameGrid(4), device=device)
    times = []
    for index in range(steps + 1):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with activation_offload(offload, device):
            loss = model(**inputs)[0].float().square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if index:  # the first step allocates the optimizer state and warms the kernels up
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated()
    predicted = plan(build_context(config, "bench", shape, 16, FrameGrid(4)), shape)
    parts = {k: v for k, v in predicted.parts.items() if k not in ("encoders (resident)", "CUDA workspace")}
    del model, transformer, optimizer, inputs, swapper
    return {"name": name, "step_s": statistics.median(times), "peak": peak, "predicted": sum(parts.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8, help="MMDiT blocks of the real V5.1 width (8+)")
    parser.add_argument("--gpu_memory_gb", type=float, default=24.0, help="cap the process at this much GPU memory")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP + " (8 blocks, 1 step)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.layers, args.steps = 8, 1
    if not torch.cuda.is_available():
        print("bench_gpu_memory: no CUDA device; this benchmark measures GPU memory and needs one "
              "(docs/benchmarks.md says when it last ran)")
        return 0
    import importlib.util

    total = torch.cuda.get_device_properties(0).total_memory
    fraction = min(1.0, args.gpu_memory_gb * GIB / total)
    torch.cuda.set_per_process_memory_fraction(fraction)
    eight_bit = importlib.util.find_spec("bitsandbytes") is not None
    print(f"GPU {torch.cuda.get_device_name(0)} ({total / GIB:.0f} GiB), capped at {args.gpu_memory_gb:g} GiB "
          f"(fraction {fraction:.3f}); {args.layers} blocks of the V5.1 width, 512x512x49, LoRA rank 128"
          + ("" if eight_bit else "; bitsandbytes missing: the 24 GB variant uses AdamW"))
    peaks = {}
    variants = [("plain (bf16, AdamW, checkpointing)", dict(fp8=False, eight_bit=False, offload=False, swap=0)),
                ("24 GB recipe (fp8, 8-bit AdamW, offload, swap)",
                 dict(fp8=True, eight_bit=eight_bit, offload=True, swap=max(1, args.layers // 4)))]
    for name, options in variants:
        try:
            result = run_variant(name, args.layers, args.steps, **options)
        except torch.cuda.OutOfMemoryError as error:
            print(f"{name}: out of memory under the {args.gpu_memory_gb:g} GiB cap ({str(error).splitlines()[0]})")
            torch.cuda.empty_cache()
            continue
        print(f"{name}: {result['step_s']:.2f} s/step, peak {result['peak'] / GIB:.2f} GiB allocated, planner "
              f"{result['predicted'] / GIB:.2f} GiB ({100 * (result['predicted'] - result['peak']) / result['peak']:+.1f}%)")
        peaks[name] = result
        ratio(f"planner / measured peak, {name}", result["predicted"] / result["peak"])
    if len(peaks) == 2:
        plain, small = peaks.values()
        ratio("peak, 24 GB recipe / plain", small["peak"] / plain["peak"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
