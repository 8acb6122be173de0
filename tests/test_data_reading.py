"""Frame sampling, the dataset (repeat, caption drop, flip, bad files) and the collator's shapes and pixels."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from datatools import demo_rows, write_broken_files, write_metadata

from hf_easyanimate.data import (
    BatchPlan,
    EasyAnimateCollator,
    EasyAnimateDataset,
    FrameSampling,
    PlanConfig,
    SampleIndex,
    SampleOptions,
    SampleReadError,
    load_metadata,
)
from hf_easyanimate.data.collator import resize_and_center_crop
from hf_easyanimate.data.video import probe_file, read_video_frames, sample_frame_indices


def starts(n: int, stride: int, frames: int, draws: int = 3000) -> tuple[set[int], set[int]]:
    sampling = FrameSampling(frames, stride)
    picks = [sample_frame_indices(n, sampling, np.random.default_rng(i)) for i in range(draws)]
    return {p[0] for p in picks}, {len(p) for p in picks}


@pytest.mark.parametrize(
    ("n", "stride", "frames", "first", "count"),
    [(100, 3, 49, set(range(9, 15)), 26), (300, 3, 49, set(range(27, 126)), 49), (40, 1, 49, {3, 4}, 32),
     (61, 1, 49, {5, 6}, 48), (20, 3, 49, set(range(1, 6)), 5), (5, 1, 49, {0}, 4), (2, 1, 49, {0}, 1)],
)
def test_frame_sampling_worked_examples(n, stride, frames, first, count):
    seen_starts, counts = starts(n, stride, frames)
    assert counts == {count}
    assert seen_starts == first
    indices = sample_frame_indices(n, FrameSampling(frames, stride), np.random.default_rng(0))
    assert np.diff(indices).tolist() == [stride] * (count - 1) and indices[-1] < int(0.9 * n)


def test_drop_fractions_move_the_window():
    # VideoX-Fun's 0.0 / 1.0: the whole clip is usable; a 20-frame clip at stride 1 gives all 20 frames.
    whole = FrameSampling(49, 1, drop_start=0.0, drop_end=1.0)
    assert sample_frame_indices(20, whole, np.random.default_rng(0)) == list(range(20))
    late = FrameSampling(4, 2, drop_start=0.5, drop_end=1.0)  # start >= 0.5 x 100, window ends before 100
    firsts = {sample_frame_indices(100, late, np.random.default_rng(i))[0] for i in range(500)}
    assert firsts == set(range(50, 94))


def test_a_one_frame_clip_is_too_short():
    with pytest.raises(SampleReadError, match="too few for stride") as error:
        sample_frame_indices(1, FrameSampling(9, 1), np.random.default_rng(0))
    assert error.value.kind == "too_short"


@pytest.fixture(scope="module")
def demo(demo_data):
    meta = load_metadata(demo_data, os.path.dirname(demo_data))
    for row in range(len(meta)):
        meta.heights[row], meta.widths[row], meta.num_frames[row] = probe_file(meta.path(row), meta.kinds[row] == 1)
    return meta


def make_dataset(meta, repeat=1, **options) -> EasyAnimateDataset:
    index = SampleIndex.build(meta, meta.usable, video_repeat=repeat, enable_bucket=True)
    sample_options = SampleOptions(frames=FrameSampling(9, 2), **options)
    return EasyAnimateDataset(meta, index, sample_options, seed=1)


def plan_for(dataset, index, max_frames=9, entropy=(1, 0, 0), **extra) -> BatchPlan:
    kind, _ = dataset.index.bucket_keys[int(dataset.index.buckets[index])]
    return BatchPlan(kind=kind, bucket=int(dataset.index.buckets[index]), height=32, width=32, side=32.0,
                     max_frames=1 if kind == "image" else max_frames, entropy=entropy, **extra)


def test_video_repeat_counts(demo):
    videos = int((demo.kinds == 1).sum())
    images = len(demo) - videos
    assert len(make_dataset(demo, repeat=0)) == images + videos  # 0 keeps videos once
    assert len(make_dataset(demo, repeat=1)) == images + videos  # the V5.1 recipes' value: as the original
    tripled = make_dataset(demo, repeat=3)
    assert len(tripled) == images + 3 * videos
    assert np.bincount(tripled.index.rows, minlength=len(demo)).tolist() == [3 if k == 1 else 1 for k in demo.kinds]


def test_only_the_planned_frames_are_decoded_and_samples_replay(demo):
    dataset = make_dataset(demo, text_drop_ratio=0.0)
    video = int(np.flatnonzero(dataset.index.kinds == 1)[0])
    full = dataset[(video, plan_for(dataset, video))]
    capped = dataset[(video, plan_for(dataset, video, frame_crop=5))]
    assert full["frames"].dtype == torch.uint8 and full["frames"].shape[0] == 9 == full["available_frames"]
    assert capped["frames"].shape[0] == 5 and capped["available_frames"] == 9
    assert torch.equal(capped["frames"], full["frames"][:5])  # same draws, fewer frames decoded
    again = dataset[(video, plan_for(dataset, video))]
    assert torch.equal(again["frames"], full["frames"]) and again["text"] == demo.text(int(dataset.index.rows[video]))
    # The frames are those of the clip at stride 2.
    clip = read_video_frames(demo.path(int(dataset.index.rows[video])))
    matches = [start for start in range(len(clip)) if start + 16 < len(clip)
               and np.abs(clip[start : start + 17 : 2].astype(int) - full["frames"].numpy()).max() == 0]
    assert matches
    other = [dataset[(video, plan_for(dataset, video, entropy=(1, 0, b)))]["frames"] for b in range(8)]
    assert any(not torch.equal(frames, full["frames"]) for frames in other)  # the start is random per batch


def test_caption_drop_and_flip(demo):
    images = np.flatnonzero(make_dataset(demo).index.kinds == 0)
    dropped = make_dataset(demo, text_drop_ratio=1.0)
    assert {dropped[(int(i), plan_for(dropped, int(i)))]["text"] for i in images} == {""}
    some = make_dataset(demo, text_drop_ratio=0.1)
    texts = [some[(int(i), plan_for(some, int(i), entropy=(2, 0, b)))]["text"] for i in images for b in range(100)]
    assert 0.05 < texts.count("") / len(texts) < 0.15
    plain, flipping = make_dataset(demo, text_drop_ratio=0.0), make_dataset(demo, random_flip=True, text_drop_ratio=0.0)
    outcomes = set()
    for b in range(12):
        index = int(images[0])
        a = plain[(index, plan_for(plain, index, entropy=(3, 0, b)))]["frames"]
        f = flipping[(index, plan_for(flipping, index, entropy=(3, 0, b)))]["frames"]
        outcomes.add("same" if torch.equal(a, f) else "mirrored" if torch.equal(a.flip(2), f) else "other")
    assert outcomes == {"same", "mirrored"}


def test_bad_files_are_replaced_from_the_same_bucket_and_reported(demo_data, tmp_path):
    folder = os.path.dirname(demo_data)
    rows = [{**r, "file_path": os.path.join(folder, r["file_path"]), "width": 64, "height": 64}
            for r in demo_rows(demo_data)]
    broken = write_broken_files(str(tmp_path))
    rows += [{"file_path": path, "text": kind, "type": "image" if path.endswith("png") else "video",
              "width": 64, "height": 64} for kind, path in broken.items()]
    meta = load_metadata(write_metadata(str(tmp_path / "m.json"), rows), str(tmp_path),
                         cache_dir=str(tmp_path / "cache"))
    index = SampleIndex.build(meta, meta.usable, 1, enable_bucket=True)
    dataset = EasyAnimateDataset(meta, index, SampleOptions(FrameSampling(9, 2)), seed=0)
    seen = set()
    for position in np.flatnonzero(index.rows >= len(rows) - len(broken)):
        position = int(position)
        plan = plan_for(dataset, position)
        sample = dataset[(position, plan)]
        assert int(index.buckets[sample["index"]]) == plan.bucket and sample["index"] != position
        assert [p.kind for p in sample["problems"]][:1] in ([p_kind] for p_kind in broken)
        seen |= {(p.kind, os.path.relpath(p.file, tmp_path)) for p in sample["problems"]}
    assert seen == set(broken.items())
    strict = EasyAnimateDataset(meta, index, SampleOptions(FrameSampling(9, 2)), strict=True)
    position = int(np.flatnonzero(index.rows == len(rows) - 1)[0])
    with pytest.raises(SampleReadError, match="one_frame.mp4"):
        strict[(position, plan_for(strict, position))]


def sample(frames: np.ndarray, index: int = 0, plan=None, available=None, kind="video") -> dict:
    return {"frames": torch.from_numpy(frames), "text": f"t{index}", "type": kind, "index": index,
            "available_frames": available or len(frames), "plan": plan, "problems": []}


def test_collator_sizes_frames_and_tiles_by_plan():
    config = PlanConfig(image_sample_size=64, video_sample_size=64, token_sample_size=64, video_sample_n_frames=9,
                        enable_bucket=True, training_with_video_token_length=True)
    collate = EasyAnimateCollator(config)
    plan = BatchPlan("video", 0, 48, 80, 64.0, max_frames=9)
    clips = [sample(np.zeros((9, 60, 100, 3), np.uint8), 0, plan), sample(np.zeros((7, 60, 100, 3), np.uint8), 1, plan)]
    batch = collate(clips)
    assert batch["pixel_values"].shape == (2, 5, 3, 48, 80)  # min(9, 7) frames -> 5 on the 4n+1 grid
    assert batch["pixel_values"].dtype == torch.float32 and batch["pixel_values"].min() == -1.0
    assert batch["data_type"] == "video" and batch["text"] == ["t0", "t1"] and batch["sample_index"] == [0, 1]
    assert batch["data_problems"] == []
    crop = BatchPlan("video", 0, 48, 80, 64.0, max_frames=9, frame_crop=5, token_frames=1)
    assert collate([sample(np.zeros((9, 60, 100, 3), np.uint8), 0, crop)])["pixel_values"].shape[1] == 1
    # A tiny image batch is far below the 9 x 64^2 token budget: tiled x4, captions too.
    image_plan = BatchPlan("image", 0, 16, 16, 16.0, max_frames=1)
    images = collate([sample(np.full((1, 20, 20, 3), 255, np.uint8), 3, image_plan, kind="image")])
    assert images["pixel_values"].shape == (4, 1, 3, 16, 16) and images["text"] == ["t3"] * 4
    assert images["pixel_values"].max() == 1.0 and images["sample_index"] == [3] * 4


def test_collator_without_plan_sizes_from_the_first_sample_and_adds_masks():
    config = PlanConfig(image_sample_size=64, video_sample_size=64, video_sample_n_frames=9, enable_bucket=True)
    masks = EasyAnimateCollator(config, mask_generator=lambda f, h, w: torch.ones(f, 1, h, w, dtype=torch.uint8))
    batch = masks([sample(np.zeros((9, 48, 96, 3), np.uint8), 0), sample(np.zeros((9, 48, 96, 3), np.uint8), 1)])
    assert batch["pixel_values"].shape == (2, 9, 3, 32, 80)  # 0.5 bucket at 64
    assert batch["mask"].shape == (2, 9, 1, 32, 80)
    square = EasyAnimateCollator(PlanConfig(image_sample_size=40, video_sample_size=32, enable_bucket=False))
    assert square([sample(np.zeros((1, 30, 90, 3), np.uint8), 0, kind="image")])["pixel_values"].shape == (
        1, 1, 3, 40, 40)


def test_resize_keeps_aspect_and_crops_the_centre():
    columns = np.arange(128, dtype=np.uint8)[None, None, :, None] * 2  # value = 2 x column
    frame = np.broadcast_to(columns, (1, 64, 128, 3)).copy()
    out = resize_and_center_crop(torch.from_numpy(frame), 32, 32)
    assert out.shape == (1, 3, 32, 32)
    row = ((out[0, 0, 0] + 1) * 127.5).numpy()
    # Resized to 32x64 (factor 2), the crop keeps resized columns 16..47, i.e. original columns 32..95.
    assert abs(row[0] - 2 * 32.5) < 3 and abs(row[-1] - 2 * 94.5) < 3
    assert (np.diff(row) > 0).all()
    assert torch.allclose(out[0, 0], out[0, 0, :1].expand(32, 32))  # no vertical change: nothing stretched
