"""Batch of decoded samples -> one pixel tensor of a single size and frame count, plus captions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .buckets import bucket_size, closest_ratio, frames_on_vae_grid


def resize_and_center_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (F, 3, height, width) float in [-1, 1], aspect ratio kept, centre-cropped."""
    video = frames.permute(0, 3, 1, 2).float()
    src_h, src_w = video.shape[-2:]
    scale = max(height / src_h, width / src_w)
    new_h, new_w = max(height, round(src_h * scale)), max(width, round(src_w * scale))
    if (new_h, new_w) != (src_h, src_w):
        video = F.interpolate(video, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    video = video[:, :, top : top + height, left : left + width]
    return (video / 127.5 - 1.0).clamp(-1.0, 1.0)


@dataclass
class EasyAnimateCollator:
    """Sizes a batch (bucket or square), aligns frame counts to the VAE grid, normalises pixels."""

    image_sample_size: int = 512
    video_sample_size: int = 512
    enable_bucket: bool = False
    temporal_compression: int = 4
    # train_mode inpaint: (frames, height, width) -> (F, 1, H, W) mask, 1 = generate (see data/masks.py).
    mask_generator: Callable[[int, int, int], torch.Tensor] | None = None

    def target_size(self, sample: dict) -> tuple[int, int]:
        size = self.video_sample_size if sample["type"] == "video" else self.image_sample_size
        if not self.enable_bucket:
            return size, size
        height, width = sample["frames"].shape[1:3]
        return bucket_size(closest_ratio(height, width), size)

    def __call__(self, samples: list[dict]) -> dict:
        height, width = self.target_size(samples[0])
        num_frames = frames_on_vae_grid(min(s["frames"].shape[0] for s in samples), self.temporal_compression)
        pixels = torch.stack(
            [resize_and_center_crop(s["frames"][:num_frames], height, width) for s in samples]
        )
        batch = {
            "pixel_values": pixels,  # (B, F, 3, H, W)
            "text": [s["text"] for s in samples],
            "data_type": samples[0]["type"],
        }
        return self.add_inpaint_masks(batch)

    def add_inpaint_masks(self, batch: dict) -> dict:
        """Add ``mask`` (B, F, 1, H, W), one random mask per sample, when inpaint training is on."""
        if self.mask_generator is not None:
            frames, _, height, width = batch["pixel_values"].shape[1:]
            masks = [self.mask_generator(frames, height, width) for _ in range(len(batch["pixel_values"]))]
            batch["mask"] = torch.stack(masks)
        return batch
