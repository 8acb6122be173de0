"""Metadata: every format gives the same table; row checks; paths; probing once, cached by content."""

from __future__ import annotations

import json
import os

import datasets
import numpy as np
import pytest
from datatools import demo_rows, synthetic_rows, write_broken_files, write_metadata

from hf_easyanimate.config import DataArguments
from hf_easyanimate.data import MetadataError, SampleIndex, load_metadata, prepare_index
from hf_easyanimate.data.metadata import KIND_IMAGE, KIND_VIDEO, _json_list_to_jsonl
from hf_easyanimate.data.probe import probe_cache_path

TRICKY_ROWS = [
    {"file_path": "a/clip, with comma.mp4", "text": 'He said "hi",\nthen left.', "type": "video", "width": 1280,
     "height": 720, "num_frames": 120},
    {"file_path": "/abs/image.png", "text": "中文标题 émoji ✓", "type": "Image ", "width": 512, "height": 768,
     "num_frames": None},
    {"file_path": "b.MOV", "text": "no type: guessed from the extension", "width": 1920, "height": 1080,
     "num_frames": 48},
]


def table_view(meta):
    return {
        "paths": [meta.path(r) for r in range(len(meta))],
        "texts": [meta.text(r) for r in range(len(meta))],
        "kinds": meta.kinds.tolist(),
        "heights": meta.heights.tolist(),
        "widths": meta.widths.tolist(),
        "frames": meta.num_frames.tolist(),
        "problems": meta.row_problems.tolist(),
    }


def test_json_jsonl_and_csv_yield_identical_datasets(tmp_path):
    rows = TRICKY_ROWS + synthetic_rows(200, seed=1)
    views, buckets = [], []
    for fmt in ("json", "jsonl", "csv"):
        meta = load_metadata(write_metadata(str(tmp_path / f"meta.{fmt}"), rows), data_dir="/data")
        views.append(table_view(meta))
        index = SampleIndex.build(meta, meta.usable, video_repeat=2, enable_bucket=True)
        buckets.append((index.rows.tolist(), index.buckets.tolist(), index.bucket_keys))
    assert views[0] == views[1] == views[2]
    assert buckets[0] == buckets[1] == buckets[2]
    view = views[0]
    assert view["paths"][:2] == ["/data/a/clip, with comma.mp4", "/abs/image.png"]  # absolute paths win
    assert view["texts"][:2] == ['He said "hi",\nthen left.', "中文标题 émoji ✓"]
    assert view["kinds"][:3] == [KIND_VIDEO, KIND_IMAGE, KIND_VIDEO]
    assert (view["heights"][:3], view["widths"][:3], view["frames"][:3]) == ([720, 768, 1080], [1280, 512, 1920],
                                                                           [120, -1, 48])


def test_json_list_streams_to_json_lines_across_chunk_boundaries(tmp_path):
    rows = TRICKY_ROWS * 5 + [{"file_path": "x.mp4", "text": "]} tricky [{ braces", "type": "video"}]
    source = write_metadata(str(tmp_path / "m.json"), rows)
    for chunk in (3, 17, 1 << 20):
        target = str(tmp_path / f"m{chunk}.jsonl")
        assert _json_list_to_jsonl(source, target, chunk_chars=chunk) == len(rows)
        with open(target, encoding="utf-8") as handle:
            assert [json.loads(line) for line in handle] == rows


@pytest.mark.parametrize(
    ("content", "message"),
    [('[{"file_path": "a.mp4", "text": "x"}, {"file_path": ', "invalid JSON in row 1"),
     ('[{"file_path": "a.mp4", "text": "x"}, 5]', "row 1 is a int"),
     ('{"rows": []}', "holds one JSON object"),
     ("file_path,text\n", "is not JSON"),
     ('[{"file_path": "a.mp4", "text": "x"},\n{"file_path" "b.mp4"}]', "invalid JSON in row 1")],
)
def test_broken_json_fails_naming_the_row(tmp_path, content, message):
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(MetadataError, match=message):
        load_metadata(str(path), cache_dir=str(tmp_path / "cache"))


def test_unusable_metadata_files(tmp_path):
    with pytest.raises(MetadataError, match="does not exist"):
        load_metadata(str(tmp_path / "nope.json"))
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(MetadataError, match="unsupported metadata format"):
        load_metadata(str(tmp_path / "m.txt"))
    write_metadata(str(tmp_path / "m.jsonl"), [{"path": "a.mp4", "caption": "x"}])
    with pytest.raises(MetadataError, match=r"missing column\(s\) \['file_path', 'text'\]"):
        load_metadata(str(tmp_path / "m.jsonl"))


