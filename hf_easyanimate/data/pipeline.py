"""From ``DataArguments`` to (dataset, batch sampler, collator), with the up-front checks and the bucket plan.

Default mode checks what is cheap before training (metadata rows, clip lengths given in the metadata,
sizes when they must be probed anyway) and leaves decode failures to read time, where the dataset
replaces them from the same bucket. ``strict`` opens every file first (split across ranks) and fails
before step 1, naming every bad row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass

import numpy as np

from .buckets import FrameGrid, bucket_size, downsample_ratio_choices, frames_on_vae_grid
from .collator import EasyAnimateCollator
from .dataset import EasyAnimateDataset, SampleOptions
from .index import SampleIndex
from .metadata import KIND_VIDEO, MetadataTable, load_metadata
from .plan import PlanConfig
from .probe import inspect_rows, probe_missing_sizes
from .problems import TOO_SHORT, DataProblem, DataProblemLog, DataValidationError
from .sampler import BucketBatchSampler, batches_per_epoch
from .video import FrameSampling, usable_frame_count

logger = logging.getLogger(__name__)


@dataclass
class TrainData:
    """Everything the trainer needs from the data side, plus what was found wrong up front."""

    metadata: MetadataTable
    index: SampleIndex
    dataset: EasyAnimateDataset
    sampler: BucketBatchSampler
    collator: EasyAnimateCollator
    problems: DataProblemLog


def frame_sampling(data_args) -> FrameSampling:
    return FrameSampling(
        n_frames=data_args.video_sample_n_frames,
        stride=data_args.video_sample_stride,
        drop_start=data_args.video_length_drop_start,
        drop_end=data_args.video_length_drop_end,
        fixed_start=bool(getattr(data_args, "fixed_frame_window", False)),
    )


def _distributed() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


@contextlib.contextmanager
def _main_process_first():
    """Rank 0 runs the block first (probing writes the cache), the others then read its results."""
    import torch.distributed as dist

    world, rank = _distributed()
    if world > 1 and rank != 0:
        dist.barrier()
    try:
        yield
    finally:
        if world > 1 and rank == 0:
            dist.barrier()


def _gather(value):
    """Every rank's ``value`` (a list of one in a single process)."""
    import torch.distributed as dist

    world, _ = _distributed()
    if world == 1:
        return [value]
    parts: list = [None] * world
    dist.all_gather_object(parts, value)
    return parts


def _short_clip_problems(meta: MetadataTable, rows: np.ndarray, sampling: FrameSampling) -> list[DataProblem]:
    """Videos whose ``num_frames`` (from the metadata or a probe) cannot give a single frame."""
    found = []
    for row in rows[(meta.kinds[rows] == KIND_VIDEO) & (meta.num_frames[rows] > 0)]:
        length = int(meta.num_frames[row])
        if usable_frame_count(length, sampling) <= 0:
            found.append(DataProblem(int(row), meta.path(int(row)), TOO_SHORT,
                                     f"clip has {length} frame(s), too few for stride {sampling.stride}"))
    return found


def check_files(meta: MetadataTable, rows: np.ndarray, sampling: FrameSampling, workers: int) -> list[DataProblem]:
    """Open every file of ``rows`` (each rank a share), gather the problems and sizes on every rank."""
    world, rank = _distributed()
    mine = rows[rank::world]
    problems = inspect_rows(meta, mine, sampling, workers)
    found: list[DataProblem] = []
    for part_rows, part_problems, sizes in _gather(
        (mine, problems, np.stack([meta.heights[mine], meta.widths[mine], meta.num_frames[mine]], axis=1))
    ):
        meta.heights[part_rows], meta.widths[part_rows], meta.num_frames[part_rows] = sizes.T
        found.extend(DataProblem(*problem) for problem in part_problems)
    return sorted(found)


