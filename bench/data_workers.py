"""Clips per second of the training data path with 0, 1 and 2 dataloader workers, pixels vs latent cache.

    python bench/data_workers.py [--videos 32] [--long 12] [--epochs 4] [--rounds 3] [--smoke]

Pixels: decode (decord) + resize/crop + collate, batch 2, fixed frame window, no buckets; cache: the same
batches read from `hf-easyanimate precompute`'s shards. Two clip sets: the demo mp4s with the cpu_demo
recipe (64 px, 9 frames at stride 2), and longer clips closer to real footage (240 frames at 256x256, a
keyframe every 30; 49 frames at stride 3 at 256 px, as the V5.1 recipe samples them).
Worker counts alternate round by round; medians. Worker start-up is inside the timing (as in a run's
first epoch) so each round makes a fresh loader.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from _tiny import SMOKE_HELP, argv, fresh_dir, prepare, quiet_threads, ratio
from data_throughput import write_long_clips
from torch.utils.data import DataLoader

from hf_easyanimate.cache.build import build_cached_data, cache_spec
from hf_easyanimate.commands.precompute import main as precompute_main
from hf_easyanimate.data import build_train_data
from hf_easyanimate.models.loading import load_components
from hf_easyanimate.models.text import build_prompt_encoder
from hf_easyanimate.trainers.lora_config import parse_args


def clips_per_second(dataset, sampler, collator, workers: int, epochs: int) -> float:
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collator, num_workers=workers,
                        persistent_workers=workers > 0)
    clips = 0
    started = time.perf_counter()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in loader:
            clips += len(batch["text"])
    return clips / (time.perf_counter() - started)


def measure(model: str, meta: str, folder: str, epochs: int, rounds: int, workers: tuple[int, ...],
            *extra: str) -> dict:
    cache = os.path.join(folder, "latents-" + os.path.basename(os.path.dirname(meta)))
    flags = argv(model, meta, fresh_dir(folder), 1, "--latent_cache_dir", cache, *extra)
    precompute_main(flags)
    model_args, data_args, args = parse_args(flags)
    components = load_components(model)
    spec = cache_spec(model_args, data_args, components.vae, build_prompt_encoder(components), inpaint=False)
    cached = build_cached_data(data_args, spec, 2, 42, 1, 0, 4)[:3]
    pixels = build_train_data(data_args, batch_size=2, seed=42)
    pixel_parts = (pixels.dataset, pixels.sampler, pixels.collator)
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for count in workers:
            for name, parts in (("pixels", pixel_parts), ("cache", cached)):
                results.setdefault((name, count), []).append(clips_per_second(*parts, count, epochs))
    return {key: statistics.median(values) for key, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--long", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    options = parser.parse_args()
    workers, long_frames, long_side = (0, 1, 2), 240, 256
    if options.smoke:  # 4 demo clips, 2 short long clips, one epoch and round, 0 and 1 workers
        options.videos, options.long, options.epochs, options.rounds = 4, 2, 1, 1
        workers, long_frames, long_side = (0, 1), 60, 64
    quiet_threads()
    with tempfile.TemporaryDirectory() as folder:
        model, meta = prepare(folder, videos=options.videos)
        sets = {"demo clips, 64 px x 9": measure(model, meta, folder, options.epochs, options.rounds, workers)}
        long_meta = write_long_clips(folder, options.long, frames=long_frames, side=long_side)
        sets[f"{long_frames}-frame clips, {long_side} px x 49"] = measure(
            model, long_meta, folder, options.epochs, options.rounds, workers, "--video_sample_size", str(long_side),
            "--image_sample_size", str(long_side), "--video_sample_n_frames", "49", "--video_sample_stride", "3",
        )
    print(f"{'clips':<30}{'workers':>8}{'pixels clips/s':>16}{'cache clips/s':>16}{'cache / pixels':>16}")
    for name, results in sets.items():
        for count in workers:
            p, c = results[("pixels", count)], results[("cache", count)]
            print(f"{name:<30}{count:>8}{p:>16.1f}{c:>16.1f}{c / p:>15.1f}x")
    for name, results in sets.items():
        ratio(f"cache / pixels ({name}, {workers[-1]} workers)",
              results[("cache", workers[-1])] / results[("pixels", workers[-1])])


if __name__ == "__main__":
    main()
