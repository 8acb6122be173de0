"""Metadata rows -> decoded uint8 frames + caption. Sizing happens per batch, in the collator."""

from __future__ import annotations

import random
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from torch.utils.data import Dataset

from .video import probe_size, read_image, read_video_frames, sample_frame_indices, video_length


@dataclass(frozen=True)
class FrameSampling:
    """How frames are drawn from a clip (the data flags that act per sample)."""

    n_frames: int
    stride: int
    drop_start: float = 0.1
    drop_end: float = 0.9
    text_drop_ratio: float = 0.1


class EasyAnimateDataset(Dataset):
    """Index over metadata rows (video rows repeated ``video_repeat`` extra times)."""

    def __init__(self, metadata: datasets.Dataset, sampling: FrameSampling, video_repeat: int = 0) -> None:
        self.metadata = metadata
        self.sampling = sampling
        self.paths: list[str] = metadata["file_path"]
        self.texts: list[str] = metadata["text"]
        self.types: list[str] = [str(kind or "image").lower() for kind in metadata["type"]]
        self.rows: list[int] = []
        for row, kind in enumerate(self.types):
            self.rows.extend([row] * (1 + video_repeat if kind == "video" else 1))
        self._sizes: list[tuple[int, int]] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(height, width) per index: from `height`/`width` columns when present, else probed once."""
        if self._sizes is None:
            columns = self.metadata.column_names
            if "height" in columns and "width" in columns:
                per_row = list(zip(self.metadata["height"], self.metadata["width"]))
            else:
                per_row = [probe_size(path, kind) for path, kind in zip(self.paths, self.types)]
            self._sizes = [per_row[row] for row in self.rows]
        return self._sizes

    def kind(self, index: int) -> str:
        return self.types[self.rows[index]]

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        path, kind = self.paths[row], self.types[row]
        if kind == "video":
            indices = sample_frame_indices(
                video_length(path),
                self.sampling.n_frames,
                self.sampling.stride,
                self.sampling.drop_start,
                self.sampling.drop_end,
            )
            frames = read_video_frames(path, indices)
        else:
            frames = read_image(path)
        text = self.texts[row]
        if random.random() < self.sampling.text_drop_ratio:
            text = ""
        return {"frames": torch.from_numpy(np.require(frames, requirements="W")), "text": text, "type": kind, "index": index}