def prepare_index(
    data_args,
    strict: bool | None = None,
    workers: int | None = None,
    evaluation: bool = False,
) -> tuple[MetadataTable, SampleIndex, list[DataProblem]]:
    """Load the metadata (``--eval_data_meta`` with ``evaluation``), run the up-front checks, index the usable
    rows. Returns the problems found."""
    strict = data_args.strict_data if strict is None else strict
    workers = workers or data_args.data_check_workers
    if evaluation:
        source, limit, repeat = data_args.eval_data_meta, data_args.max_eval_samples, 1
    else:
        source, limit, repeat = data_args.train_data_meta, data_args.max_train_samples, data_args.video_repeat
    meta = load_metadata(source, data_args.train_data_dir, limit, data_args.data_cache_dir)
    sampling = frame_sampling(data_args)
    problems = meta.problems()
    usable = meta.usable.copy()
    rows = np.flatnonzero(usable)
    if strict:
        problems += check_files(meta, rows, sampling, workers)
    else:
        needs_size = rows[(meta.heights[rows] <= 0) | (meta.widths[rows] <= 0)] if data_args.enable_bucket else rows[:0]
        if len(needs_size):
            with _main_process_first():
                problems += probe_missing_sizes(meta, needs_size, workers, data_args.data_cache_dir)
        problems += _short_clip_problems(meta, rows, sampling)
    problems = sorted(set(problems))
    if strict and problems:
        raise DataValidationError(problems, source=str(source))
    for problem in problems:
        usable[problem.row] = False
    if problems:
        logger.warning("data: %d metadata row(s) left out of training:\n%s", len(problems),
                       "\n".join(f"  {p.line()}" for p in problems[:20])
                       + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""))
    note = outside_data_dir_note(meta)
    if note:
        logger.warning("data: %s", note)
    larger_side = max(data_args.image_sample_size, data_args.video_sample_size)
    index = SampleIndex.build(meta, usable, repeat, data_args.enable_bucket, video_larger_side=larger_side)
    return meta, index, problems


def outside_data_dir_note(meta: MetadataTable, rows: np.ndarray | None = None, limit: int = 5) -> str | None:
    """One line (plus examples) about ``rows`` (default: all rows) whose ``file_path`` leaves
    ``--train_data_dir`` via ``..``."""
    rows = meta.rows_outside_data_dir() if rows is None else rows
    if not len(rows):
        return None
    examples = "\n".join(f"  row {int(row)}: {meta.raw_path(int(row))}" for row in rows[:limit])
    more = f"\n  ... and {len(rows) - limit} more" if len(rows) > limit else ""
    return (f"{len(rows)} file_path(s) point outside --train_data_dir {meta.data_dir} through '..'; they are "
            f"used as given:\n{examples}{more}")


def build_train_data(
    data_args,
    batch_size: int,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    frame_grid: FrameGrid | int = FrameGrid(),
) -> TrainData:
    """The dataset, the rank's batch sampler and the collator for ``data_args``; fails early on bad data
    when ``data_args.strict_data`` is set."""
    meta, index, problems = prepare_index(data_args)
    config = PlanConfig.from_data_args(data_args, frame_grid)
    options = SampleOptions(
        frames=frame_sampling(data_args),
        text_drop_ratio=data_args.text_drop_ratio,
        random_flip=data_args.random_flip,
    )
    dataset = EasyAnimateDataset(meta, index, options, seed=seed, strict=data_args.strict_data)
    dataset.problems.extend(problems)
    sampler = BucketBatchSampler(index, batch_size, config, seed=seed, num_replicas=num_replicas, rank=rank,
                                 remainder=getattr(data_args, "bucket_remainder", "drop"))
    return TrainData(meta, index, dataset, sampler, EasyAnimateCollator(config), dataset.problems)


def build_eval_set(data_args, batch_size: int, seed: int = 0, frame_grid: FrameGrid | int = FrameGrid()) -> TrainData:
    """The held-out set of ``--eval_data_meta``: every clip once, no caption drop, no random size or crop
    choices (the eval loss should measure the weights, not the draw); accelerate shards its batches."""
    meta, index, problems = prepare_index(data_args, evaluation=True)
    config = dataclasses.replace(
        PlanConfig.from_data_args(data_args, frame_grid),
        random_hw_adapt=False, random_ratio_crop=False, random_frame_crop=False,
        training_with_video_token_length=False, keep_all_node_same_token_length=False,
    )
    options = SampleOptions(frames=frame_sampling(data_args), text_drop_ratio=0.0, random_flip=False)
    dataset = EasyAnimateDataset(meta, index, options, seed=seed, strict=data_args.strict_data)
    dataset.problems.extend(problems)
    sampler = BucketBatchSampler(index, batch_size, config, seed=seed, drop_last=False)
    return TrainData(meta, index, dataset, sampler, EasyAnimateCollator(config), dataset.problems)


