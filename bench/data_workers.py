"""Clips per second of the training data path with 0, 1 and 2 dataloader workers, pixels vs latent cache.

    python bench/data_workers.py [--videos 32] [--epochs 4] [--rounds 3]

Pixels: decode (decord) + resize/crop + collate, the cpu_demo recipe (64 px, 9 frames at stride 2, batch 2,
fixed frame window, no buckets). Cache: the same batches read from `hf-easyanimate precompute`'s shards.
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
from torch.utils.data import DataLoader

from hf_easyanimate.cache.setup import build_cached_data, cache_spec, precompute_main
from hf_easyanimate.data import build_train_data
from hf_easyanimate.models.loading import load_components
from hf_easyanimate.models.text import build_prompt_encoder
from hf_easyanimate.parser import parse_args


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    quiet_threads()
    with tempfile.TemporaryDirectory() as folder:
        model, meta = prepare(folder, videos=options.videos)
        cache = os.path.join(folder, "latents")
        flags = argv(model, meta, os.path.join(folder, "out"), 1, "--latent_cache_dir", cache)
        precompute_main(flags)
        model_args, data_args, args = parse_args(flags)
        components = load_components(model)
        spec = cache_spec(model_args, data_args, components.vae, build_prompt_encoder(components), inpaint=False)
        cached = build_cached_data(data_args, spec, 2, 42, 1, 0, 4)[:3]
        pixels = build_train_data(data_args, batch_size=2, seed=42)
        pixel_parts = (pixels.dataset, pixels.sampler, pixels.collator)
        results: dict[tuple[str, int], list[float]] = {}
        for _ in range(options.rounds):
            for workers in (0, 1, 2):
                for name, parts in (("pixels", pixel_parts), ("cache", cached)):
                    results.setdefault((name, workers), []).append(clips_per_second(*parts, workers, options.epochs))
    print(f"{'workers':<10}{'pixels clips/s':>16}{'cache clips/s':>16}{'cache / pixels':>16}")
    for workers in (0, 1, 2):
        p = statistics.median(results[("pixels", workers)])
        c = statistics.median(results[("cache", workers)])
        print(f"{workers:<10}{p:>16.1f}{c:>16.1f}{c / p:>15.1f}x")


if __name__ == "__main__":
    main()
