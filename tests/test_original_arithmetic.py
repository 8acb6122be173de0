"""Data arithmetic identical to the original trainer (issue 17), stated with the original's numbers.

1. Inpaint masks are drawn on the whole clip as sampled, then cut to the batch's frames.
2. 4:3 landscape clips larger than the sample size are bucketed by their size after the original's
   decode-time downscale (key 0.78, not 0.72), and trained at that bucket's size.
3. An off-grid ``--video_sample_n_frames`` (144) is sampled as given; each batch keeps the first 4n + 1.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_easyanimate.data import masks as mask_module
from hf_easyanimate.data.buckets import bucket_size, closest_ratio, downscaled_size
from hf_easyanimate.data.collator import EasyAnimateCollator
from hf_easyanimate.data.masks import make_mask
from hf_easyanimate.data.plan import BatchPlan, PlanConfig
from hf_easyanimate.data.video import FrameSampling, sample_frame_indices


def clip_samples(decoded: int, available: int, count: int = 1, side: int = 32) -> list[dict]:
    plan = BatchPlan(kind="video", bucket=0, height=side, width=side, side=side, max_frames=available,
                     token_frames=decoded)
    return [{"frames": torch.zeros((decoded, side, side, 3), dtype=torch.uint8), "text": "t", "type": "video",
             "index": i, "available_frames": available, "plan": plan} for i in range(count)]


# --- 1. masks before the frame cut --------------------------------------------------------------------------------

def test_keep_first_and_last_frames_of_a_49_frame_clip_trained_at_13(monkeypatch):
    monkeypatch.setattr(mask_module, "_randint", lambda low, high, generator: 2)  # k = 2
    collator = EasyAnimateCollator(PlanConfig(video_sample_n_frames=49),
                                   mask_generator=lambda f, h, w: make_mask("keep_first_and_last_frames", f, h, w))
    batch = collator(clip_samples(decoded=13, available=49))
    kept = batch["mask"][0, :, 0, 0, 0].tolist()
    assert kept == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]  # the original's: the kept last frames were cut away
    assert make_mask("keep_first_and_last_frames", 13, 32, 32)[:, 0, 0, 0].tolist() == [
        0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]  # what drawing on the cut clip gave


@pytest.mark.parametrize("kind", ["box_in_span", "random_blocks", "random_frames", "keep_first_frames"])
def test_every_frame_dependent_kind_is_the_whole_clips_mask_cut(kind):
    def generator(f, h, w):
        return make_mask(kind, f, h, w, torch.Generator().manual_seed(7))

    batch = EasyAnimateCollator(PlanConfig(video_sample_n_frames=49), mask_generator=generator)(
        clip_samples(decoded=13, available=49))
    whole = generator(49, 32, 32)
    assert torch.equal(batch["mask"][0], whole[:13])
    if kind in ("box_in_span", "random_blocks"):  # their geometry depends on F: the cut clip's mask differs
        assert not torch.equal(batch["mask"][0], generator(13, 32, 32))


# --- 2. bucket keys of large 4:3 clips ----------------------------------------------------------------------------

ORIGINAL_SIZES = [  # (image size, video size, clip h, w) -> the original's batch (h, w)
    ((512, 512, 1080, 1440), (448, 576)),
    ((1024, 256, 1080, 1440), (224, 288)),  # the seed's sizes
    ((256, 256, 480, 640), (224, 288)),
    ((1024, 1024, 1080, 1440), (896, 1152)),
    ((640, 384, 768, 1024), (336, 432)),
    ((1280, 768, 1536, 2048), (672, 864)),
]


@pytest.mark.parametrize(("case", "expected"), ORIGINAL_SIZES)
def test_video_bucket_size_is_keyed_on_the_downscaled_clip(case, expected):
    image_size, video_size, height, width = case
    small = downscaled_size(height, width, max(image_size, video_size))
    key = closest_ratio(*small)
    assert key == "0.78" and bucket_size(key, video_size) == expected
    assert closest_ratio(height, width) == "0.72"  # the exact 4:3 tie: what an image of that size gets


def test_small_4_3_clips_and_images_keep_the_exact_ratio():
    assert downscaled_size(480, 640, 512) == (480, 640)  # short side within the larger sample size: untouched
    assert closest_ratio(*downscaled_size(480, 640, 512)) == "0.72"


def test_bucket_plan_and_sampler_train_such_clips_at_the_original_size(tmp_path):
    from hf_easyanimate.config import DataArguments
    from hf_easyanimate.data.pipeline import bucket_plan, prepare_index
    from hf_easyanimate.data.sampler import BucketBatchSampler

    rows = [{"file_path": f"v{i}.mp4", "text": "t", "type": "video", "height": 1080, "width": 1440,
             "num_frames": 60} for i in range(2)]
    rows += [{"file_path": f"i{i}.png", "text": "t", "type": "image", "height": 1080, "width": 1440}
             for i in range(2)]
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps(rows))
    data_args = DataArguments(train_data_meta=str(meta), train_data_dir=str(tmp_path), enable_bucket=True,
                              image_sample_size=512, video_sample_size=512, data_cache_dir=str(tmp_path / "c"))
    table, index, _ = prepare_index(data_args)
    config = PlanConfig.from_data_args(data_args)
    plan = bucket_plan(table, index, config, batch_size=2)
    sizes = {(b["type"], b["ratio"]): (b["height"], b["width"]) for b in plan["buckets"]}
    assert sizes == {("image", "0.72"): (416, 576), ("video", "0.78"): (448, 576)}
    sampler = BucketBatchSampler(index, 2, config, seed=0)
    plans = {batch[0][1].kind: (batch[0][1].height, batch[0][1].width) for batch in sampler}
    assert plans == {"image": (416, 576), "video": (448, 576)}


# --- 3. off-grid --video_sample_n_frames --------------------------------------------------------------------------

def test_144_frames_at_stride_1_start_where_the_original_does():
    sampling = FrameSampling(n_frames=144, stride=1)
    starts = {sample_frame_indices(180, sampling, np.random.default_rng(seed))[0] for seed in range(400)}
    assert starts == {16, 17, 18}  # original: randint(int(0.1 * 162), 162 - 144); rounding to 141 gave 16..21
    indices = sample_frame_indices(180, sampling, np.random.default_rng(0))
    assert len(indices) == 144 and indices[-1] - indices[0] == 143


def test_the_collate_keeps_the_first_4n_plus_1_of_144():
    collator = EasyAnimateCollator(PlanConfig(video_sample_n_frames=144))
    batch = collator(clip_samples(decoded=144, available=144, count=2, side=16))
    assert batch["pixel_values"].shape[1] == 141