def _plan_settings(config: PlanConfig, batch_size: int, num_processes: int) -> dict:
    grid = config.frame_grid
    return {
        "image_sample_size": config.image_sample_size,
        "video_sample_size": config.video_sample_size,
        "token_sample_size": config.token_sample_size,
        "video_sample_n_frames": config.video_sample_n_frames,
        "temporal_compression": grid.step,
        "frame_grid": str(grid),
        "enable_bucket": config.enable_bucket,
        "random_hw_adapt": config.random_hw_adapt,
        "training_with_video_token_length": config.training_with_video_token_length,
        "batch_size": batch_size,
        "num_processes": num_processes,
    }


def _random_sides(config: PlanConfig) -> dict:
    """With --random_hw_adapt: the sides a batch may be drawn at, with their probabilities."""
    if not (config.enable_bucket and config.random_hw_adapt):
        return {}
    image_ratios, image_odds = downsample_ratio_choices(
        config.image_sample_size, [config.image_sample_size / config.video_sample_size]
    )
    sides = {"image_sides": [{"side": round(config.image_sample_size / r, 2), "probability": p}
                             for r, p in zip(image_ratios, image_odds)]}
    if not config.chooses_token_size:
        video_ratios, video_odds = downsample_ratio_choices(config.video_sample_size)
        sides["video_sides"] = [{"side": round(config.video_sample_size / r, 2), "probability": p}
                                for r, p in zip(video_ratios, video_odds)]
    return sides


def _bucket_entry(index: SampleIndex, bucket: int, kind: str, ratio: str, count: int, config: PlanConfig,
                  batch_size: int, remainder: str) -> dict:
    """One bucket of the plan: its size, frames, samples and batches (and, with token-length training, its sizes)."""
    base = config.image_sample_size if kind == "image" else config.video_sample_size
    height, width = bucket_size(ratio, base) if config.enable_bucket else (base, base)
    entry = {
        "type": kind,
        "ratio": ratio,
        "height": height,
        "width": width,
        "frames": 1 if kind == "image" else frames_on_vae_grid(config.video_sample_n_frames, config.frame_grid),
        "samples": int(count),
        "batches_per_epoch": batches_per_epoch([count], batch_size, remainder),
    }
    lengths = index.num_frames[index.members(bucket)]
    if kind == "video" and (lengths > 0).any():
        entry["clips_with_known_length"] = int((lengths > 0).sum())
        entry["shortest_clip_frames"] = int(lengths[lengths > 0].min())
    if kind == "video" and config.chooses_token_size:
        entry["sizes"] = []
        for side, frames in config.frames_per_resolution().items():
            side_h, side_w = bucket_size(ratio, config.video_sample_size, config.video_sample_size / side)
            entry["sizes"].append({"side": side, "height": side_h, "width": side_w, "frames": frames})
    return entry


def bucket_plan(
    meta: MetadataTable | None,
    index: SampleIndex | None,
    config: PlanConfig,
    batch_size: int,
    num_processes: int = 1,
    problems: list[DataProblem] | None = None,
    remainder: str = "drop",
) -> dict:
    """What a run would train on: per bucket its size(s), frames and sample count (``hf-easyanimate buckets``)."""
    report: dict = {
        "metadata": meta.source if meta is not None else None,
        "settings": _plan_settings(config, batch_size, num_processes),
        "frames_per_resolution": (
            {str(side): frames for side, frames in config.frames_per_resolution().items()}
            if config.training_with_video_token_length else None
        ),
        **_random_sides(config),
    }
    if index is None:
        return report
    counts = index.bucket_counts()
    buckets = [_bucket_entry(index, bucket, kind, ratio, count, config, batch_size, remainder)
               for bucket, ((kind, ratio), count) in enumerate(zip(index.bucket_keys, counts))]
    summary = plan_summary(counts, batch_size, num_processes, remainder)
    report.update({
        "rows": len(meta) if meta is not None else None,
        "rows_left_out": len(problems or ()),
        "samples": len(index),
        "buckets": buckets,
        "bucket_remainder": remainder,
        "batches_per_epoch": summary.batches,
        "steps_per_epoch_per_process": summary.steps_per_process,
        "samples_dropped_per_epoch": summary.dropped,
        "samples_never_trained": summary.never_trained,
    })
    return report


