"""Per-batch choices: the size, frame budget and crops one batch is trained at (SPEC.md §3).

The original draws these inside ``collate_fn`` from a per-process RNG, so they depend on worker count and
cannot be replayed after a resume. Here the batch sampler draws them with an RNG seeded by
(seed, epoch, batch) and hands a :class:`BatchPlan` to the dataset and collator with the indices: every
sample of a batch agrees, any number of workers gives the same batches, and a resumed run replays them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .buckets import (
    ASPECT_RATIO_512,
    ASPECT_RATIO_RANDOM_CROP_PROB,
    RANDOM_CROP_KEYS,
    FrameGrid,
    as_frame_grid,
    batch_tile_factor,
    bucket_size,
    downsample_ratio_choices,
    downscaled_size,
    frame_crop_choices,
    frames_for_token_length,
    frames_on_vae_grid,
    frames_per_resolution,
    shared_token_lengths,
    token_size_candidates,
)
from .index import SQUARE


@dataclass(frozen=True)
class PlanConfig:
    """The data flags that decide per-batch sizes and frame counts."""

    image_sample_size: int = 512
    video_sample_size: int = 512
    token_sample_size: int = 512
    video_sample_n_frames: int = 17
    frame_grid: FrameGrid = FrameGrid()  # the VAE's frame counts (4n + 1 for V5, 8n / 9n for V2-V4)
    enable_bucket: bool = False
    random_hw_adapt: bool = False
    training_with_video_token_length: bool = False
    random_ratio_crop: bool = False
    random_frame_crop: bool = False
    keep_all_node_same_token_length: bool = False

    @classmethod
    def from_data_args(cls, data_args, frame_grid: FrameGrid | int = FrameGrid()) -> PlanConfig:
        names = [name for name in cls.__dataclass_fields__ if name != "frame_grid"]
        return cls(frame_grid=as_frame_grid(frame_grid), **{name: getattr(data_args, name) for name in names})

    @property
    def larger_side(self) -> int:
        return max(self.image_sample_size, self.video_sample_size)

    @property
    def chooses_token_size(self) -> bool:
        """Videos pick their side (and frames) from the token budget: needs buckets and random_hw_adapt."""
        return self.enable_bucket and self.random_hw_adapt and self.training_with_video_token_length

    def frames_per_resolution(self) -> dict[int, int]:
        return frames_per_resolution(
            self.video_sample_size, self.image_sample_size, self.video_sample_n_frames,
            self.token_sample_size, self.frame_grid,
        )


@dataclass(frozen=True)
class BatchPlan:
    """What one batch is trained at; travels with its indices to the dataset (in the workers) and collator."""

    kind: str  # "video" | "image"
    bucket: int  # bucket id (replacements for broken samples come from it); -1 if none
    height: int
    width: int
    side: float  # the side the bucket table was scaled to (sample size / downsample ratio)
    max_frames: int  # frames the batch may keep before the VAE grid (1 for images)
    frame_crop: int | None = None  # --random_frame_crop length
    token_frames: int | None = None  # --keep_all_node_same_token_length frame cap at this size
    entropy: tuple[int, ...] = ()  # seeds the per-sample draws (start frame, caption drop, flip, replacement)

    @property
    def decode_limit(self) -> int:
        """Frames worth decoding per clip: none past the shortest of the batch's caps."""
        return min(v for v in (self.max_frames, self.frame_crop, self.token_frames) if v is not None)


