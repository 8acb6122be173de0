"""Hostile metadata files and media: each gets a clear message or a skip-and-report, never a crash."""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from datatools import write_metadata
from PIL import Image

from hf_easyanimate.commands.validate_data import main as validate_data_main
from hf_easyanimate.config import DataArguments
from hf_easyanimate.data import (
    EasyAnimateCollator,
    EasyAnimateDataset,
    FrameSampling,
    MetadataError,
    PlanConfig,
    SampleIndex,
    SampleOptions,
    load_metadata,
)
from hf_easyanimate.data.pipeline import prepare_index
from hf_easyanimate.utils.media import write_mp4


def zero_frame_mp4(path: str) -> str:
    """A well-formed mp4 container (header, one video stream) holding no frames at all."""
    import av

    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return path


def giant_png_header(path: str, width: int = 100_000, height: int = 100_000) -> str:
    """A tiny PNG file whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 16)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, this is not json\n", "is not JSON"),
        (b"\xff\xfe\x00garbage", "is not UTF-8 text"),
        (b'{"file_path": "a.mp4", "text": "one object", "type": "video", "extra": {"x": 1}}', None),
        (b'{"clips": [{"file_path": "a.mp4", "text": "x"}]}', "holds one JSON object .* not a list of rows"),
        (b"[ ]", "the JSON list is empty"),
    ],
    ids=["plain_text", "binary", "single_row_object", "object_of_lists", "empty_list"],
)
def test_metadata_files_that_are_not_a_json_list(tmp_path, content, message):
    path = tmp_path / "metadata.json"
    path.write_bytes(content)
    if message is None:  # one object with the row keys is one row (JSON Lines of length 1), as datasets reads it
        meta = load_metadata(str(path), str(tmp_path), cache_dir=str(tmp_path / "cache"))
        assert len(meta) == 1 and meta.text(0) == "one object"
        return
    with pytest.raises(MetadataError, match=message):
        load_metadata(str(path), cache_dir=str(tmp_path / "cache"))


def test_rows_with_wrong_types_are_flagged_not_crashed_on(tmp_path):
    rows = [
        {"file_path": "good.mp4", "text": "fine", "type": "video", "width": 64, "height": 48},
        {"file_path": 12345, "text": "number path", "type": "video"},
        {"file_path": ["a.mp4"], "text": "list path", "type": "video"},
        {"file_path": "dict_text.mp4", "text": {"en": "hi"}, "type": "video"},
        {"file_path": "list_type.mp4", "text": "t", "type": ["video"]},
        {"file_path": "bool_text.png", "text": True, "type": "image"},
        {"file_path": "bad_size.png", "text": "size is text", "type": "image", "width": "wide", "height": -3},
    ]
    meta = load_metadata(write_metadata(str(tmp_path / "m.json"), rows), str(tmp_path),
                         cache_dir=str(tmp_path / "cache"))
    kinds = {p.row: p.kind for p in meta.problems()}
    assert kinds == {1: "missing_file_path", 2: "missing_file_path", 3: "bad_text", 4: "unknown_type",
                     5: "bad_text"}
    assert meta.usable.tolist() == [True, False, False, False, False, False, True]
    # An unusable width/height is "unknown" (probed later when bucketing needs it), never a negative size.
    assert (meta.heights[6], meta.widths[6]) == (-1, -1)
    assert (meta.heights[0], meta.widths[0]) == (48, 64)


def test_paths_climbing_out_of_the_data_dir_are_used_and_logged(tmp_path, caplog, capsys):
    data_dir = tmp_path / "dataset"
    shared = tmp_path / "shared_clips"
    os.makedirs(data_dir / "clips")
    os.makedirs(shared)
    frames = np.random.default_rng(0).integers(0, 255, (12, 48, 64, 3), dtype=np.uint8)
    write_mp4(str(data_dir / "clips" / "inside.mp4"), frames)
    write_mp4(str(shared / "outside.mp4"), frames)
    rows = [
        {"file_path": "clips/inside.mp4", "text": "inside", "type": "video"},
        {"file_path": "clips/../clips/inside.mp4", "text": "dots that stay inside", "type": "video"},
        {"file_path": "../shared_clips/outside.mp4", "text": "outside", "type": "video"},
        {"file_path": str(shared / "outside.mp4"), "text": "absolute: the user's explicit choice", "type": "video"},
    ]
    meta_path = write_metadata(str(data_dir / "metadata.json"), rows)
    args = DataArguments(train_data_meta=meta_path, train_data_dir=str(data_dir), video_sample_n_frames=5,
                         video_sample_stride=1, data_cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="hf_easyanimate"):
        meta, index, problems = prepare_index(args)
    assert meta.rows_outside_data_dir().tolist() == [2]
    assert problems == [] and sorted(index.rows.tolist()) == [0, 1, 2, 3]  # allowed: still trained on
    warning = [r.getMessage() for r in caplog.records if "outside --train_data_dir" in r.getMessage()]
    assert len(warning) == 1 and "row 2: ../shared_clips/outside.mp4" in warning[0]
    status = validate_data_main(["--train_data_meta", meta_path, "--train_data_dir", str(data_dir),
                                 "--video_sample_n_frames", "5", "--video_sample_stride", "1",
                                 "--data_cache_dir", str(tmp_path / "cache")])
    printed = capsys.readouterr().out
    assert status == 0 and "0 problem(s)" in printed  # a note, not a problem
    assert "note: 1 file_path(s) point outside --train_data_dir" in printed and "row 2:" in printed


def test_validate_data_reports_zero_frame_one_frame_and_bomb_files(tmp_path, capsys):
    folder = tmp_path / "data"
    os.makedirs(folder)
    write_mp4(str(folder / "ok.mp4"), np.full((12, 48, 64, 3), 90, dtype=np.uint8))
    zero_frame_mp4(str(folder / "zero.mp4"))
    write_mp4(str(folder / "one.mp4"), np.zeros((1, 48, 64, 3), dtype=np.uint8))
    giant_png_header(str(folder / "bomb.png"))
    rows = [{"file_path": name, "text": name, "type": "image" if name.endswith("png") else "video"}
            for name in ("ok.mp4", "zero.mp4", "one.mp4", "bomb.png")]
    meta_path = write_metadata(str(folder / "metadata.json"), rows)
    status = validate_data_main(["--train_data_meta", meta_path, "--train_data_dir", str(folder),
                                 "--video_sample_n_frames", "5", "--video_sample_stride", "1",
                                 "--data_cache_dir", str(tmp_path / "cache"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 1
    found = {os.path.basename(p["file"]): (p["kind"], p["detail"]) for p in report["problems"]}
    assert set(found) == {"zero.mp4", "one.mp4", "bomb.png"}
    assert found["zero.mp4"][0] == "unreadable_video"
    assert found["one.mp4"] == ("too_short", found["one.mp4"][1]) and "1 frame" in found["one.mp4"][1]
    assert found["bomb.png"][0] == "unreadable_image" and "too large to decode safely" in found["bomb.png"][1]


def test_training_skips_zero_and_one_frame_clips_and_bombs_with_the_batch_shape_kept(tmp_path):
    folder = tmp_path / "data"
    os.makedirs(folder)
    rng = np.random.default_rng(1)
    for i in range(3):
        write_mp4(str(folder / f"ok{i}.mp4"), rng.integers(0, 255, (12, 48, 64, 3), dtype=np.uint8))
    zero_frame_mp4(str(folder / "zero.mp4"))
    write_mp4(str(folder / "one.mp4"), np.zeros((1, 48, 64, 3), dtype=np.uint8))
    # Sizes in the metadata: no probe runs first, so the broken clips are met while reading, as in a long run.
    rows = [{"file_path": name, "text": name, "type": "video", "width": 64, "height": 48}
            for name in ("ok0.mp4", "ok1.mp4", "ok2.mp4", "zero.mp4", "one.mp4")]
    meta = load_metadata(write_metadata(str(folder / "m.json"), rows), str(folder), cache_dir=str(tmp_path / "c"))
    index = SampleIndex.build(meta, meta.usable, 1, enable_bucket=True)
    dataset = EasyAnimateDataset(meta, index, SampleOptions(FrameSampling(5, 1)), seed=0)
    config = PlanConfig(image_sample_size=32, video_sample_size=32, token_sample_size=32, video_sample_n_frames=5,
                        enable_bucket=True)
    collate = EasyAnimateCollator(config)
    samples = [dataset[int(i)] for i in range(len(dataset))]
    batch = collate(samples)
    assert batch["pixel_values"].shape[:3] == (5, 5, 3) and torch.isfinite(batch["pixel_values"]).all()
    skipped = {os.path.basename(p.file): p.kind for s in samples for p in s["problems"]}
    assert skipped == {"zero.mp4": "unreadable_video", "one.mp4": "too_short"}


def test_a_huge_but_legal_image_is_resized_to_its_bucket(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (6000, 4000), (200, 30, 30)).save(path, compress_level=1)
    rows = [{"file_path": "big.png", "text": "a very large photo", "type": "image"}]
    meta = load_metadata(write_metadata(str(tmp_path / "m.json"), rows), str(tmp_path), cache_dir=str(tmp_path / "c"))
    meta.heights[0], meta.widths[0], meta.num_frames[0] = 4000, 6000, 1
    index = SampleIndex.build(meta, meta.usable, 1, enable_bucket=True)
    dataset = EasyAnimateDataset(meta, index, SampleOptions(FrameSampling(5, 1)), seed=0)
    config = PlanConfig(image_sample_size=64, video_sample_size=64, token_sample_size=64, video_sample_n_frames=5,
                        enable_bucket=True)
    batch = EasyAnimateCollator(config)([dataset[0]])
    _, frames, channels, height, width = batch["pixel_values"].shape
    assert (frames, channels) == (1, 3) and height * width <= 64 * 64 and width > height
    assert height % 16 == 0 and width % 16 == 0
