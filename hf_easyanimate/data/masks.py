"""Inpaint (image-to-video) training masks: EasyAnimate's ``get_random_mask`` kinds, geometry and odds.

A mask is a uint8 tensor (F, 1, H, W) over the pixels of one sample; 1 marks what the model must
generate, 0 what it is shown (the masked video keeps those pixels). Videos draw one of ten kinds,
images (F == 1) one of two, with the original probabilities. All randomness comes from a
``torch.Generator`` (or torch's global RNG, which Trainer seeds per dataloader worker).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

VIDEO_MASK_KINDS: tuple[str, ...] = (
    "box",  # one random box, all frames
    "all",  # everything: pure text-to-video
    "keep_first_frames",  # frames k: masked, k in 1..4 (image-to-video)
    "keep_first_and_last_frames",  # frames k:-k masked, k in 1..4
    "box_in_span",  # one random box, only inside a random frame span around the middle
    "random_pixels",  # each pixel of each frame masked with probability 1/2
    "random_blocks",  # up to F/2 random frames get one small random block each
    "ellipse",  # one random ellipse, all frames
    "circle",  # one random disc, all frames
    "random_frames",  # each whole frame masked with probability 1/2
)
VIDEO_MASK_PROBS: tuple[float, ...] = (0.05, 0.2, 0.2, 0.2, 0.05, 0.05, 0.05, 0.1, 0.05, 0.05)
IMAGE_MASK_KINDS: tuple[str, ...] = ("box", "all")
IMAGE_MASK_PROBS: tuple[float, ...] = (0.2, 0.8)


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [low, high) (high exclusive); ``low`` when the range is empty."""
    if high <= low:
        return low
    return int(torch.randint(low, high, (1,), generator=generator).item())


def _box(height: int, width: int, generator: torch.Generator | None) -> tuple[slice, slice]:
    """A box of side [W/4, 3W/4) x [H/4, 3H/4) centred on a random pixel, clipped to the frame."""
    center_x = _randint(0, width, generator)
    center_y = _randint(0, height, generator)
    size_x = _randint(width // 4, width // 4 * 3, generator)
    size_y = _randint(height // 4, height // 4 * 3, generator)
    rows = slice(max(center_y - size_y // 2, 0), min(center_y + size_y // 2, height))
    cols = slice(max(center_x - size_x // 2, 0), min(center_x + size_x // 2, width))
    return rows, cols


def _ellipse(height: int, width: int, semi_x: int, semi_y: int, generator: torch.Generator | None) -> torch.Tensor:
    """Boolean (H, W): strictly inside the axis-aligned ellipse around a random centre."""
    center_x = _randint(0, width, generator)
    center_y = _randint(0, height, generator)
    ys = torch.arange(height, dtype=torch.float64)[:, None]
    xs = torch.arange(width, dtype=torch.float64)[None, :]
    return ((ys - center_y) ** 2) / max(semi_y, 1) ** 2 + ((xs - center_x) ** 2) / max(semi_x, 1) ** 2 < 1


def make_mask(
    kind: str, num_frames: int, height: int, width: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One mask of ``kind`` (a name from :data:`VIDEO_MASK_KINDS`), shape (F, 1, H, W), uint8 in {0, 1}."""
    mask = torch.zeros((num_frames, 1, height, width), dtype=torch.uint8)
    short_side = min(height, width)
    if kind == "box":
        rows, cols = _box(height, width, generator)
        mask[:, :, rows, cols] = 1
    elif kind == "all":
        mask[:] = 1
    elif kind == "keep_first_frames":
        keep = _randint(1, 5, generator)
        mask[keep:] = 1
    elif kind == "keep_first_and_last_frames":
        keep = _randint(1, 5, generator)
        mask[keep:-keep] = 1
    elif kind == "box_in_span":
        rows, cols = _box(height, width, generator)
        start = _randint(0, num_frames // 2, generator)
        end = _randint(num_frames // 2, num_frames, generator)
        mask[start:end, :, rows, cols] = 1
    elif kind == "random_pixels":
        mask = torch.randint(0, 2, (num_frames, 1, height, width), generator=generator, dtype=torch.uint8)
    elif kind == "random_blocks":
        count = _randint(1, max(num_frames // 2, 1) + 1, generator)
        frames = torch.randperm(num_frames, generator=generator)[:count].tolist()
        for frame in frames:
            block_h = _randint(1, max(height // 4, 1) + 1, generator)
            block_w = _randint(1, max(width // 4, 1) + 1, generator)
            top = _randint(0, height - block_h + 1, generator)
            left = _randint(0, width - block_w + 1, generator)
            mask[frame, 0, top : top + block_h, left : left + block_w] = 1
    elif kind == "ellipse":
        semi_x = _randint(short_side // 8, short_side // 4, generator)
        semi_y = _randint(short_side // 8, short_side // 4, generator)
        mask[:, 0] = _ellipse(height, width, semi_x, semi_y, generator).to(torch.uint8)
    elif kind == "circle":
        radius = _randint(short_side // 8, short_side // 4, generator)
        mask[:, 0] = _ellipse(height, width, radius, radius, generator).to(torch.uint8)
    elif kind == "random_frames":
        masked = torch.rand(num_frames, generator=generator) > 0.5
        mask[masked] = 1
    else:
        raise ValueError(f"unknown mask kind {kind!r}; known kinds: {', '.join(VIDEO_MASK_KINDS)}")
    return mask


def sample_mask_kind(num_frames: int, generator: torch.Generator | None = None) -> str:
    """Draw a kind with the original odds: ten kinds for videos, box/all (0.2/0.8) for images."""
    kinds, probs = (IMAGE_MASK_KINDS, IMAGE_MASK_PROBS) if num_frames == 1 else (VIDEO_MASK_KINDS, VIDEO_MASK_PROBS)
    choice = torch.multinomial(torch.tensor(probs, dtype=torch.float64), 1, generator=generator).item()
    return kinds[int(choice)]


def random_mask(
    num_frames: int, height: int, width: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A mask of a randomly drawn kind (see :func:`sample_mask_kind`), shape (F, 1, H, W)."""
    return make_mask(sample_mask_kind(num_frames, generator), num_frames, height, width, generator)


@dataclass
class InpaintMaskGenerator:
    """Callable used by the collator: one random mask per sample, ``(F, H, W) -> (F, 1, H, W)`` uint8.

    ``kinds`` restricts the video kinds (renormalising their odds), e.g. ``("keep_first_frames",)`` for
    pure image-to-video training; None keeps all ten.
    """

    kinds: tuple[str, ...] | None = None
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        unknown = set(self.kinds or ()) - set(VIDEO_MASK_KINDS)
        if unknown:
            raise ValueError(f"unknown mask kinds {sorted(unknown)}; known kinds: {', '.join(VIDEO_MASK_KINDS)}")

    def __call__(self, num_frames: int, height: int, width: int) -> torch.Tensor:
        if self.kinds is None or num_frames == 1:
            return random_mask(num_frames, height, width, self.generator)
        weights = torch.tensor([VIDEO_MASK_PROBS[VIDEO_MASK_KINDS.index(kind)] for kind in self.kinds])
        kind = self.kinds[int(torch.multinomial(weights.double(), 1, generator=self.generator).item())]
        return make_mask(kind, num_frames, height, width, self.generator)
