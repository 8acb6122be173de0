"""Steady-state step time with the latent cache vs without, and a cached step vs transformer-only fwd+bwd.

    python bench/cache_step.py [--steps 40] [--warmup 8] [--rounds 3] [--smoke]

The tiny V5.1 model on the demo clips (64 px, 9 frames, batch 2, the cpu_demo recipe with augmentation off).
"uncached" runs the VAE and text encoder every step; "cached" reads `hf-easyanimate precompute`'s entries;
"transformer only" is the bare forward + backward of the LoRA transformer on the same batch shapes, with no
data loading, encoding, noise or optimizer: what the cache leaves as the floor. Per run the median step after
the warm-up (wall, and the process's CPU time, which other load barely moves); rounds alternate; medians over
rounds.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import torch
from _tiny import StepTimer, argv, fresh_dir, prepare, ratio, step_bench_options

from hf_easyanimate.assembly import run
from hf_easyanimate.commands.precompute import main as precompute_main
from hf_easyanimate.trainers.lora_config import parse_args


def trainer_step(args_list: list[str], warmup: int) -> tuple[tuple[float, float], object]:
    """((wall, CPU) median seconds per step, the trainer)."""
    timer = StepTimer()
    trainer = run(*parse_args(args_list), callbacks=[timer])
    return (timer.median(warmup), timer.cpu_median(warmup)), trainer


def transformer_only(trainer, steps: int, warmup: int) -> tuple[float, float]:
    """Forward + backward of the trainer's LoRA transformer on the run's own batches (same epochs, same shapes),
    timing nothing else: no data loading, no encoding, no objective, no optimizer."""
    model = trainer.model
    model.train()
    loader = trainer.get_train_dataloader()
    times: list[tuple[float, float]] = []
    epoch = 0
    while len(times) < steps:
        loader.set_epoch(epoch)
        for batch in loader:
            latents = trainer.encoders.sample_latents(batch["latent_mean"], batch["latent_std"]).float()
            timestep = torch.full((len(latents),), 500.0)
            started, cpu = time.perf_counter(), time.process_time()
            out = model(hidden_states=latents, timestep=timestep,
                        encoder_hidden_states=batch["encoder_hidden_states"], return_dict=False)[0]
            out.float().pow(2).mean().backward()
            times.append((time.perf_counter() - started, time.process_time() - cpu))
            model.zero_grad(set_to_none=True)
            if len(times) == steps:
                break
        epoch += 1
    return tuple(statistics.median(t[i] for t in times[warmup:]) for i in (0, 1))


def main() -> None:
    options = step_bench_options("Steady-state step time with the latent cache vs without, and a cached step vs "
                                 "transformer-only fwd+bwd.")
    with tempfile.TemporaryDirectory() as folder:
        model, meta = prepare(folder, videos=options.videos)
        cache = os.path.join(folder, "latents")
        started = time.perf_counter()
        precompute_main(argv(model, meta, fresh_dir(folder), 1, "--latent_cache_dir", cache))
        precompute_s = time.perf_counter() - started
        results: dict[str, list[tuple[float, float]]] = {"uncached": [], "cached": [], "transformer only": []}
        for _ in range(options.rounds):  # each run trains into a fresh --output_dir
            step, _ = trainer_step(argv(model, meta, fresh_dir(folder), options.steps), options.warmup)
            results["uncached"].append(step)
            step, trainer = trainer_step(argv(model, meta, fresh_dir(folder), options.steps, "--latent_cache_dir",
                                              cache), options.warmup)
            results["cached"].append(step)
            results["transformer only"].append(transformer_only(trainer, options.steps, options.warmup))
    medians = {name: [statistics.median(v[i] for v in values) * 1000 for i in (0, 1)]
               for name, values in results.items()}
    print(f"precompute (tiny model, {options.videos} clips, one process): {precompute_s:.1f} s")
    print(f"{'':<18}{'wall ms/step':>14}{'CPU ms/step':>14}")
    for name, (wall, cpu) in medians.items():
        print(f"{name:<18}{wall:>14.1f}{cpu:>14.1f}")
    u, c, t = medians["uncached"], medians["cached"], medians["transformer only"]
    ratio("uncached / cached, wall", u[0] / c[0])
    ratio("uncached / cached, CPU", u[1] / c[1])
    ratio("cached / transformer only, wall", c[0] / t[0])
    ratio("cached / transformer only, CPU", c[1] / t[1], "(target <= 1.10)")


if __name__ == "__main__":
    main()
