"""Exact accounting of live tensor bytes while code runs: what the memory planner predicts, and how its
predictions are checked on CPU.

A ``TorchDispatchMode`` sees every tensor an operator returns; each new storage is counted until the last tensor
holding it is gone (autograd keeps the tensors it saves alive, so they stay counted until the backward pass uses
them). Works the same on real tensors and on ``meta`` tensors, which have sizes but no memory: tracing a step of
the real 12B model on the meta device costs nothing and counts what the GPU would hold.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def storage_bytes(tensor: torch.Tensor) -> int:
    try:
        return int(tensor.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):  # sparse / wrapper tensors
        return tensor.numel() * tensor.element_size()


class LiveBytes(TorchDispatchMode):
    """Counts bytes of the storages created inside the mode that are still referenced; keeps the peak.

    ``baseline`` adds bytes that exist before (weights), so ``peak`` is comparable with a device's peak.
    """

    def __init__(self, baseline: int = 0) -> None:
        super().__init__()
        self.baseline = baseline
        self.current = 0
        self.peak = 0
        self._storages: dict[int, list] = {}  # storage key -> [bytes, live tensor count]

    @property
    def peak_total(self) -> int:
        return self.baseline + self.peak

    def _track(self, tensor: torch.Tensor) -> None:
        key = _key(tensor)
        if key is None:
            return
        entry = self._storages.get(key)
        if entry is None:
            entry = self._storages[key] = [storage_bytes(tensor), 0]
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        entry = self._storages.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self._storages[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        inputs = {_key(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for tensor in tree_flatten(output)[0]:
            # views and in-place results share an input's storage (a weight's transpose, an activation's view):
            # that storage is counted where it was made (or is a weight, outside the count), not again here
            if isinstance(tensor, torch.Tensor) and _key(tensor) not in inputs:
                self._track(tensor)
            elif isinstance(tensor, torch.Tensor) and _key(tensor) in self._storages:
                self._track(tensor)  # one more live holder of a counted storage
        return output


def _key(tensor: torch.Tensor) -> int | None:
    try:
        return tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):
        return None