def plan_batch(
    config: PlanConfig,
    kind: str,
    ratio_key: str,
    member_sizes: np.ndarray,
    rng: np.random.Generator,
    bucket: int = -1,
    entropy: tuple[int, ...] = (),
) -> BatchPlan:
    """Draw the size and frame caps of one batch of ``kind`` in bucket ``ratio_key``.

    ``member_sizes`` is the (B, 2) array of the members' (height, width) in pixels; only the token-length
    size choice looks at it (a batch is never trained above 1.25x its smallest clip's mean side).
    """
    n_frames = config.video_sample_n_frames
    is_image = kind == "image"
    base = config.image_sample_size if is_image else config.video_sample_size
    ratio, max_frames = 1.0, 1 if is_image else n_frames
    if config.enable_bucket and config.random_hw_adapt:
        if is_image:
            choices, odds = downsample_ratio_choices(base, [config.image_sample_size / config.video_sample_size])
            ratio = float(rng.choice(choices, p=odds))
        elif config.training_with_video_token_length:
            table = config.frames_per_resolution()
            downscaled = [downscaled_size(int(h), int(w), config.larger_side) for h, w in member_sizes]
            smallest = min(float(np.mean(size)) for size in downscaled)
            side = int(rng.choice(token_size_candidates(list(table), smallest)))
            max_frames, ratio = table[side], config.video_sample_size / side
        else:
            choices, odds = downsample_ratio_choices(base)
            ratio = float(rng.choice(choices, p=odds))
    if not config.enable_bucket or ratio_key == SQUARE:
        height = width = int(base / ratio)
    elif config.random_ratio_crop:
        crop_key = RANDOM_CROP_KEYS[int(rng.choice(len(RANDOM_CROP_KEYS), p=ASPECT_RATIO_RANDOM_CROP_PROB))]
        height, width = bucket_size(crop_key, base, ratio)
    else:
        height, width = bucket_size(ratio_key, base, ratio)
    frame_crop = token_frames = None
    if not is_image and config.random_frame_crop:
        lengths, odds = frame_crop_choices(n_frames, config.frame_grid)
        frame_crop = int(lengths[int(rng.choice(len(lengths), p=odds))])
    if not is_image and config.keep_all_node_same_token_length:
        budget = int(rng.choice(shared_token_lengths(config.token_sample_size, n_frames)))
        token_frames = frames_for_token_length(budget, height, width, n_frames, config.frame_grid)
    return BatchPlan(
        kind=kind,
        bucket=bucket,
        height=height,
        width=width,
        side=base / ratio,
        max_frames=int(max_frames),
        frame_crop=frame_crop,
        token_frames=token_frames,
        entropy=tuple(int(e) for e in entropy),
    )


@dataclass(frozen=True)
class LargestBatch:
    """The batch of a run with the most tokens (what decides its peak memory), and the token-length table."""

    batch_size: int
    frames: int
    height: int
    width: int
    table: tuple[str, ...] = ()  # with --training_with_video_token_length: one line per side


def largest_batch(config: PlanConfig, batch_size: int) -> LargestBatch:
    """The (batch, frames, height, width) a run can train at once with the most latent tokens: over every bucket
    shape the flags allow (ties go to the square one), images included, token-length tiling counted."""
    grid = config.frame_grid

    def tokens(frames: int, height: int, width: int) -> int:
        return grid.latent_frames(frames) * (height // 16) * (width // 16)

    def sizes(side: int) -> list[tuple[int, int]]:
        if not config.enable_bucket:
            return [(side, side)]
        return [(side, side)] + [bucket_size(key, side) for key in ASPECT_RATIO_512]

    candidates, table = [], []
    if config.chooses_token_size:
        for side, frames in config.frames_per_resolution().items():
            tile = batch_tile_factor(config.video_sample_n_frames, config.token_sample_size, frames, side, side)
            table.append(f"  {side}px: {frames} frames, {tokens(frames, side, side):,} tokens x batch "
                         f"{batch_size * tile}")
            candidates += [(batch_size * tile, frames, h, w) for h, w in sizes(side)]
    else:
        frames = frames_on_vae_grid(config.video_sample_n_frames, grid)
        candidates += [(batch_size, frames, h, w) for h, w in sizes(config.video_sample_size)]
    candidates += [(batch_size, 1, h, w) for h, w in sizes(config.image_sample_size)]
    best = max(candidates, key=lambda c: c[0] * tokens(c[1], c[2], c[3]))
    return LargestBatch(*best, table=tuple(table))
