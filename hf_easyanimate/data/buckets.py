"""Aspect-ratio buckets, per-batch sizes and frame counts (SPEC.md §3).

Pure functions of numbers, so tests can state the original's worked examples. The float expressions keep
the original's operation order (``x / 512 * size / ratio``, then ``int(v / 16) * 16``) because a different
order can land on the other side of a multiple of 16.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# h/w ratio -> (height, width) at the 512 scale; 40 entries from 0.25 to 4.0, in ascending order (the order
# breaks ties: the first, smaller key wins). Checked against EasyAnimate's easyanimate/data/bucket_sampler.py.
ASPECT_RATIO_512: dict[str, tuple[float, float]] = {
    "0.25": (256.0, 1024.0), "0.26": (256.0, 992.0), "0.27": (256.0, 960.0), "0.28": (256.0, 928.0),
    "0.32": (288.0, 896.0), "0.33": (288.0, 864.0), "0.35": (288.0, 832.0), "0.4": (320.0, 800.0),
    "0.42": (320.0, 768.0), "0.48": (352.0, 736.0), "0.5": (352.0, 704.0), "0.52": (352.0, 672.0),
    "0.57": (384.0, 672.0), "0.6": (384.0, 640.0), "0.68": (416.0, 608.0), "0.72": (416.0, 576.0),
    "0.78": (448.0, 576.0), "0.82": (448.0, 544.0), "0.88": (480.0, 544.0), "0.94": (480.0, 512.0),
    "1.0": (512.0, 512.0), "1.07": (512.0, 480.0), "1.13": (544.0, 480.0), "1.21": (544.0, 448.0),
    "1.29": (576.0, 448.0), "1.38": (576.0, 416.0), "1.46": (608.0, 416.0), "1.67": (640.0, 384.0),
    "1.75": (672.0, 384.0), "2.0": (704.0, 352.0), "2.09": (736.0, 352.0), "2.4": (768.0, 320.0),
    "2.5": (800.0, 320.0), "2.89": (832.0, 288.0), "3.0": (864.0, 288.0), "3.11": (896.0, 288.0),
    "3.62": (928.0, 256.0), "3.75": (960.0, 256.0), "3.88": (992.0, 256.0), "4.0": (1024.0, 256.0),
}
# --random_ratio_crop draws one of these per batch, with weights 1,2,4,4,4,4,8,8,8,4,4,4,4,2,1 (normalised: /62).
RANDOM_CROP_KEYS: tuple[str, ...] = (
    "0.42", "0.5", "0.57", "0.68", "0.78", "0.88", "0.94", "1.0", "1.07", "1.13", "1.29", "1.46", "1.75", "2.0", "2.4",
)
ASPECT_RATIO_RANDOM_CROP_512: dict[str, tuple[float, float]] = {key: ASPECT_RATIO_512[key] for key in RANDOM_CROP_KEYS}
RANDOM_CROP_WEIGHTS: tuple[int, ...] = (1, 2, 4, 4, 4, 4, 8, 8, 8, 4, 4, 4, 4, 2, 1)
ASPECT_RATIO_RANDOM_CROP_PROB: tuple[float, ...] = tuple(w / sum(RANDOM_CROP_WEIGHTS) for w in RANDOM_CROP_WEIGHTS)

RATIO_KEYS: tuple[str, ...] = tuple(ASPECT_RATIO_512)
SIZE_MULTIPLE = 16
TOKEN_SIZE_STEP = 128  # candidate sides of --training_with_video_token_length are 128 apart
SIZE_CHOICE_SLACK = 1.25  # a batch may be trained up to 1.25x its smallest clip's mean side, never more
_RATIO_VALUES = np.array([float(key) for key in RATIO_KEYS])


def closest_ratio(height: float, width: float, ratios: dict[str, tuple[float, float]] = ASPECT_RATIO_512) -> str:
    """Key of the table entry whose h/w is nearest to ``height / width`` (first one wins a tie)."""
    aspect = float(height) / float(width)
    return min(ratios, key=lambda key: abs(float(key) - aspect))


def closest_ratio_indices(heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Vectorised :func:`closest_ratio` over ``ASPECT_RATIO_512``: index into :data:`RATIO_KEYS` per row.

    The nearest key is one of the two keys around h/w (the table is sorted); comparing those two distances
    with the lower key winning ties reproduces the scalar scan exactly, 4:3 -> '0.72' included.
    """
    aspect = np.asarray(heights, dtype=np.float64) / np.asarray(widths, dtype=np.float64)
    upper = np.clip(np.searchsorted(_RATIO_VALUES, aspect), 1, len(_RATIO_VALUES) - 1)
    lower = upper - 1
    pick_lower = np.abs(_RATIO_VALUES[lower] - aspect) <= np.abs(_RATIO_VALUES[upper] - aspect)
    return np.where(pick_lower, lower, upper).astype(np.int16)


