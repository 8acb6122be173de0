"""Shared set-up of the benchmarks: a tiny V5.1 repo, demo clips, a fresh output folder per run, step timing, the
``--smoke`` mode and the ``ratio ...`` lines every benchmark ends with (``tests/test_bench.py`` runs them all)."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from _report import SMOKE_HELP, ratio  # noqa: F401  (re-exported for the benchmarks)
from transformers import TrainerCallback

from hf_easyanimate.testing import make_demo_data, make_tiny_model
from hf_easyanimate.utils import quiet

RECIPE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "tiny", "cpu_demo.yaml")


def prepare(folder: str, videos: int = 16, images: int = 0) -> tuple[str, str]:
    """(tiny model folder, metadata.json) under ``folder``; videos only, so every batch has one shape. Third-party
    notices that say nothing to act on are filtered as the command line filters them."""
    quiet.install()
    model = make_tiny_model(os.path.join(folder, "model"))
    meta = make_demo_data(os.path.join(folder, "data"), videos=videos, images=images)
    return model, meta


def fresh_dir(parent: str, name: str = "out") -> str:
    """A new, empty folder under ``parent`` for one run: a training run refuses an --output_dir holding another."""
    return tempfile.mkdtemp(prefix=f"{name}-", dir=parent)


def argv(model: str, meta: str, out: str, steps: int, *extra: str) -> list[str]:
    """The tiny demo recipe without buckets (every batch 2 x 9 frames x 64 x 64), augmentation off, no saving or
    logging inside the timed steps."""
    return [RECIPE, "--pretrained_model_name_or_path", model, "--train_data_dir", os.path.dirname(meta),
            "--train_data_meta", meta, "--output_dir", out, "--max_steps", str(steps), "--save_steps", "100000",
            "--logging_steps", "100000", "--fixed_frame_window", "true", "--disable_tqdm", "true",
            "--enable_bucket", "false", *extra]


class StepTimer(TrainerCallback):
    """Wall time between consecutive optimizer steps (data, forward, backward, optimizer, callbacks)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.cpu_stamps: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.stamps.append(time.perf_counter())
        self.cpu_stamps.append(time.process_time())

    def median(self, warmup: int) -> float:
        """Median step after ``warmup`` steps (robust to load from other processes on a shared machine)."""
        return statistics.median([b - a for a, b in zip(self.stamps, self.stamps[1:])][warmup:])

    def cpu_median(self, warmup: int) -> float:
        """Median CPU time of this process per step: with one thread and no workers it is the work done,
        and barely moves when other processes load the machine (wall time does)."""
        return statistics.median([b - a for a, b in zip(self.cpu_stamps, self.cpu_stamps[1:])][warmup:])


def quiet_threads() -> None:
    """One intra-op thread: on a shared 2-core machine a second OpenMP thread waits on busy cores and turns a
    50 ms step into seconds now and then; one thread keeps both loops comparable."""
    import torch

    torch.set_num_threads(1)


def step_bench_options(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """``--steps/--warmup/--rounds/--videos/--smoke`` of the step-time benchmarks, parsed, with the threads quietened.
    ``--smoke``: 4 steps, 1 warm-up, 1 round, 4 clips."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--videos", type=int, default=16, help="demo clips in the data set")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    options = parser.parse_args(argv)
    if options.smoke:
        options.steps, options.warmup, options.rounds, options.videos = 4, 1, 1, 4
    quiet_threads()
    return options
