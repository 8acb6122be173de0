"""Bucket arithmetic with the original's numbers (SPEC.md §3, the worked examples of notes/data.md)."""

from __future__ import annotations

import numpy as np
import pytest

from hf_easyanimate.data.buckets import (
    ASPECT_RATIO_512,
    ASPECT_RATIO_RANDOM_CROP_512,
    ASPECT_RATIO_RANDOM_CROP_PROB,
    RATIO_KEYS,
    batch_tile_factor,
    bucket_size,
    closest_ratio,
    closest_ratio_indices,
    cover_size,
    downsample_ratio_choices,
    downscaled_size,
    frame_crop_choices,
    frames_for_token_length,
    frames_on_vae_grid,
    frames_per_resolution,
    shared_token_lengths,
    token_sample_sizes,
    token_size_candidates,
)


def test_aspect_ratio_table_is_the_original():
    assert len(ASPECT_RATIO_512) == 40
    values = [float(key) for key in ASPECT_RATIO_512]
    assert values == sorted(values) and values[0] == 0.25 and values[-1] == 4.0
    assert ASPECT_RATIO_512["1.0"] == (512.0, 512.0)
    assert ASPECT_RATIO_512["0.57"] == (384.0, 672.0)
    assert ASPECT_RATIO_512["1.75"] == (672.0, 384.0)
    assert ASPECT_RATIO_512["0.25"] == (256.0, 1024.0) and ASPECT_RATIO_512["4.0"] == (1024.0, 256.0)
    assert all(h % 32 == 0 and w % 32 == 0 for h, w in ASPECT_RATIO_512.values())
    expected = (  # (height, width) per key, in table order, from EasyAnimate's bucket_sampler.py
        "256x1024 256x992 256x960 256x928 288x896 288x864 288x832 320x800 320x768 352x736 352x704 352x672 "
        "384x672 384x640 416x608 416x576 448x576 448x544 480x544 480x512 512x512 512x480 544x480 544x448 "
        "576x448 576x416 608x416 640x384 672x384 704x352 736x352 768x320 800x320 832x288 864x288 896x288 "
        "928x256 960x256 992x256 1024x256"
    ).split()
    assert [f"{h:.0f}x{w:.0f}" for h, w in ASPECT_RATIO_512.values()] == expected
    # Spellings matter: the keys are strings exactly as in bucket_sampler.py.
    assert {"0.4", "0.5", "0.6", "1.0", "2.0", "3.0", "4.0"} <= set(ASPECT_RATIO_512)


def test_random_crop_table():
    assert list(ASPECT_RATIO_RANDOM_CROP_512) == [
        "0.42", "0.5", "0.57", "0.68", "0.78", "0.88", "0.94", "1.0", "1.07", "1.13", "1.29", "1.46", "1.75", "2.0", "2.4"
    ]
    assert all(ASPECT_RATIO_RANDOM_CROP_512[k] == ASPECT_RATIO_512[k] for k in ASPECT_RATIO_RANDOM_CROP_512)
    # The weights sum to 62 (the original normalises by their sum).
    assert np.allclose(np.array(ASPECT_RATIO_RANDOM_CROP_PROB) * 62, [1, 2, 4, 4, 4, 4, 8, 8, 8, 4, 4, 4, 4, 2, 1])


@pytest.mark.parametrize(
    ("width", "height", "key"),
    [(1920, 1080, "0.57"), (1280, 720, "0.57"), (1080, 1920, "1.75"), (640, 480, "0.72"), (64, 48, "0.72"),
     (480, 640, "1.29"), (720, 480, "0.68"), (480, 720, "1.46"), (2560, 1080, "0.42"), (512, 512, "1.0")],
)
def test_closest_ratio_worked_examples(width, height, key):
    assert closest_ratio(height, width) == key
    assert RATIO_KEYS[closest_ratio_indices(np.array([height]), np.array([width]))[0]] == key


def test_vectorised_closest_ratio_matches_the_scan_including_every_tie():
    rng = np.random.default_rng(0)
    heights = rng.integers(16, 4000, 20000)
    widths = rng.integers(16, 4000, 20000)
    expected = [closest_ratio(h, w) for h, w in zip(heights, widths)]
    assert [RATIO_KEYS[i] for i in closest_ratio_indices(heights, widths)] == expected
    # Exact float midpoints between neighbours (ties go to the smaller key in the scan) and out-of-range ratios.
    values = [float(k) for k in RATIO_KEYS]
    ratios = [(a + b) / 2 for a, b in zip(values, values[1:])] + [0.01, 0.25, 4.0, 9.0]
    scan = [closest_ratio(r, 1.0) for r in ratios]
    vector = [RATIO_KEYS[i] for i in closest_ratio_indices(np.array(ratios), np.ones(len(ratios)))]
    assert vector == scan
    assert closest_ratio(0.75, 1.0) == "0.72"  # 4:3 is an exact tie between 0.72 and 0.78


