"""Per-batch choices: every size/frame flag's effect, with the numbers of SPEC.md §3."""

from __future__ import annotations

from collections import Counter

import numpy as np

from hf_easyanimate.data.buckets import ASPECT_RATIO_RANDOM_CROP_512, bucket_size
from hf_easyanimate.data.plan import PlanConfig, plan_batch

V51 = dict(image_sample_size=1024, video_sample_size=256, token_sample_size=512, video_sample_n_frames=49,
           enable_bucket=True)


def draw(config: PlanConfig, kind: str, key: str, sizes, count: int = 400):
    sizes = np.array(sizes)
    return [plan_batch(config, kind, key, sizes, np.random.default_rng([7, i])) for i in range(count)]


def test_plain_buckets_use_the_bucket_size_and_all_frames():
    config = PlanConfig(**V51)
    video = plan_batch(config, "video", "0.57", np.array([[1080, 1920]]), np.random.default_rng(0))
    assert (video.height, video.width, video.max_frames) == (192, 336, 49)
    image = plan_batch(config, "image", "0.57", np.array([[1080, 1920]]), np.random.default_rng(0))
    assert (image.height, image.width, image.max_frames) == (768, 1344, 1)
    assert video.frame_crop is None and video.token_frames is None and video.decode_limit == 49


def test_without_buckets_everything_is_a_square_and_hw_adapt_does_nothing():
    config = PlanConfig(image_sample_size=96, video_sample_size=64, enable_bucket=False, random_hw_adapt=True,
                        training_with_video_token_length=True, video_sample_n_frames=17)
    plans = draw(config, "video", "square", [[48, 96]], 20) + draw(config, "image", "square", [[48, 96]], 20)
    assert {(p.kind, p.height, p.width, p.max_frames) for p in plans} == {("video", 64, 64, 17), ("image", 96, 96, 1)}


def test_random_hw_adapt_images_spec_example():
    # image 1024 / video 256: sides 1024, 819.2, 682.7, 512, 256 with odds 0.75 and 0.0625 each.
    config = PlanConfig(**V51, random_hw_adapt=True)
    plans = draw(config, "image", "1.0", [[1024, 1024]], 2000)
    counts = Counter((p.height, p.width) for p in plans)
    assert set(counts) == {(1024, 1024), (816, 816), (672, 672), (512, 512), (256, 256)}
    assert abs(counts[(1024, 1024)] / 2000 - 0.75) < 0.04
    assert all(abs(counts[size] / 2000 - 0.0625) < 0.025 for size in counts if size != (1024, 1024))
    wide = draw(config, "image", "0.57", [[1080, 1920]], 200)
    assert {(p.height, p.width) for p in wide} == {bucket_size("0.57", 1024, r) for r in (1, 1.25, 1.5, 2, 4.0)}


def test_random_hw_adapt_videos_without_token_length():
    config = PlanConfig(**{**V51, "video_sample_size": 768}, random_hw_adapt=True)
    plans = draw(config, "video", "1.0", [[1024, 1024]], 400)
    assert {p.height for p in plans} == {768, 608, 512}  # 768 / 1, / 1.25 (614 -> 608), / 1.5
    assert all(p.max_frames == 49 for p in plans)
    small = PlanConfig(**V51, random_hw_adapt=True)  # a 256 video side never shrinks
    assert {p.height for p in draw(small, "video", "1.0", [[1024, 1024]], 50)} == {256}


def test_token_length_picks_a_side_and_its_frames():
    config = PlanConfig(**V51, random_hw_adapt=True, training_with_video_token_length=True)
    table = {256: 49, 384: 49, 512: 49, 640: 29, 768: 21, 896: 17, 1024: 13}
    # 1080p clips (downscaled to a 1024 short side: mean side 1422) allow every side.
    plans = draw(config, "video", "0.57", [[1080, 1920], [1080, 1920]], 700)
    assert {p.side for p in plans} == set(table)
    for plan in plans:
        assert plan.max_frames == table[int(plan.side)]
        assert (plan.height, plan.width) == bucket_size("0.57", 256, 256 / plan.side)
    # A 480x640 clip in the batch (mean side 560) caps the side below 1.25 x 560 = 700.
    capped = draw(config, "video", "0.72", [[1080, 1440], [480, 640]], 300)
    assert {p.side for p in capped} == {256, 384, 512, 640}
    spec_sizes = {p.side: (p.height, p.width, p.max_frames) for p in capped}
    assert spec_sizes[384] == (304, 432, 49) and spec_sizes[640] == (512, 720, 29)
    # Clips smaller than every side: all sides stay allowed (the original's fallback).
    assert {p.side for p in draw(config, "video", "1.0", [[64, 64]], 400)} == set(table)


def test_random_ratio_crop_draws_from_the_crop_table():
    config = PlanConfig(**V51, random_ratio_crop=True)
    plans = draw(config, "video", "1.0", [[512, 512]], 1500)
    counts = Counter((p.height, p.width) for p in plans)
    expected = {bucket_size(k, 256, ratios=ASPECT_RATIO_RANDOM_CROP_512) for k in ASPECT_RATIO_RANDOM_CROP_512}
    assert set(counts) == expected
    # 0.94, 1.0 and 1.07 carry weight 8 of 62 each, 0.42 and 2.4 weight 1.
    assert abs(counts[bucket_size("1.0", 256)] / 1500 - 8 / 62) < 0.03
    assert counts[bucket_size("2.4", 256)] < counts[bucket_size("1.0", 256)] / 3


def test_random_frame_crop_and_shared_token_length():
    config = PlanConfig(**V51, random_frame_crop=True)
    crops = Counter(p.frame_crop for p in draw(config, "video", "1.0", [[512, 512]], 2000))
    assert set(crops) <= set(range(5, 50, 4)) and abs(crops[49] / 2000 - 0.9) < 0.03
    assert all(p.frame_crop is None for p in draw(config, "image", "1.0", [[512, 512]], 10))
    shared = PlanConfig(**{**V51, "video_sample_size": 512}, keep_all_node_same_token_length=True)
    plans = draw(shared, "video", "1.0", [[512, 512]], 300)
    # budgets 256^2, 384^2, 512^2 x 49 frames at 512x512: 12.25 -> 9, 27.6 -> 25, 49 frames.
    assert {p.token_frames for p in plans} == {9, 25, 49}
    assert all(p.decode_limit == min(p.max_frames, p.token_frames) for p in plans)
