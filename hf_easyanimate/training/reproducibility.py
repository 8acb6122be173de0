"""Every random draw of a training step is a pure function of (seed, epoch, sample index).

Why: Trainer restores the global RNG state on resume, but not at the point where the uninterrupted run
was: the data loader runs one batch ahead, resume skips batches without loading them, and DDP ranks each
hold their own RNG stream. Keying the randomness by *which samples* are being processed instead of *how
many draws came before* makes three things hold by construction:

* a run killed after step k and resumed from ``checkpoint-k`` replays frame sampling, crops, text drop,
  timesteps and noise of every later step exactly;
* the same micro-batch gets the same noise whether it runs on rank 1 of a 2-process job or as the second
  accumulation step of a 1-process job, so the two layouts train the same model;
* the data side (dataset, collator, mask generators) and the objectives keep using the ordinary global
  ``random`` / ``numpy`` / ``torch`` generators; nothing has to thread a generator through.

The sampler yields :class:`SampleKey` (epoch, index) pairs; the dataset wrapper seeds each sample from its
key, the collator wrapper seeds each batch from its keys and attaches them as ``batch["sample_keys"]``, and
the trainer seeds the training step from them.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

SAMPLE_KEYS = "sample_keys"


class SampleKey(NamedTuple):
    epoch: int
    index: int


def derive_seed(seed: int, purpose: str, *parts: int) -> int:
    """A 63-bit seed from the run seed, what it is for, and integers (stable across processes and runs)."""
    digest = hashlib.blake2b(repr((int(seed), purpose, *map(int, parts))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def seeded_rngs(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Seed Python, NumPy, torch-CPU (and ``device``'s torch generator) for the block, then restore all of them."""
    device = torch.device(device) if device is not None else None
    accelerator = device if device is not None and device.type not in ("cpu", "meta") else None
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [accelerator] if accelerator is not None and accelerator.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.random.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(accelerator):
                torch.cuda.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def step_seed(seed: int, keys: Sequence[Sequence[int]]) -> int:
    """Seed of one micro-batch's training step (timesteps, noise, VAE posterior sample, dropout)."""
    flat = [int(value) for key in keys for value in key]
    return derive_seed(seed, "step", *flat)


class ReplayableBatchSampler(Sampler[list[SampleKey]]):
    """Wraps a batch sampler; yields the same batches with each index replaced by its (epoch, index) key.

    Items of the inner sampler are indices or ``(index, plan)`` pairs (:class:`BucketBatchSampler`); a plan
    travels on unchanged beside its key.
    """

    def __init__(self, inner: Sampler[list[int]]) -> None:
        self.inner = inner
        self.epoch = int(getattr(inner, "epoch", 0))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        epoch = self.epoch
        for batch in self.inner:
            yield [
                (SampleKey(epoch, int(item[0])), *item[1:]) if isinstance(item, tuple) else SampleKey(epoch, int(item))
                for item in batch
            ]

    def __len__(self) -> int:
        return len(self.inner)


class ReplayableDataset(Dataset):
    """Loads ``dataset[key.index]`` with the global RNGs seeded from the key, and tags the sample with it.

    ``set_epoch`` (called by accelerate's data loader) forwards to the batch sampler, so the epoch is right
    even where accelerate's sampler wrappers do not pass it on (resumed multi-process runs).
    """

    def __init__(self, dataset: Dataset, seed: int, batch_sampler: ReplayableBatchSampler | None = None) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.batch_sampler = batch_sampler

    def set_epoch(self, epoch: int) -> None:
        if self.batch_sampler is not None:
            self.batch_sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # sizes, kind(), metadata, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, item: SampleKey | tuple[SampleKey, Any]) -> dict:
        key, extra = (item[0], item[1:]) if isinstance(item[0], tuple) else (item, ())
        epoch, index = key
        with seeded_rngs(derive_seed(self.seed, "sample", epoch, index)):
            sample = self.dataset[(index, *extra) if extra else index]
        sample = dict(sample)
        sample["sample_key"] = (int(epoch), int(index))
        return sample


class ReplayableCollator:
    """Collates with the RNGs seeded from the batch's keys (per-batch draws: sizes, masks) and keeps the keys."""

    def __init__(self, collator: Any, seed: int) -> None:
        self.collator = collator
        self.seed = int(seed)

    def __getattr__(self, name: str) -> Any:
        if name == "collator":
            raise AttributeError(name)
        return getattr(self.collator, name)

    def __call__(self, samples: list[dict]) -> dict:
        keys = [sample.pop("sample_key") for sample in samples]
        with seeded_rngs(derive_seed(self.seed, "collate", *(value for key in keys for value in key))):
            batch = self.collator(samples)
        batch[SAMPLE_KEYS] = torch.tensor(keys, dtype=torch.long)
        return batch
