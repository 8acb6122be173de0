"""Step time of ``EasyAnimateTrainer`` vs a bare PyTorch loop: same tiny model, batches, loss and optimizer.

    python bench/trainer_overhead.py [--steps 40] [--warmup 8] [--rounds 3] [--smoke]

Both read the latent cache (so the step is the transformer, not the VAE, and any loop overhead shows) with
the cpu_demo recipe (batch 2, augmentation off). The bare loop: a plain ``DataLoader`` over the same dataset,
sampler and collator, the same objective, forward, backward, ``clip_grad_norm_(1.0)``, fused AdamW with the
run's hyper-parameters, ``zero_grad``. The trainer adds what it always does: keyed RNG per step, the
non-finite guard, the original's clip-norm schedule, the LR scheduler, callbacks. Rounds alternate; the median
step after the warm-up per run (wall time, and the process's CPU time, which other load on a shared machine
barely moves), medians over rounds.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import torch
from _tiny import StepTimer, argv, fresh_dir, prepare, ratio, step_bench_options
from torch.utils.data import DataLoader

from hf_easyanimate.assembly import build_cached_training_data, build_lora_model, build_objective, run
from hf_easyanimate.commands.precompute import main as precompute_main
from hf_easyanimate.models.encoders import FrozenEncoders
from hf_easyanimate.models.loading import load_components
from hf_easyanimate.models.text import build_prompt_encoder
from hf_easyanimate.trainers.lora_config import parse_args


def trainer_step(args_list: list[str], warmup: int) -> tuple[float, float]:
    """(wall, CPU) median seconds per step."""
    timer = StepTimer()
    run(*parse_args(args_list), callbacks=[timer])
    return timer.median(warmup), timer.cpu_median(warmup)


def bare_step(args_list: list[str], steps: int, warmup: int) -> tuple[float, float]:
    model_args, data_args, args = parse_args(args_list)
    components = load_components(model_args.pretrained_model_name_or_path)
    objective = build_objective(args, components)
    prompt_encoder = build_prompt_encoder(components, model_args.tokenizer_max_length)
    dataset, sampler, collator = build_cached_training_data(model_args, data_args, args, components, prompt_encoder, None)
    encoders = FrozenEncoders(components.vae, prompt_encoder, "cpu", low_vram=True, vae_mini_batch=args.vae_mini_batch)
    model = build_lora_model(components.transformer, model_args, args)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  eps=args.adam_epsilon, weight_decay=args.weight_decay, fused=True)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collator)
    stamps: list[tuple[float, float]] = []
    epoch = 0
    while len(stamps) <= steps:
        sampler.set_epoch(epoch)
        for batch in loader:
            latents = encoders.sample_latents(batch["latent_mean"], batch["latent_std"]).float()
            noisy = objective.prepare(latents, objective.sample_noise(latents))
            pred = model(hidden_states=noisy.noisy_latents, timestep=noisy.timesteps,
                         encoder_hidden_states=batch["encoder_hidden_states"], return_dict=False)[0]
            objective.loss(pred, noisy).backward()
            torch.nn.utils.clip_grad_norm_(trainable, args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            stamps.append((time.perf_counter(), time.process_time()))
            if len(stamps) > steps:
                break
        epoch += 1
    wall = statistics.median([b[0] - a[0] for a, b in zip(stamps, stamps[1:])][warmup:])
    cpu = statistics.median([b[1] - a[1] for a, b in zip(stamps, stamps[1:])][warmup:])
    return wall, cpu


def main() -> None:
    options = step_bench_options("Step time of EasyAnimateTrainer vs a bare PyTorch loop: same tiny model, batches, "
                                 "loss and optimizer.")
    with tempfile.TemporaryDirectory() as folder:
        model, meta = prepare(folder, videos=options.videos)
        cache = os.path.join(folder, "latents")

        def flags() -> list[str]:  # a fresh --output_dir per run: a run refuses a folder holding another one
            return argv(model, meta, fresh_dir(folder), options.steps, "--latent_cache_dir", cache)

        precompute_main(flags())
        trainer, bare = [], []
        for _ in range(options.rounds):
            trainer.append(trainer_step(flags(), options.warmup))
            bare.append(bare_step(flags(), options.steps, options.warmup))
    print(f"{'':<24}{'wall ms/step':>14}{'CPU ms/step':>14}")
    medians = {}
    for name, values in (("EasyAnimateTrainer", trainer), ("bare PyTorch loop", bare)):
        medians[name] = [statistics.median(v[i] for v in values) * 1000 for i in (0, 1)]
        print(f"{name:<24}{medians[name][0]:>14.1f}{medians[name][1]:>14.1f}")
    t, b = medians["EasyAnimateTrainer"], medians["bare PyTorch loop"]
    ratio("trainer / bare, wall", t[0] / b[0])
    ratio("trainer / bare, CPU", t[1] / b[1], "(target <= 1.05)")
    print("per round CPU ms (trainer, bare): "
          + ", ".join(f"({x[1] * 1000:.1f}, {y[1] * 1000:.1f})" for x, y in zip(trainer, bare)))


if __name__ == "__main__":
    main()