def bucket_size(
    ratio_key: str,
    sample_size: float,
    downsample_ratio: float = 1.0,
    ratios: dict[str, tuple[float, float]] = ASPECT_RATIO_512,
) -> tuple[int, int]:
    """(height, width) of a bucket at ``sample_size / downsample_ratio``, each side floored to 16 pixels."""
    base_h, base_w = ratios[ratio_key]
    return tuple(
        int(side / 512 * sample_size / downsample_ratio / SIZE_MULTIPLE) * SIZE_MULTIPLE for side in (base_h, base_w)
    )


def downsample_ratio_choices(sample_size: int, image_ratio: Sequence[float] = ()) -> tuple[list[float], list[float]]:
    """``--random_hw_adapt`` candidates (the side is divided by the ratio) and their odds.

    Larger sample sizes get more ways down; the first candidate (1: full size) has 0.75, the rest share
    0.25. Images also get ``image_ratio`` (image_sample_size / video_sample_size, i.e. down to the video side).
    """
    if sample_size >= 1536:
        ratios = [1, 1.25, 1.5, 2, 2.5, 3, *image_ratio]
    elif sample_size >= 1024:
        ratios = [1, 1.25, 1.5, 2, *image_ratio]
    elif sample_size >= 768:
        ratios = [1, 1.25, 1.5, *image_ratio]
    elif sample_size >= 512:
        ratios = [1, *image_ratio]
    else:
        ratios = [1]
    if len(ratios) == 1:
        return [float(ratios[0])], [1.0]
    rest = 0.25 / (len(ratios) - 1)
    return [float(r) for r in ratios], [0.75] + [rest] * (len(ratios) - 1)


def token_sample_sizes(video_sample_size: int, image_sample_size: int) -> list[int]:
    """Sides ``--training_with_video_token_length`` chooses from: video size to image size in steps of 128."""
    if image_sample_size <= video_sample_size:
        return [image_sample_size]
    sizes = list(range(video_sample_size, image_sample_size + 1, TOKEN_SIZE_STEP))
    if sizes[-1] != image_sample_size:
        sizes.append(image_sample_size)
    return sizes


