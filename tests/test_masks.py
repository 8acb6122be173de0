"""Every inpaint mask kind: shape, dtype and the geometry of EasyAnimate's ``get_random_mask``."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from hf_easyanimate.data import EasyAnimateCollator, PlanConfig
from hf_easyanimate.data.masks import (
    IMAGE_MASK_PROBS,
    VIDEO_MASK_KINDS,
    VIDEO_MASK_PROBS,
    InpaintMaskGenerator,
    make_mask,
    random_mask,
    sample_mask_kind,
)

F, H, W = 13, 48, 64
SEEDS = range(40)


def masks(kind, seeds=SEEDS, frames=F, height=H, width=W):
    return [make_mask(kind, frames, height, width, torch.Generator().manual_seed(seed)) for seed in seeds]


def bounding_box(plane: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero(plane.any(dim=1)).flatten()
    cols = torch.nonzero(plane.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def is_filled_rectangle(plane: torch.Tensor) -> bool:
    top, bottom, left, right = bounding_box(plane)
    return int(plane.sum()) == (bottom - top) * (right - left)


@pytest.mark.parametrize("kind", VIDEO_MASK_KINDS)
def test_every_kind_is_a_binary_uint8_mask_of_the_clip_shape(kind):
    mask = make_mask(kind, F, H, W, torch.Generator().manual_seed(0))
    assert mask.shape == (F, 1, H, W) and mask.dtype == torch.uint8
    assert set(mask.unique().tolist()) <= {0, 1}


def test_box_is_one_rectangle_in_every_frame_within_the_size_range():
    sizes = []
    for mask in masks("box"):
        assert torch.equal(mask, mask[:1].expand_as(mask))  # same box in all frames
        plane = mask[0, 0].bool()
        assert is_filled_rectangle(plane)
        top, bottom, left, right = bounding_box(plane)
        assert bottom - top <= (H // 4 * 3) // 2 * 2 and right - left <= (W // 4 * 3) // 2 * 2
        sizes.append((bottom - top, right - left))
    # Unclipped boxes are at least a quarter of the frame wide/high (H/4 rounded down to even).
    assert max(h for h, _ in sizes) >= H // 2 and max(w for _, w in sizes) >= W // 2


def test_all_masks_everything():
    assert all(bool(mask.all()) for mask in masks("all", range(3)))


def test_keep_first_frames_shows_one_to_four_leading_frames():
    kept = set()
    for mask in masks("keep_first_frames"):
        per_frame = mask.flatten(1).float().mean(dim=1)
        k = int((per_frame == 0).sum())
        assert per_frame[:k].eq(0).all() and per_frame[k:].eq(1).all()
        kept.add(k)
    assert kept == {1, 2, 3, 4}


def test_keep_first_and_last_frames_shows_k_frames_at_both_ends():
    kept = set()
    for mask in masks("keep_first_and_last_frames"):
        per_frame = mask.flatten(1).float().mean(dim=1)
        k = int(per_frame[: F // 2].eq(0).sum())
        assert per_frame[:k].eq(0).all() and per_frame[F - k :].eq(0).all() and per_frame[k : F - k].eq(1).all()
        kept.add(k)
    assert kept == {1, 2, 3, 4}


def test_box_in_span_is_one_box_inside_a_frame_span_around_the_middle():
    for mask in masks("box_in_span"):
        active = torch.nonzero(mask.flatten(1).any(dim=1)).flatten().tolist()
        if not active:  # empty span (start == end) is possible, as in the original
            continue
        start, end = active[0], active[-1] + 1
        assert active == list(range(start, end))
        assert start < F // 2 <= end <= F
        plane = mask[start, 0].bool()
        assert is_filled_rectangle(plane)
        assert all(torch.equal(mask[i], mask[start]) for i in range(start, end))


def test_random_pixels_masks_about_half_of_each_frame_independently():
    mask = masks("random_pixels", [0])[0].float()
    fractions = mask.flatten(1).mean(dim=1)
    assert ((fractions > 0.4) & (fractions < 0.6)).all()
    assert not torch.equal(mask[0], mask[1])


def test_random_blocks_put_one_small_block_in_up_to_half_the_frames():
    counts = set()
    for mask in masks("random_blocks"):
        active = torch.nonzero(mask.flatten(1).any(dim=1)).flatten().tolist()
        assert 1 <= len(active) <= F // 2
        counts.add(len(active))
        for frame in active:
            plane = mask[frame, 0].bool()
            assert is_filled_rectangle(plane)
            top, bottom, left, right = bounding_box(plane)
            assert 1 <= bottom - top <= H // 4 and 1 <= right - left <= W // 4
    assert len(counts) >= 3


def _check_ellipse(plane: torch.Tensor, circle: bool) -> bool:
    """True if ``plane`` is exactly {(y-cy)^2/b^2 + (x-cx)^2/a^2 < 1} for integer centre and semi-axes
    read off its bounding box (only decidable when the shape is not clipped by the frame)."""
    top, bottom, left, right = bounding_box(plane)
    if top == 0 or left == 0 or bottom == H or right == W:
        return False
    semi_y, semi_x = (bottom - top + 1) // 2, (right - left + 1) // 2
    cy, cx = (top + bottom - 1) // 2, (left + right - 1) // 2
    low, high = min(H, W) // 8, min(H, W) // 4
    assert low <= semi_y < high and low <= semi_x < high
    if circle:
        assert semi_x == semi_y
    ys, xs = np.ogrid[:H, :W]
    expected = (ys - cy) ** 2 / semi_y**2 + (xs - cx) ** 2 / semi_x**2 < 1
    assert np.array_equal(plane.numpy(), expected)
    return True


@pytest.mark.parametrize("kind", ["ellipse", "circle"])
def test_ellipse_and_circle_are_exact_conics_in_every_frame(kind):
    checked = 0
    for mask in masks(kind):
        assert torch.equal(mask, mask[:1].expand_as(mask))
        checked += _check_ellipse(mask[0, 0].bool(), circle=kind == "circle")
    assert checked >= 10


def test_random_frames_masks_whole_frames():
    patterns = set()
    for mask in masks("random_frames"):
        per_frame = mask.flatten(1).float().mean(dim=1)
        assert set(per_frame.tolist()) <= {0.0, 1.0}
        patterns.add(tuple(per_frame.tolist()))
    assert len(patterns) > 30


def test_images_get_only_box_or_everything_with_the_original_odds():
    draws = Counter(sample_mask_kind(1, torch.Generator().manual_seed(seed)) for seed in range(2000))
    assert set(draws) == {"box", "all"}
    assert abs(draws["all"] / 2000 - IMAGE_MASK_PROBS[1]) < 0.03
    mask = random_mask(1, H, W, torch.Generator().manual_seed(0))
    assert mask.shape == (1, 1, H, W)


def test_video_kinds_follow_the_original_odds():
    generator = torch.Generator().manual_seed(0)
    draws = Counter(sample_mask_kind(F, generator) for _ in range(6000))
    for kind, prob in zip(VIDEO_MASK_KINDS, VIDEO_MASK_PROBS, strict=True):
        assert abs(draws[kind] / 6000 - prob) < 0.02, (kind, draws[kind])


def test_generator_restricts_kinds_and_rejects_unknown_ones():
    generator = InpaintMaskGenerator(kinds=("keep_first_frames",), generator=torch.Generator().manual_seed(0))
    mask = generator(F, H, W)
    assert mask[0].eq(0).all() and mask[-1].eq(1).all()
    with pytest.raises(ValueError, match="unknown mask kinds"):
        InpaintMaskGenerator(kinds=("square",))


def test_collator_adds_one_mask_per_sample_when_inpainting():
    samples = [{"frames": torch.randint(0, 255, (9, 40, 40, 3), dtype=torch.uint8), "text": "t", "type": "video"}] * 3
    config = PlanConfig(video_sample_size=32, image_sample_size=32)
    plain = EasyAnimateCollator(config)(samples)
    assert "mask" not in plain
    collator = EasyAnimateCollator(config, mask_generator=InpaintMaskGenerator())
    batch = collator(samples)
    pixels = batch["pixel_values"]
    assert batch["mask"].shape == (pixels.shape[0], pixels.shape[1], 1, *pixels.shape[-2:])
    assert batch["mask"].dtype == torch.uint8
