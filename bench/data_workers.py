"""Clips per second of the training data path with 0, 1 and 2 dataloader workers, pixels vs latent cache.

    python bench/data_workers.py [--videos 32] [--long 12] [--epochs 4] [--rounds 3]

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

from _tiny import argv, prepare, quiet_threads
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


def measure(model: str, meta: str, folder: str, epochs: int, rounds: int, *extra: str) -> dict:
    cache = os.path.join(folder, "latents-" + os.path.basename(os.path.dirname(meta)))
    flags = argv(model, meta, os.path.join(folder, "out"), 1, "--latent_cache_dir", cache, *extra)
    precompute_main(flags)
    model_args, data_args, args = parse_args(flags)
    components = load_components(model)
    spec = cache_spec(model_args, data_args, components.vae, build_prompt_encoder(components), inpaint=False)
    cached = build_cached_data(data_args, spec, 2, 42, 1, 0, 4)[:3]
    pixels = build_train_data(data_args, batch_size=2, seed=42)
    pixel_parts = (pixels.dataset, pixels.sampler, pixels.collator)
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for workers in (0, 1, 2):
            for name, parts in (("pixels", pixel_parts), ("cache", cached)):
                results.setdefault((name, workers), []).append(clips_per_second(*parts, workers, epochs))
    return {key: statistics.median(values) for key, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--long", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    quiet_threads()
    with tempfile.TemporaryDirectory() as folder:
        model, meta = prepare(folder, videos=options.videos)
        sets = {"demo clips, 64 px x 9": measure(model, meta, folder, options.epochs, options.rounds)}
        long_meta = write_long_clips(folder, options.long)
        sets["240-frame clips, 256 px x 49"] = measure(
            model, long_meta, folder, options.epochs, options.rounds, "--video_sample_size", "256",
            "--image_sample_size", "256", "--video_sample_n_frames", "49", "--video_sample_stride", "3",
        )
    print(f"{'clips':<30}{'workers':>8}{'pixels clips/s':>16}{'cache clips/s':>16}{'cache / pixels':>16}")
    for name, results in sets.items():
        for workers in (0, 1, 2):
            p, c = results[("pixels", workers)], results[("cache", workers)]
            print(f"{name:<30}{workers:>8}{p:>16.1f}{c:>16.1f}{c / p:>15.1f}x")


if __name__ == "__main__":
    main()