@dataclass(frozen=True)
class FrameGrid:
    """The frame counts a VAE encodes, and the latent frames they become.

    V5's MagVIT is causal in time: ``step * n + 1`` frames (``step`` = its temporal compression, 4) give n + 1
    latent frames. The V2-V4 MagVIT encodes independent chunks of ``step`` frames (its ``mini_batch_encoder``:
    9 for V2, 8 for V3/V4): ``step * n`` frames give ``n * latents_per_step`` latent frames, a lone frame (an
    image) gives one. The original trainer buckets frame counts on the same two grids.
    """

    step: int = 4
    plus_one: bool = True
    latents_per_step: int = 1

    def __post_init__(self) -> None:
        if self.step < 1 or self.latents_per_step < 1:
            raise ValueError(f"invalid frame grid {self}")

    def __str__(self) -> str:
        return f"{self.step}n + 1" if self.plus_one else f"{self.step}n"

    def floor(self, value: float) -> int:
        """The grid's largest count at or below ``value`` (a float: the token budgets divide), never below 1."""
        k = self.step
        if self.plus_one:
            return int(max((value - 1) // k * k + 1, 1))
        return int(max(value // k * k, 1))

    def budget_frames(self, value: float) -> int:
        """Frames of the token-length table for a budget of ``value`` frames: ``value // k * k + 1`` on V5's grid
        (the original's formula, which can round *up*: 12.25 -> 13), ``value // k * k`` (at least 1) on V2-V4's."""
        k = self.step
        if self.plus_one:
            return int(value // k * k + 1)
        return int(max(value // k * k, 1))

    def lengths_up_to(self, n_frames: int) -> list[int]:
        """Every count on the grid from one step up to ``n_frames`` (``--random_frame_crop``'s choices)."""
        k, first = self.step, self.step + (1 if self.plus_one else 0)
        return list(range(first, n_frames + k, k))

    def latent_frames(self, frames: int) -> int:
        """Latent frames of ``frames`` pixel frames on this grid."""
        if frames <= 1:
            return 1
        if self.plus_one:
            return (frames - 1) // self.step * self.latents_per_step + 1
        return frames // self.step * self.latents_per_step


def as_frame_grid(grid: FrameGrid | int) -> FrameGrid:
    """A :class:`FrameGrid`; a bare int is V5's ``k * n + 1`` grid with temporal compression k."""
    return grid if isinstance(grid, FrameGrid) else FrameGrid(int(grid))


def frames_for_token_budget(size: int, n_frames: int, token_sample_size: int, grid: FrameGrid | int) -> int:
    """Frames a ``size x size`` clip may have within the budget ``n_frames x token_sample_size^2``, on the grid.

    ``floor(min(T / size^2, n_frames) / k) * k + 1``: for 49 frames, token 512, k 4 this gives 49 at 256-512,
    29 at 640, 21 at 768, 17 at 896 and 13 at 1024 (SPEC.md §3 follows the code: 13, not 9). On the V2-V4
    grid (``k * n``) the ``+ 1`` is absent, and a budget below one step gives 1 frame, as the original's
    "a batch of 0 frames becomes 1".
    """
    budget = n_frames * token_sample_size * token_sample_size
    return as_frame_grid(grid).budget_frames(min(budget / size / size, n_frames))


def frames_per_resolution(
    video_sample_size: int, image_sample_size: int, n_frames: int, token_sample_size: int, grid: FrameGrid | int
) -> dict[int, int]:
    """``{side: frames}`` for every candidate side of ``--training_with_video_token_length``."""
    return {
        size: frames_for_token_budget(size, n_frames, token_sample_size, grid)
        for size in token_sample_sizes(video_sample_size, image_sample_size)
    }


def token_size_candidates(sizes: Sequence[int], smallest_mean_side: float) -> list[int]:
    """Sides a batch may be trained at: below 1.25x its smallest clip's mean(h, w) (all sides if none is)."""
    allowed = [size for size in sizes if size < smallest_mean_side * SIZE_CHOICE_SLACK]
    return allowed or list(sizes)


def frames_on_vae_grid(num_frames: int, grid: FrameGrid | int) -> int:
    """Largest count on the VAE's grid ``<= num_frames`` (``k * n + 1`` for V5, ``k * n`` for V2-V4); at least 1."""
    if num_frames <= 1:
        return 1
    return as_frame_grid(grid).floor(num_frames)


def frame_crop_choices(n_frames: int, grid: FrameGrid | int) -> tuple[list[int], list[float]]:
    """``--random_frame_crop`` lengths (5, 9, ..., on the grid up to n_frames) and odds (0.9 on the longest)."""
    lengths = as_frame_grid(grid).lengths_up_to(n_frames)
    if len(lengths) <= 1:
        return lengths or [1], [1.0]
    rest = 0.1 / (len(lengths) - 1)
    return lengths, [rest] * (len(lengths) - 1) + [0.9]


def shared_token_lengths(token_sample_size: int, n_frames: int) -> list[int]:
    """``--keep_all_node_same_token_length`` budgets: side^2 x n_frames for sides 256, 384, ... token size."""
    if token_sample_size > 256:
        sides = list(range(256, token_sample_size + 1, TOKEN_SIZE_STEP))
        if sides[-1] != token_sample_size:
            sides.append(token_sample_size)
    else:
        sides = [256]
    return [side * side * n_frames for side in sides]


def frames_for_token_length(token_length: int, height: int, width: int, n_frames: int, grid: FrameGrid | int) -> int:
    """Frames of a ``height x width`` batch holding ``token_length`` pixels, on the grid, at least 1."""
    return as_frame_grid(grid).floor(min(token_length / (height * width), n_frames))


def batch_tile_factor(n_frames: int, token_sample_size: int, frames: int, height: int, width: int) -> int:
    """How many times a small batch is repeated under ``--training_with_video_token_length`` (1, 2 or 4).

    A batch holding at most 1/16 of the token budget is tiled x4, at most 1/4 x2, so small clips and
    images do not waste the step.
    """
    budget = n_frames * token_sample_size * token_sample_size
    pixels = frames * height * width
    if budget // 16 >= pixels:
        return 4
    if budget // 4 >= pixels:
        return 2
    return 1


def downscaled_sizes(heights, widths, larger_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Sizes of clips after the original dataset's decode-time downscale (``resize_frame``), vectorised.

    A clip whose short side is at least ``larger_side`` (max of image and video sample size) is shrunk to that
    short side, the long side truncated: ``int(larger_side * long / short)``. The original's collate keys its
    bucket on *this* shape, so a 1080 x 1440 clip at 512 becomes 512 x 682 (h/w 0.7507 -> key 0.78, not 0.72).
    """
    heights, widths = np.asarray(heights, dtype=np.int64), np.asarray(widths, dtype=np.int64)
    landscape = heights < widths
    short = np.where(landscape, heights, widths)
    long_side = (larger_side * np.where(landscape, widths, heights).astype(np.float64) / short).astype(np.int64)
    keep = larger_side > short
    new_h = np.where(keep, heights, np.where(landscape, larger_side, long_side))
    new_w = np.where(keep, widths, np.where(landscape, long_side, larger_side))
    return new_h, new_w


def downscaled_size(height: int, width: int, larger_side: int) -> tuple[int, int]:
    """:func:`downscaled_sizes` for one clip."""
    new_h, new_w = downscaled_sizes([height], [width], larger_side)
    return int(new_h[0]), int(new_w[0])


def cover_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """Resize keeping the aspect ratio so ``target`` fits by its binding side (then it is centre-cropped)."""
    if target_h / height > target_w / width:
        new_h, new_w = target_h, int(width * target_h / height)
    else:
        new_h, new_w = int(height * target_w / width), target_w
    return max(new_h, target_h), max(new_w, target_w)  # float rounding must never leave the crop short
