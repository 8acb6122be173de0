"""Helpers for the data tests: metadata files in every format, synthetic rows, broken files."""

from __future__ import annotations

import csv
import json
import os

import numpy as np

SIZES = ((1080, 1920), (720, 1280), (1920, 1080), (480, 640), (512, 512), (64, 96), (96, 64))


def synthetic_rows(count: int, seed: int = 0, video_share: float = 0.7) -> list[dict]:
    """Rows with width/height (no files behind them): enough for indexing, bucketing and sampling."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        height, width = SIZES[int(rng.integers(len(SIZES)))]
        video = bool(rng.random() < video_share)
        rows.append({
            "file_path": f"clips/{i:06d}.{'mp4' if video else 'jpg'}",
            "text": f"caption number {i}",
            "type": "video" if video else "image",
            "width": width,
            "height": height,
        })
    return rows


def write_metadata(path: str, rows: list[dict], fmt: str | None = None) -> str:
    """Write ``rows`` as a JSON list (indented, like filter_meta_train.py writes it), JSON Lines or CSV."""
    fmt = fmt or os.path.splitext(path)[1].lstrip(".")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if fmt == "json":
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2, ensure_ascii=False)
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        columns = list(dict.fromkeys(key for row in rows for key in row))
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    else:
        raise ValueError(fmt)
    return path


def demo_rows(meta_path: str) -> list[dict]:
    with open(meta_path, encoding="utf-8") as handle:
        return json.load(handle)


def write_broken_files(folder: str) -> dict[str, str]:
    """One file per kind of breakage, relative to ``folder``: {kind: relative path}."""
    from hf_easyanimate.utils.media import write_mp4

    os.makedirs(os.path.join(folder, "broken"), exist_ok=True)
    files = {
        "missing_file": "broken/not_there.mp4",
        "empty_file": "broken/empty.mp4",
        "unreadable_video": "broken/garbage.mp4",
        "unreadable_image": "broken/garbage.png",
        "too_short": "broken/one_frame.mp4",
    }
    open(os.path.join(folder, files["empty_file"]), "wb").close()
    with open(os.path.join(folder, files["unreadable_video"]), "wb") as handle:
        handle.write(np.random.default_rng(0).bytes(4096))
    with open(os.path.join(folder, files["unreadable_image"]), "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    write_mp4(os.path.join(folder, files["too_short"]), np.zeros((1, 64, 64, 3), dtype=np.uint8))
    return files
