"""Decoded samples -> one batch of a single size and frame count (SPEC.md §3), pixels in [-1, 1].

Output: ``{"pixel_values": (B, F, 3, H, W) float32, "text": [B captions], "data_type": "video" | "image",
"sample_index": [B dataset indices], "data_problems": [skipped samples]}``. Other keys may be added
(inpaint masks); every tensor whose first dimension is B is repeated with the batch when
``--training_with_video_token_length`` tiles a small batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .batch import PixelBatch
from .buckets import batch_tile_factor, closest_ratio, cover_size, frames_on_vae_grid
from .index import SQUARE
from .plan import BatchPlan, PlanConfig, plan_batch
from .problems import BATCH_KEY

PER_ROW_LISTS = ("text", "sample_index")


def resize_and_center_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (F, 3, height, width) float in [-1, 1].

    Resized (bilinear, antialiased) keeping the aspect ratio until the target fits by its binding side,
    then centre-cropped with torchvision's rounding; uint8 in, so the resize runs on torch's fast path.
    """
    video = frames.permute(0, 3, 1, 2)  # channels-last memory: what the uint8 resize kernel wants
    src_h, src_w = video.shape[-2:]
    new_h, new_w = cover_size(src_h, src_w, height, width)
    if (new_h, new_w) != (src_h, src_w):
        video = F.interpolate(video, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = int(round((new_h - height) / 2.0)), int(round((new_w - width) / 2.0))
    video = video[:, :, top : top + height, left : left + width]
    # uint8 copy to planar layout first, then in-place float arithmetic: 3x faster than converting strided
    return video.contiguous().to(torch.float32).div_(127.5).sub_(1.0)


def reference_frame_index(length: int) -> int:
    """The original's draw of the CLIP reference frame of a ``length``-frame sample: frame 0 with probability 1/2,
    otherwise one of the others uniformly (the step's torch RNG, keyed per batch)."""
    if length <= 1 or float(torch.rand(())) < 0.5:
        return 0
    return int(torch.randint(1, length, ()))


def reference_frame(frames: torch.Tensor, sampled: int, height: int, width: int) -> torch.Tensor:
    """(H, W, 3) float in 0-255: a reference frame drawn over the ``sampled`` frames, resized and cropped like the
    batch, as the original computes it (``(x * 0.5 + 0.5) * 255`` of the normalised frame).

    A frame past the decoded ones (only when a frame cap stopped decoding early) falls back to the last decoded.
    """
    index = min(reference_frame_index(sampled), len(frames) - 1)
    pixels = resize_and_center_crop(frames[index : index + 1], height, width)[0]
    return (pixels.permute(1, 2, 0) * 0.5 + 0.5) * 255


def tile_batch(batch: dict, factor: int) -> dict:
    """Repeat every per-sample entry ``factor`` times along the batch ([a, b] -> [a, b, a, b])."""
    if factor == 1:
        return batch
    rows = len(batch["text"])
    tiled = type(batch)(batch)  # the batch's class (it says where its tensors come from) survives tiling
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == rows:
            tiled[key] = value.repeat(factor, *([1] * (value.ndim - 1)))
        elif key in PER_ROW_LISTS:
            tiled[key] = list(value) * factor
    return tiled


@dataclass
class EasyAnimateCollator:
    """Sizes a batch from its plan (or, for plain indices, from its first sample), cuts every clip to the
    batch's frame count on the VAE grid, normalises pixels and, with token-length training, tiles small batches.
    """

    config: PlanConfig = field(default_factory=PlanConfig)
    # train_mode inpaint: (frames, height, width) -> (F, 1, H, W) mask, 1 = generate (see data/masks.py).
    mask_generator: Callable[[int, int, int], torch.Tensor] | None = None
    # V3/V4 inpaint: add each sample's CLIP reference frame as ``clip_pixel_values`` (B, H, W, 3), 0-255
    reference_frames: bool = False

    def plan_from_samples(self, samples: list[dict]) -> BatchPlan:
        """Plan for samples that came without one (plain ``dataset[i]`` indexing): sized from the first
        sample, as the original collate does; seeded by the indices so it is still reproducible."""
        height, width = samples[0]["frames"].shape[1:3]
        key = closest_ratio(height, width) if self.config.enable_bucket else SQUARE
        sizes = np.array([s["frames"].shape[1:3] for s in samples])
        rng = np.random.default_rng([int(s.get("index", i)) for i, s in enumerate(samples)])
        return plan_batch(self.config, samples[0]["type"], key, sizes, rng)

    def frames_and_tile(self, plan: BatchPlan, available: list[int]) -> tuple[int, int]:
        """The batch's frame count (shortest clip, caps, VAE grid) and how many times token-length training
        repeats it."""
        frames = frames_on_vae_grid(min(plan.max_frames, *available), self.config.frame_grid)
        tile = 1
        if self.config.training_with_video_token_length:  # decided on the collated length, as the original
            tile = batch_tile_factor(
                self.config.video_sample_n_frames, self.config.token_sample_size, frames, plan.height, plan.width
            )
        for cap in (plan.frame_crop, plan.token_frames):
            if cap is not None:
                frames = min(frames, cap)
        return frames, tile

    def __call__(self, samples: list[dict]) -> PixelBatch:
        plan = samples[0].get("plan") or self.plan_from_samples(samples)
        available = [s.get("available_frames", len(s["frames"])) for s in samples]
        frames, tile = self.frames_and_tile(plan, available)
        pixels = torch.stack([resize_and_center_crop(s["frames"][:frames], plan.height, plan.width) for s in samples])
        batch = PixelBatch({
            "pixel_values": pixels,  # (B, F, 3, H, W)
            "text": [s["text"] for s in samples],
            "data_type": plan.kind,
            "sample_index": [int(s.get("index", -1)) for s in samples],
            BATCH_KEY: [tuple(problem) for s in samples for problem in s.get("problems", ())],  # plain tuples:
            # Trainer's input preparation rebuilds sequences from generators, which namedtuples refuse
        })
        batch = self.add_inpaint_masks(batch, available)
        if self.reference_frames:
            batch["clip_pixel_values"] = torch.stack([
                reference_frame(s["frames"], full, plan.height, plan.width) for s, full in zip(samples, available)
            ])
        return tile_batch(batch, tile)

    def add_inpaint_masks(self, batch: dict, decoded: list[int] | None = None) -> dict:
        """Add ``mask`` (B, F, 1, H, W), one random mask per sample, when inpaint training is on.

        As the original collate: each mask is drawn for the whole clip as sampled (``decoded`` frames: the
        clip before the batch's frame cut, even where fewer frames were actually decoded), then cut to the
        batch's F. A "keep the last k frames" mask of a 49-frame clip trained at 13 frames therefore keeps none.
        """
        if self.mask_generator is not None:
            frames, _, height, width = batch["pixel_values"].shape[1:]
            decoded = decoded or [frames] * len(batch["pixel_values"])
            masks = [self.mask_generator(max(full, frames), height, width)[:frames] for full in decoded]
            batch["mask"] = torch.stack(masks)
        return batch