@dataclass(frozen=True)
class PlanSummary:
    """The one-line bucket plan a run prints at start, and what it never trains."""

    samples: int
    buckets: int
    batches: int
    steps_per_process: int
    dropped: int  # samples left in incomplete buckets each epoch ("drop"), 0 with "fill"
    never_trained: int  # samples in buckets smaller than a batch: with "drop", no epoch ever trains them
    small_buckets: int
    batch_size: int
    num_processes: int
    remainder: str

    def line(self) -> str:
        return (f"data: {self.samples} samples in {self.buckets} bucket(s): {self.steps_per_process} batch(es) of "
                f"{self.batch_size} per epoch per process ({self.num_processes} process(es), --bucket_remainder "
                f"{self.remainder}); {self.dropped} sample(s) left in incomplete buckets each epoch")

    def warning(self) -> str | None:
        if not self.never_trained:
            return None
        return (f"data: {self.never_trained} sample(s) are never trained: they sit in {self.small_buckets} bucket(s) "
                f"holding fewer samples than the batch size {self.batch_size}, which never fill a batch. Pass "
                "--bucket_remainder fill (tops incomplete buckets up with repeats from the same bucket), lower "
                "--train_batch_size, or add similar clips (`hf-easyanimate buckets` lists the buckets).")


def plan_summary(counts, batch_size: int, num_processes: int = 1, remainder: str = "drop") -> PlanSummary:
    """Samples, buckets, batches per epoch per process and what is left out, from the bucket sizes."""
    counts = np.asarray(counts, dtype=np.int64)
    batches = batches_per_epoch(counts, batch_size, remainder)
    batches -= batches % num_processes
    small = counts < batch_size
    return PlanSummary(
        samples=int(counts.sum()), buckets=len(counts), batches=batches, steps_per_process=batches // num_processes,
        dropped=max(0, int(counts.sum()) - batches * batch_size),
        never_trained=int(counts[small].sum()) if remainder == "drop" else 0,
        small_buckets=int(small.sum()) if remainder == "drop" else 0,
        batch_size=batch_size, num_processes=num_processes, remainder=remainder,
    )


def format_bucket_plan(report: dict) -> str:
    """The bucket plan as a human-readable table."""
    lines = []
    settings = report["settings"]
    lines.append(
        f"metadata: {report['metadata'] or '(none)'}; batch size {settings['batch_size']} x "
        f"{settings['num_processes']} process(es); frame counts on the VAE's {settings['frame_grid']} grid"
    )
    if report.get("frames_per_resolution"):
        table = report["frames_per_resolution"]
        lines.append("frames per resolution (--training_with_video_token_length, token budget "
                     f"{settings['video_sample_n_frames']} x {settings['token_sample_size']}^2):")
        lines.append("  side    " + "  ".join(f"{side:>5}" for side in table))
        lines.append("  frames  " + "  ".join(f"{frames:>5}" for frames in table.values()))
    for key, label in (("image_sides", "image sides (--random_hw_adapt)"), ("video_sides", "video sides")):
        if report.get(key):
            lines.append(f"{label}: " + ", ".join(f"{e['side']:g} (p={e['probability']:.4g})" for e in report[key]))
    if report.get("buckets") is None:
        return "\n".join(lines)
    lines.append(
        f"{report['samples']} samples from {report['rows']} rows ({report['rows_left_out']} left out), "
        f"{len(report['buckets'])} buckets, {report['batches_per_epoch']} batches per epoch "
        f"({report['steps_per_epoch_per_process']} steps per process), {report['samples_dropped_per_epoch']} "
        f"samples in incomplete buckets dropped each epoch (--bucket_remainder {report['bucket_remainder']})"
    )
    if report.get("samples_never_trained"):
        lines.append(f"  {report['samples_never_trained']} sample(s) in buckets smaller than the batch are never "
                     "trained; --bucket_remainder fill trains them")
    lines.append(f"  {'type':<6} {'ratio':>5} {'height':>6} {'width':>6} {'frames':>6} {'samples':>8} {'batches':>8}")
    for entry in report["buckets"]:
        lines.append(
            f"  {entry['type']:<6} {entry['ratio']:>5} {entry['height']:>6} {entry['width']:>6} {entry['frames']:>6} "
            f"{entry['samples']:>8} {entry['batches_per_epoch']:>8}"
        )
        for size in entry.get("sizes", ()):
            lines.append(f"  {'':<6} {'':>5} {size['height']:>6} {size['width']:>6} {size['frames']:>6}"
                         f"   (side {size['side']})")
    return "\n".join(lines)


def default_check_workers() -> int:
    return min(32, (os.cpu_count() or 1) * 4)
