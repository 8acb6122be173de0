"""Read clips and images as uint8 frames, decoding only the frames that are sampled (decord)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".flv", ".m4v")


class SampleReadError(RuntimeError):
    """A sample cannot be read (missing, corrupt, too short); the message names the file."""


def sample_frame_indices(
    clip_length: int,
    n_frames: int,
    stride: int,
    drop_start: float = 0.1,
    drop_end: float = 0.9,
    rng: random.Random | None = None,
) -> list[int]:
    """Frame indices to decode, as EasyAnimate's ``get_batch`` picks them.

    Frames come from ``[drop_start, drop_end)`` of the clip, every ``stride``-th frame; a clip too short
    for ``n_frames`` yields as many as fit. The start is uniform over the positions that fit.
    """
    rng = rng or random
    usable = int(clip_length * (drop_end - drop_start)) // stride
    count = min(n_frames, usable)
    if count <= 0:
        raise SampleReadError(
            f"clip has {clip_length} frames, too few for stride {stride} inside [{drop_start}, {drop_end})"
        )
    end = int(drop_end * clip_length)
    span = min(end, (count - 1) * stride + 1)
    low = int(drop_start * clip_length)
    start = rng.randint(low, end - span) if end != span else 0
    return np.linspace(start, start + span - 1, count, dtype=int).tolist()


def read_video_frames(path: str, indices: Sequence[int] | None = None) -> np.ndarray:
    """Decode ``indices`` (all frames if None) of ``path`` as a (F, H, W, 3) uint8 array."""
    import decord

    try:
        reader = decord.VideoReader(path, num_threads=1)
        if indices is None:
            indices = range(len(reader))
        frames = reader.get_batch(list(indices)).asnumpy()
    except Exception as error:  # decord raises its own DECORDError and RuntimeError types
        raise SampleReadError(f"cannot decode video {path}: {error}") from error
    return frames


def video_length(path: str) -> int:
    """Number of frames in a clip (reads only the container index)."""
    import decord

    try:
        return len(decord.VideoReader(path, num_threads=1))
    except Exception as error:
        raise SampleReadError(f"cannot open video {path}: {error}") from error


def read_image(path: str) -> np.ndarray:
    """Read an image as a (1, H, W, 3) uint8 array."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))[None]
    except Exception as error:
        raise SampleReadError(f"cannot read image {path}: {error}") from error


def probe_size(path: str, kind: str) -> tuple[int, int]:
    """(height, width) of a video or image without decoding pixels where possible."""
    if kind == "video":
        import decord

        try:
            reader = decord.VideoReader(path, num_threads=1)
            height, width = reader[0].shape[:2]
        except Exception as error:
            raise SampleReadError(f"cannot open video {path}: {error}") from error
        return int(height), int(width)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception as error:
        raise SampleReadError(f"cannot read image {path}: {error}") from error
    return int(height), int(width)
