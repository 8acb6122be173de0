"""The training index: which metadata row each dataset index reads, and which bucket it belongs to.

Columnar (numpy), so a million rows cost a few megabytes and bucketing is a handful of vector operations.
A bucket is (image | video, aspect-ratio key) with ``--enable_bucket``, or just image | video without.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .buckets import RATIO_KEYS, closest_ratio_indices, downscaled_sizes
from .metadata import KIND_IMAGE, KIND_NAMES, KIND_VIDEO, MetadataTable

SQUARE = "square"  # the ratio "key" of every bucket when --enable_bucket is off


@dataclass
class SampleIndex:
    """Per dataset index: metadata row, kind, size; plus the bucket table and members of each bucket."""

    rows: np.ndarray  # int64 metadata row of each index
    kinds: np.ndarray  # int8 KIND_IMAGE | KIND_VIDEO
    heights: np.ndarray  # int32, -1 unknown (only without --enable_bucket)
    widths: np.ndarray
    num_frames: np.ndarray  # int32, -1 unknown
    buckets: np.ndarray  # int32 bucket id of each index
    bucket_keys: list[tuple[str, str]]  # bucket id -> (kind name, ratio key or "square")
    _order: np.ndarray  # indices sorted by bucket (stable): members of bucket b are _order[_offsets[b]:_offsets[b+1]]
    _offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def members(self, bucket: int) -> np.ndarray:
        return self._order[self._offsets[bucket] : self._offsets[bucket + 1]]

    def bucket_counts(self) -> np.ndarray:
        return np.diff(self._offsets)

    def kind_name(self, index: int) -> str:
        return KIND_NAMES[int(self.kinds[index])]

    @classmethod
    def build(
        cls, meta: MetadataTable, usable: np.ndarray, video_repeat: int, enable_bucket: bool,
        video_larger_side: int | None = None,
    ) -> SampleIndex:
        """Index over the ``usable`` rows: images once, then every video ``max(1, video_repeat)`` times.

        (The original appends the video list ``video_repeat`` times, so its default 0 silently drops all
        videos; here 0 keeps them once and N >= 1 matches the original.) With ``video_larger_side``
        (max of image and video sample size) a video's bucket is the ratio of its size after the original's
        decode-time downscale, which is the size its batch is trained at (see :func:`downscaled_sizes`).
        """
        usable_rows = np.flatnonzero(usable)
        kinds = meta.kinds[usable_rows]
        images, videos = usable_rows[kinds == KIND_IMAGE], usable_rows[kinds == KIND_VIDEO]
        rows = np.concatenate([images, np.tile(videos, max(1, video_repeat))]).astype(np.int64)
        kinds = meta.kinds[rows].astype(np.int8)
        heights, widths = meta.heights[rows], meta.widths[rows]
        if enable_bucket:
            if (heights <= 0).any() or (widths <= 0).any():
                raise ValueError("bucketing needs every row's height and width; probe them first")
            key_h, key_w = heights, widths
            if video_larger_side:
                small_h, small_w = downscaled_sizes(heights, widths, video_larger_side)
                is_video = kinds == KIND_VIDEO
                key_h, key_w = np.where(is_video, small_h, heights), np.where(is_video, small_w, widths)
            ratio = closest_ratio_indices(key_h, key_w).astype(np.int64)
        else:
            ratio = np.zeros(len(rows), dtype=np.int64)
        # bucket id = (kind, ratio) pairs in order of first appearance of kind, then ratio-table order
        combined = kinds.astype(np.int64) * len(RATIO_KEYS) + ratio
        present, buckets = np.unique(combined, return_inverse=True)
        keys = [
            (KIND_NAMES[int(code // len(RATIO_KEYS))], RATIO_KEYS[int(code % len(RATIO_KEYS))] if enable_bucket else SQUARE)
            for code in present
        ]
        buckets = buckets.astype(np.int32)
        order = np.argsort(buckets, kind="stable")
        offsets = np.concatenate([[0], np.cumsum(np.bincount(buckets, minlength=len(keys)))]).astype(np.int64)
        return cls(rows, kinds, heights, widths, meta.num_frames[rows], buckets, keys, order, offsets)
