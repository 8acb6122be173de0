"""Video files out: one place that writes mp4 (demo data, rendered samples)."""

from __future__ import annotations

import numpy as np


def write_mp4(path: str, frames: np.ndarray, fps: int = 8) -> None:
    """Write (F, H, W, 3) uint8 frames as an H.264 mp4 (even sides required by yuv420p)."""
    import av

    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"{path}: H.264 (yuv420p) needs even frame sides, got {height}x{width}")
    with av.open(path, mode="w", format="mp4") as container:  # explicit: path may be a temporary name
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
