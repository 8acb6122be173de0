"""Batch sampler whose every batch comes from one (type, aspect-ratio) bucket."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler

from .buckets import closest_ratio


def bucket_key(kind: str, height: int, width: int, enable_bucket: bool) -> tuple[str, str]:
    """Images and videos never share a batch; with buckets, neither do aspect ratios."""
    return kind, closest_ratio(height, width) if enable_bucket else "square"


class BucketBatchSampler(Sampler[list[int]]):
    """Shuffles indices with (seed, epoch), groups them by bucket, yields full batches.

    The batch order is a pure function of (seed, epoch), so a resumed run replays the same batches.
    Distribution across processes is left to ``accelerate`` (which hands whole batches to each rank).
    """

    def __init__(
        self,
        keys: Sequence[tuple[str, str]],
        batch_size: int,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.keys = list(keys)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self._cached: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        if self._cached is None or self._cached[0] != self.epoch:
            self._cached = (self.epoch, self._plan_epoch())
        return self._cached[1]

    def _plan_epoch(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.keys)))
        rng.shuffle(order)
        pending: dict[tuple[str, str], list[int]] = {}
        batches: list[list[int]] = []
        for index in order:
            bucket = pending.setdefault(self.keys[index], [])
            bucket.append(index)
            if len(bucket) == self.batch_size:
                batches.append(bucket[:])
                bucket.clear()
        if not self.drop_last:
            batches.extend(bucket for bucket in pending.values() if bucket)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        return len(self._batches())