def test_row_level_problems_are_flagged_with_what_was_found(tmp_path):
    rows = [
        {"file_path": "ok.mp4", "text": "fine", "type": "video"},
        {"file_path": "", "text": "no path", "type": "video"},
        {"file_path": "empty_text.mp4", "text": "   ", "type": "video"},
        {"file_path": "number.mp4", "text": 5, "type": "video"},
        {"file_path": "null.png", "text": None, "type": "image"},
        {"file_path": "typo.mp4", "text": "type typo", "type": "vid"},
        {"text": "no file_path key", "type": "image"},
    ]
    meta = load_metadata(write_metadata(str(tmp_path / "m.json"), rows), data_dir=str(tmp_path),
                         cache_dir=str(tmp_path / "cache"))
    assert meta.usable.tolist() == [True, False, False, False, False, False, False]
    found = {p.row: (p.kind, p.detail) for p in meta.problems()}
    assert found == {
        1: ("missing_file_path", "file_path is missing or empty"),
        2: ("bad_text", "text is empty"),
        3: ("bad_text", "text is not a string: 5"),
        4: ("bad_text", "text is missing"),
        5: ("unknown_type", "type is 'vid'; use 'video' or 'image'"),
        6: ("missing_file_path", "file_path is missing or empty"),
    }
    assert meta.text(0) == "fine" and meta.path(3) == os.path.join(str(tmp_path), "number.mp4")


def test_datasets_folders_parquet_and_max_samples(tmp_path):
    rows = synthetic_rows(30)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "m.parquet"))
    reference = table_view(load_metadata(write_metadata(str(tmp_path / "m.jsonl"), rows)))
    assert table_view(load_metadata(str(tmp_path / "saved"))) == reference
    assert table_view(load_metadata(str(tmp_path / "m.parquet"))) == reference
    first_ten = load_metadata(str(tmp_path / "m.jsonl"), max_samples=10)
    assert len(first_ten) == 10 and first_ten.text(9) == rows[9]["text"]


def test_sizes_are_probed_once_and_cached_beside_the_metadata(demo_data, tmp_path, monkeypatch):
    folder = os.path.dirname(demo_data)
    broken = write_broken_files(str(tmp_path))
    rows = [{**row, "file_path": os.path.join(folder, row["file_path"])} for row in demo_rows(demo_data)]
    rows += [{"file_path": path, "text": kind, "type": "image" if path.endswith(".png") else "video"}
             for kind, path in broken.items()]
    meta_path = write_metadata(str(tmp_path / "meta.json"), rows)
    args = DataArguments(train_data_meta=meta_path, train_data_dir=str(tmp_path), enable_bucket=True,
                         video_sample_stride=2, video_sample_n_frames=9, data_cache_dir=str(tmp_path / "cache"))
    meta, index, problems = prepare_index(args)
    assert {p.kind for p in problems} == set(broken)  # each broken file found by the probe, by name
    assert {os.path.relpath(p.file, tmp_path) for p in problems} == set(broken.values())
    assert len(index) == len(rows) - len(broken)
    good = np.arange(len(rows) - len(broken))  # the demo clips come first
    assert (meta.heights[good] > 0).all() and (meta.num_frames[good] > 0).all()
    cache = probe_cache_path(meta)
    assert os.path.dirname(cache) == str(tmp_path) and os.path.exists(cache)

    calls = []

    def counting_probe(path, is_video):
        calls.append(path)
        raise AssertionError("probed again")

    monkeypatch.setattr("hf_easyanimate.data.probe.probe_file", counting_probe)
    with pytest.raises(AssertionError):  # only the rows that failed last time are probed again
        prepare_index(args)
    assert set(calls) <= {os.path.join(str(tmp_path), p) for p in broken.values()} and calls
    monkeypatch.setattr("hf_easyanimate.data.probe.probe_file", lambda path, is_video: (64, 64, 30))
    meta2, index2, problems2 = prepare_index(args)  # the good rows come from the cache
    assert (meta2.heights == meta.heights)[good].all()
    # The one-frame clip opened fine last time: its cached length still makes it too short.
    assert [p.kind for p in problems2] == ["too_short"] and len(index2) == len(rows) - 1
