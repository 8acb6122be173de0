"""Writing frames to disk: mp4 clips, contact sheets, and an atomic-write helper used for both.

Everything here writes through :func:`atomic_path`, so a full disk or a crash leaves either the
previous file or no file, never a half-written one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .atomic import atomic_path

# Layout of validation samples in a run folder (written by callbacks.py, read by report.py).
VALIDATION_DIR = "validation"
CONTACT_SHEET = "contact_sheet.png"
METRICS_FILE = "metrics.json"  # CLIP metrics of one validation step (callbacks.py writes, report.py reads)


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad height/width to even sizes (yuv420p needs them) by repeating the last row/column."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def write_mp4(path: str, frames: np.ndarray, fps: int = 8) -> None:
    """Write (F, H, W, 3) uint8 frames as an H.264 mp4 with PyAV (odd sides are padded to even)."""
    import av

    frames = _even(np.ascontiguousarray(frames))
    height, width = frames.shape[1:3]
    with atomic_path(path) as temporary:
        with av.open(temporary, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": "18"}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def to_uint8_frames(video: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) floats in [0, 1] (a diffusers ``output_type="np"`` video) -> uint8."""
    return (np.clip(np.nan_to_num(video, nan=0.0), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def pick_frames(num_frames: int, columns: int) -> list[int]:
    """Up to ``columns`` frame indices spread evenly from the first to the last frame."""
    if num_frames <= columns:
        return list(range(num_frames))
    return np.linspace(0, num_frames - 1, columns).round().astype(int).tolist()


def printable(text: str) -> str:
    """``text`` with lone surrogates (a split emoji in scraped captions) replaced, safe for fonts and files."""
    return text.encode("utf-8", "replace").decode("utf-8")


MIN_SHEET_FRAME = 256  # px: smaller frames (tiny models, low-res validation) are enlarged to stay readable


def enlarged(video: np.ndarray, min_side: int = MIN_SHEET_FRAME) -> np.ndarray:
    """(F, H, W, 3) frames scaled up by a whole factor (nearest neighbour, pixels stay crisp) to >= ``min_side``."""
    factor = -(-min_side // max(1, min(video.shape[1:3])))
    return video if factor <= 1 else video.repeat(factor, axis=1).repeat(factor, axis=2)


def caption_font():
    """A 16 px FreeType font where Pillow has one, else PIL's bitmap default."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=16)  # FreeType build of Pillow >= 10.1
    except (TypeError, OSError):
        return ImageFont.load_default()


def contact_sheet(videos: Sequence[np.ndarray], captions: Sequence[str], columns: int = 8,
                  caption_height: int = 22) -> np.ndarray:
    """One row per video: a caption strip above up to ``columns`` evenly spaced frames.

    Videos are (F, H, W, 3) uint8 and may differ in size; frames under 256 px are enlarged to at least that, and
    each row is as tall as its frames. Returns the sheet as an (H, W, 3) uint8 array (what TensorBoard's
    ``add_image`` and PIL both take).
    """
    from PIL import Image, ImageDraw

    if not videos:
        raise ValueError("contact_sheet needs at least one video")
    gap = 2
    rows = []
    font = caption_font()
    for video, caption in zip(videos, captions):
        frames = enlarged(np.asarray(video)[pick_frames(len(video), columns)])
        last = len(frames) - 1
        strip = np.concatenate(
            [np.pad(frame, ((0, 0), (0, gap if n < last else 0), (0, 0))) for n, frame in enumerate(frames)], axis=1
        )
        label = Image.new("RGB", (strip.shape[1], caption_height), (255, 255, 255))
        text = printable(caption)
        text = text if len(text) <= 120 else text[:117] + "..."
        ImageDraw.Draw(label).text((4, 2), text, fill=(0, 0, 0), font=font)
        rows.append(np.concatenate([np.asarray(label), strip], axis=0))
    width = max(row.shape[1] for row in rows)
    padded = [np.pad(row, ((0, gap), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return np.concatenate(padded, axis=0)[:-gap]


def write_png(path: str, image: np.ndarray) -> None:
    """Save an (H, W, 3) uint8 array as PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as temporary:
        Image.fromarray(image).save(temporary, format="PNG")
