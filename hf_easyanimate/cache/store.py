"""Safetensors shards of cached tensors: written atomically, indexed by key on open, read lazily (mmap).

Each shard holds many entries; an entry ``key`` is the tensors named ``key/<name>`` plus a JSON dict in the
shard's metadata. Shards are written under a temporary name and renamed, so a killed precompute leaves only
complete shards, and a rerun skips every key they hold.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import uuid

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..utils.atomic import atomic_path
from ..utils.files import safetensors_problem

logger = logging.getLogger(__name__)

SHARD_GLOB = "*.safetensors"
_INFO = "entries"


class LatentCache:
    """Read side: which keys exist, and their tensors and info; picklable (open files are per process)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._where: dict[str, str] = {}
        self._info: dict[str, dict] = {}
        self._handles: dict[str, object] = {}
        self.damaged: dict[str, str] = {}  # shard -> what is wrong with it
        self.refresh()

    def refresh(self) -> None:
        """Index every complete shard (headers only). A damaged shard (truncated, overwritten) is left out with one
        warning naming it: its entries count as missing, which ``precompute`` encodes again."""
        for path in sorted(glob.glob(os.path.join(self.directory, SHARD_GLOB))):
            if path in self._where.values() or path in self.damaged:
                continue
            problem = safetensors_problem(path)
            info = None
            if problem is None:
                with safe_open(path, framework="pt") as shard:
                    try:
                        info = json.loads((shard.metadata() or {}).get(_INFO, "{}"))
                    except ValueError:
                        problem = "its index of entries is not valid JSON"
            if problem is not None:
                self.damaged[path] = problem
                logger.warning("latent cache shard %s is left out: %s; `hf-easyanimate precompute` encodes its entries "
                               "again", path, problem)
                continue
            for key, value in info.items():
                known = self._info.get(key)
                if known is not None and set(value["tensors"]) <= set(known["tensors"]):
                    continue  # an entry re-encoded with more tensors wins, whichever shard sorts first
                self._where[key] = path
                self._info[key] = value

    def set_damaged_aside(self) -> list[str]:
        """Rename the damaged shards out of the index (``NAME.damaged``), so a fresh precompute replaces them; only with
        the cache's lock held. Returns the new names."""
        moved = []
        for path in list(self.damaged):
            os.replace(path, path + ".damaged")
            moved.append(path + ".damaged")
            del self.damaged[path]
        return moved

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def __len__(self) -> int:
        return len(self._where)

    def info(self, key: str) -> dict:
        return self._info[key]

    def load(self, key: str) -> dict[str, torch.Tensor]:
        """The tensors of ``key`` by name (``KeyError`` naming the cache folder when missing)."""
        path = self._where.get(key)
        if path is None:
            raise KeyError(f"{key} is not in the latent cache {self.directory}; run `hf-easyanimate precompute`")
        shard = self._handles.get(path)
        if shard is None:
            shard = self._handles[path] = safe_open(path, framework="pt")
        names = self._info[key]["tensors"]
        return {name: shard.get_tensor(f"{key}/{name}") for name in names}


class ShardWriter:
    """Write side: collects entries and writes a shard every ``entries_per_shard`` of them (and on close)."""

    def __init__(self, directory: str, prefix: str, entries_per_shard: int = 64) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.prefix = prefix
        self.entries_per_shard = entries_per_shard
        self._tensors: dict[str, torch.Tensor] = {}
        self._info: dict[str, dict] = {}
        self.written = 0

    def add(self, key: str, tensors: dict[str, torch.Tensor], **info) -> None:
        for name, tensor in tensors.items():
            self._tensors[f"{key}/{name}"] = tensor.detach().to("cpu").contiguous()
        self._info[key] = {**info, "tensors": sorted(tensors)}
        if len(self._info) >= self.entries_per_shard:
            self.flush()

    def flush(self) -> None:
        """Write the pending entries as one shard: temporary name, then an atomic rename."""
        if not self._info:
            return
        name = f"{self.prefix}-{uuid.uuid4().hex[:12]}.safetensors"
        # The temporary name starts with a dot, so SHARD_GLOB never sees a half-written shard.
        with atomic_path(os.path.join(self.directory, name)) as temporary:
            save_file(self._tensors, temporary, metadata={_INFO: json.dumps(self._info)})
        self.written += len(self._info)
        self._tensors, self._info = {}, {}

    def close(self) -> None:
        self.flush()
