"""Read clips and images as uint8 frames, decoding only the frames that are used (decord), and check files.

Every failure becomes a :class:`SampleReadError` whose ``kind`` says what is wrong (missing, empty, corrupt,
too short, unreadable image) and whose message names the file, so the dataset can skip and report it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np
from PIL import Image

from .problems import EMPTY_FILE, MISSING_FILE, TOO_SHORT, UNREADABLE_IMAGE, UNREADABLE_VIDEO


class SampleReadError(RuntimeError):
    """A sample cannot be read; ``kind`` is one of the names in :mod:`.problems`, the message names the file."""

    def __init__(self, message: str, kind: str = UNREADABLE_VIDEO) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a clip are drawn (``get_batch`` of the original dataset)."""

    n_frames: int
    stride: int
    drop_start: float = 0.1
    drop_end: float = 0.9
    fixed_start: bool = False  # the middle of the usable range, no random draw (cached latents need one window)


def usable_frame_count(clip_length: int, sampling: FrameSampling) -> int:
    """Frames a clip of ``clip_length`` yields: ``min(n_frames, floor(len * (end - start) / stride))``."""
    span = clip_length * (sampling.drop_end - sampling.drop_start)
    return min(sampling.n_frames, int(span // sampling.stride))


def sample_frame_indices(clip_length: int, sampling: FrameSampling, rng: np.random.Generator) -> list[int]:
    """Frame indices to decode: ``count`` frames ``stride`` apart, starting at a random frame.

    As the original: the window ends before ``drop_end`` of the clip and starts no earlier than
    ``drop_start`` of that end point; a short clip yields fewer frames, and none at all is an error.
    """
    count = usable_frame_count(clip_length, sampling)
    if count <= 0:
        raise SampleReadError(
            f"clip has {clip_length} frame(s), too few for stride {sampling.stride} inside "
            f"[{sampling.drop_start}, {sampling.drop_end}) of the clip",
            TOO_SHORT,
        )
    end = int(sampling.drop_end * clip_length)
    span = min(end, (count - 1) * sampling.stride + 1)
    if end == span:
        start = 0
    else:
        high = end - span
        low = min(int(sampling.drop_start * end), high)
        start = (low + high) // 2 if sampling.fixed_start else int(rng.integers(low, high + 1))
    return np.linspace(start, start + span - 1, count, dtype=int).tolist()


def check_file(path: str) -> int:
    """Size in bytes of ``path``; a missing or zero-byte file raises (a stat, no decoding)."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError as error:
        raise SampleReadError(f"{path}: file does not exist", MISSING_FILE) from error
    except OSError as error:
        raise SampleReadError(f"{path}: cannot stat file: {error}", MISSING_FILE) from error
    if size == 0:
        raise SampleReadError(f"{path}: file is empty (0 bytes)", EMPTY_FILE)
    return size


# --- FFmpeg's and decord's own log -------------------------------------------------------------------------------
# FFmpeg and decord print lines such as "[mov,mp4,... @ 0x55...] moov atom not found" or "[12:00:00]
# .../video_reader.cc:83: ERROR opening: ..." straight to the process's stderr, in C, where Python logging cannot
# catch them; with many broken clips they flood the training log. Every decord call therefore runs with fd 2
# captured: on failure those lines become part of the error (and so of the problem report), on success FFmpeg's
# chatter is dropped and anything else that was written meanwhile is passed on to the real stderr.
_CAPTURE_LOCK = threading.Lock()
_DECORD_PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\] \S+?:\d+: ")
_FFMPEG_LINE = re.compile(r"^\[[^\]]* @ 0x[0-9a-f]+\] ")


class _Captured:
    text = ""

    def lines(self, limit: int = 4) -> str:
        """FFmpeg's and decord's lines, addresses and source prefixes stripped, duplicates dropped."""
        found = []
        for line in self.text.splitlines():
            line = line.strip()
            if _FFMPEG_LINE.match(line):
                found.append(re.sub(r" @ 0x[0-9a-f]+\]", "]", line))
            elif _DECORD_PREFIX.match(line):
                found.append(_DECORD_PREFIX.sub("", line))
        return "; ".join(list(dict.fromkeys(found))[-limit:])


_PHASE = {"active": 0}


def _pass_on_others(text: str) -> None:
    """Re-emit captured lines that are not FFmpeg's or decord's: someone else (another thread) wrote them."""
    others = [line for line in text.splitlines(keepends=True)
              if line.strip() and not (_FFMPEG_LINE.match(line.strip()) or _DECORD_PREFIX.match(line.strip()))]
    if others:
        sys.stderr.write("".join(others))


@contextlib.contextmanager
def _fd2_to(sink) -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _stderr_captured() -> Iterator[_Captured]:
    """Run one decord call with the process's fd 2 going to a temporary file (one call at a time per process).

    Inside :func:`quiet_decoding` (threads decoding in parallel) fd 2 is already captured for the whole phase, so
    this does nothing and the phase diagnoses failures afterwards.
    """
    captured = _Captured()
    if _PHASE["active"]:
        yield captured
        return
    with _CAPTURE_LOCK, tempfile.TemporaryFile() as sink:
        with _fd2_to(sink):
            yield captured
        sink.seek(0)
        captured.text = sink.read().decode("utf-8", "replace")
    _pass_on_others(captured.text)


@contextlib.contextmanager
def quiet_decoding() -> Iterator[TextIO]:
    """For a phase of parallel decoding threads: fd 2 goes to a sink for the whole phase (no per-call lock, so the
    threads stay parallel); yields a stream on the real stderr for progress bars. Lines FFmpeg/decord printed are
    dropped; re-read a failed file outside the phase to get its own lines into the error."""
    with _CAPTURE_LOCK, tempfile.TemporaryFile() as sink:
        progress = os.fdopen(os.dup(2), "w", buffering=1)
        try:
            with _fd2_to(sink):
                _PHASE["active"] += 1
                try:
                    yield progress
                finally:
                    _PHASE["active"] -= 1
        finally:
            progress.close()
        sink.seek(0)
        text = sink.read().decode("utf-8", "replace")
    _pass_on_others(text)


def _clean(message: object) -> str:
    """A decord error without its source-file prefix ("[12:00:00] /github/.../video_reader.cc:83: ")."""
    return re.sub(r"\[\d\d:\d\d:\d\d\] \S+?:\d+: ", "", str(message)).strip()


def _read_error(path: str, what: str, error: Exception, captured: _Captured) -> SampleReadError:
    detail = captured.lines()
    return SampleReadError(f"{path}: {what}: {_clean(error)}" + (f" ({detail})" if detail else ""), UNREADABLE_VIDEO)


def open_video(path: str, num_threads: int = 1):
    """A decord reader (one decode thread: dataloader workers already run in parallel)."""
    import decord

    check_file(path)
    with _stderr_captured() as captured:
        try:
            return decord.VideoReader(path, num_threads=num_threads)
        except Exception as error:  # decord raises DECORDError / RuntimeError for corrupt containers
            failure = error
    raise _read_error(path, "cannot open video", failure, captured) from failure


def decode_frames(reader, path: str, indices: Sequence[int]) -> np.ndarray:
    """Decode only ``indices`` as a (F, H, W, 3) uint8 RGB array."""
    with _stderr_captured() as captured:
        try:
            frames = reader.get_batch(list(indices)).asnumpy()
        except Exception as error:
            failure = error
        else:
            failure = None
    if failure is not None:
        raise _read_error(path, f"cannot decode frames {list(indices)[:4]}...", failure, captured) from failure
    if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3:
        raise SampleReadError(f"{path}: decoder returned frames of shape {frames.shape}", UNREADABLE_VIDEO)
    return frames


def read_video_clip(
    path: str, sampling: FrameSampling, rng: np.random.Generator, limit: int | None = None
) -> tuple[np.ndarray, int]:
    """(first ``limit`` of the sampled frames, how many were sampled): frames past ``limit`` are not decoded."""
    reader = open_video(path)
    try:
        indices = sample_frame_indices(len(reader), sampling, rng)
    except SampleReadError as error:
        raise SampleReadError(f"{path}: {error}", error.kind) from None
    available = len(indices)
    if limit is not None:
        indices = indices[: max(1, limit)]
    return decode_frames(reader, path, indices), available


def read_video_frames(path: str, indices: Sequence[int] | None = None) -> np.ndarray:
    """Decode ``indices`` (every frame if None) of ``path``: the naive reader, for tests and benchmarks."""
    reader = open_video(path)
    return decode_frames(reader, path, range(len(reader)) if indices is None else indices)


def _image_error(path: str, error: Exception) -> SampleReadError:
    """A read error for an image; a decompression bomb (or a header claiming a giant size) says so plainly."""
    if isinstance(error, Image.DecompressionBombError):
        return SampleReadError(
            f"{path}: image is too large to decode safely ({error}); downscale it, or raise "
            f"PIL.Image.MAX_IMAGE_PIXELS (now {Image.MAX_IMAGE_PIXELS}) if you trust the file",
            UNREADABLE_IMAGE,
        )
    return SampleReadError(f"{path}: cannot read image: {error}", UNREADABLE_IMAGE)


def read_image(path: str) -> np.ndarray:
    """Read an image as a (1, H, W, 3) uint8 RGB array (no EXIF rotation, like the original).

    PIL refuses images over twice ``Image.MAX_IMAGE_PIXELS`` when it reads the header, before any pixel is
    allocated, so a hostile file costs nothing; it becomes an ``unreadable_image`` problem like any other.
    """
    check_file(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))[None]
    except Exception as error:
        raise _image_error(path, error) from error


def probe_file(path: str, is_video: bool) -> tuple[int, int, int]:
    """(height, width, frames) of a file, decoding at most one frame (images: header only, frames 1)."""
    if is_video:
        reader = open_video(path)
        length = len(reader)
        if length == 0:
            raise SampleReadError(f"{path}: video has no frames", UNREADABLE_VIDEO)
        height, width = decode_frames(reader, path, [0]).shape[1:3]
        return int(height), int(width), int(length)
    check_file(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception as error:
        raise _image_error(path, error) from error
    return int(height), int(width), 1


def inspect_file(path: str, is_video: bool, sampling: FrameSampling) -> tuple[int, int, int]:
    """The up-front check of ``--strict_data`` and ``validate-data``: open, length, decode first and last frame.

    Images are fully decoded. Returns what :func:`probe_file` returns, so a check doubles as a probe.
    """
    if not is_video:
        image = read_image(path)
        return int(image.shape[1]), int(image.shape[2]), 1
    reader = open_video(path)
    length = len(reader)
    if usable_frame_count(length, sampling) <= 0:
        raise SampleReadError(
            f"{path}: clip has {length} frame(s), too few for stride {sampling.stride} inside "
            f"[{sampling.drop_start}, {sampling.drop_end}) of the clip",
            TOO_SHORT,
        )
    frames = decode_frames(reader, path, sorted({0, length - 1}))
    return int(frames.shape[1]), int(frames.shape[2]), int(length)