def test_bucket_sizes_at_64_and_256():
    at_64 = {k: bucket_size(k, 64) for k in ASPECT_RATIO_512}
    assert at_64["0.25"] == (32, 128) and at_64["0.57"] == (48, 80) and at_64["1.0"] == (64, 64)
    assert at_64["1.75"] == (80, 48) and at_64["2.0"] == (80, 32) and at_64["4.0"] == (128, 32)
    at_256 = {k: bucket_size(k, 256) for k in ASPECT_RATIO_512}
    assert at_256["0.28"] == (128, 464) and at_256["0.57"] == (192, 336) and at_256["1.38"] == (288, 208)
    assert at_256["3.11"] == (448, 144)
    assert all(v == (2 * ASPECT_RATIO_512[k][0], 2 * ASPECT_RATIO_512[k][1]) for k, v in
               {k: bucket_size(k, 1024) for k in ASPECT_RATIO_512}.items())
    # random_hw_adapt / token length: the table scaled to side 384 from a 256 base (ratio 256/384).
    assert bucket_size("0.57", 256, 256 / 384) == (288, 496)
    assert bucket_size("0.72", 256, 256 / 384) == (304, 432)
    assert bucket_size("1.0", 256, 256 / 384) == (384, 384)


def test_random_hw_adapt_candidates():
    # SPEC.md §3 example: images at 1024 with videos at 256 -> sides 1024 down to 256.
    ratios, odds = downsample_ratio_choices(1024, [1024 / 256])
    assert ratios == [1, 1.25, 1.5, 2, 4.0] and odds == [0.75, 0.0625, 0.0625, 0.0625, 0.0625]
    assert [int(1024 / r) for r in ratios] == [1024, 819, 682, 512, 256]
    assert downsample_ratio_choices(1536) == ([1, 1.25, 1.5, 2, 2.5, 3], [0.75] + [0.05] * 5)
    assert downsample_ratio_choices(768)[0] == [1, 1.25, 1.5]
    assert downsample_ratio_choices(512, [2.0]) == ([1, 2.0], [0.75, 0.25])
    assert downsample_ratio_choices(256) == ([1.0], [1.0])  # small videos never shrink


def test_token_length_frames_per_resolution_spec_numbers():
    assert token_sample_sizes(256, 1024) == [256, 384, 512, 640, 768, 896, 1024]
    table = frames_per_resolution(256, 1024, 49, 512, 4)
    assert table == {256: 49, 384: 49, 512: 49, 640: 29, 768: 21, 896: 17, 1024: 13}
    assert token_sample_sizes(256, 1000) == [256, 384, 512, 640, 768, 896, 1000]
    assert token_sample_sizes(512, 512) == [512]
    assert frames_per_resolution(64, 64, 9, 64, 4) == {64: 9}


def test_token_size_choice_stays_below_1_25x_the_smallest_clip():
    sizes = [256, 384, 512, 640, 768, 896, 1024]
    assert token_size_candidates(sizes, 400.0) == [256, 384]  # 1.25 x 400 = 500
    assert token_size_candidates(sizes, 512.0) == [256, 384, 512]  # 640 is not < 640
    assert token_size_candidates(sizes, 100.0) == sizes  # nothing fits: every side is allowed
    # The 1.25 rule looks at clips after the original's decode-time downscale (short side <= max sample size).
    assert downscaled_size(1080, 1920, 1024) == (1024, 1820)
    assert downscaled_size(1920, 1080, 1024) == (1820, 1024)
    assert downscaled_size(480, 640, 1024) == (480, 640)


def test_frame_grid_crops_and_shared_token_lengths():
    assert [frames_on_vae_grid(n, 4) for n in (0, 1, 4, 5, 8, 9, 48, 49)] == [1, 1, 1, 5, 5, 9, 45, 49]
    lengths, odds = frame_crop_choices(49, 4)
    assert lengths == [5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49]
    assert odds[-1] == 0.9 and np.isclose(sum(odds), 1.0) and np.allclose(odds[:-1], 0.1 / 11)
    assert frame_crop_choices(9, 4) == ([5, 9], [0.1, 0.9])
    assert shared_token_lengths(512, 49) == [256 * 256 * 49, 384 * 384 * 49, 512 * 512 * 49]
    assert shared_token_lengths(256, 17) == [256 * 256 * 17]
    assert frames_for_token_length(256 * 256 * 49, 512, 512, 49, 4) == 9  # 12.25 frames fit -> 9 on the grid
    assert frames_for_token_length(512 * 512 * 49, 256, 256, 49, 4) == 49
    assert frames_for_token_length(256 * 256 * 49, 1024, 1024, 49, 4) == 1


def test_batch_tiling_and_cover_sizes():
    assert batch_tile_factor(49, 512, 1, 512, 512) == 4  # an image uses 1/49 of the budget
    assert batch_tile_factor(49, 512, 49, 256, 256) == 2  # a quarter of the budget exactly
    assert batch_tile_factor(49, 512, 49, 512, 512) == 1
    assert cover_size(1080, 1920, 144, 256) == (144, 256)
    assert cover_size(1080, 1920, 256, 256) == (256, 455)
    assert cover_size(1920, 1080, 256, 192) == (341, 192)
    assert cover_size(100, 300, 64, 64) == (64, 192)
