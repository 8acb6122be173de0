"""``EasyAnimateDataset``: an index (+ its batch's plan) -> decoded uint8 frames and a caption.

Only the frames the batch will keep are decoded. A sample that cannot be read (missing, empty, corrupt,
too short, unreadable image) is replaced by another one *from the same bucket* (so the batch keeps its
shape), warned about once with its file name, and carried to the trainer in the sample so the run can
report it at the end. With ``strict`` the read error is raised instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .index import SampleIndex
from .metadata import KIND_VIDEO, MetadataTable
from .plan import BatchPlan
from .problems import DataProblem, DataProblemLog
from .video import FrameSampling, SampleReadError, read_image, read_video_clip

logger = logging.getLogger(__name__)

_REPLACEMENT_STREAM = 7919


@dataclass(frozen=True)
class SampleOptions:
    """Per-sample randomness and reading (the flags that act on one clip)."""

    frames: FrameSampling
    text_drop_ratio: float = 0.1
    random_flip: bool = False
    max_replacements: int = 16


class EasyAnimateDataset(Dataset):
    """Map-style dataset over a :class:`SampleIndex`.

    ``dataset[i]`` or ``dataset[(i, plan)]`` (what :class:`BucketBatchSampler` yields) returns
    ``{"frames": uint8 (F, H, W, 3), "text", "type", "index", "row", "available_frames", "plan", "problems"}``:
    ``available_frames`` is how many frames the clip offered before the plan's cap, ``problems`` the samples
    that were skipped to produce this one.
    """

    def __init__(
        self,
        metadata: MetadataTable,
        index: SampleIndex,
        options: SampleOptions,
        seed: int = 0,
        strict: bool = False,
    ) -> None:
        self.metadata = metadata
        self.index = index
        self.options = options
        self.seed = int(seed) & 0xFFFFFFFF
        self.strict = strict
        # What this process learnt about broken rows (each dataloader worker learns on its own).
        self._bad_rows: dict[int, DataProblem] = {}
        # Problems found before training plus, in the trainer's process, the skips batches report.
        self.problems = DataProblemLog()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["problems"] = DataProblemLog()  # workers only report skips through their batches
        return state

    def __len__(self) -> int:
        return len(self.index)

    def kind(self, index: int) -> str:
        return self.index.kind_name(index)

    def __getitem__(self, item) -> dict:
        if isinstance(item, tuple):
            index, plan = int(item[0]), item[1]
        else:
            index, plan = int(item), None
        entropy = plan.entropy if plan is not None and plan.entropy else (self.seed, index)
        problems: list[DataProblem] = []
        tried = {index}
        candidate = index
        for _ in range(self.options.max_replacements + 1):
            row = int(self.index.rows[candidate])
            if row in self._bad_rows:
                problems.append(self._bad_rows[row])
            else:
                try:
                    sample = self._read(candidate, plan, entropy)
                except SampleReadError as error:
                    if self.strict:
                        raise
                    problem = DataProblem.from_error(row, self.metadata.path(row), error)
                    self._bad_rows[row] = problem
                    logger.warning("skipping bad sample (row %d): %s; a sample from the same bucket replaces it",
                                   row, error)
                    problems.append(problem)
                else:
                    sample["problems"] = problems
                    return sample
            candidate = self._replacement(candidate, plan, entropy, tried)
            if candidate is None:
                break
        raise SampleReadError(
            f"no readable sample left to replace index {index} (bucket "
            f"{self.index.bucket_keys[int(self.index.buckets[index])]}); {len(problems)} failed: "
            + "; ".join(p.line() for p in problems[:5])
            + ". Run `hf-easyanimate validate-data` to list every broken file."
        )

    def _replacement(self, failed: int, plan: BatchPlan | None, entropy: tuple[int, ...], tried: set[int]) -> int | None:
        """A not-yet-tried index of the failed one's bucket (deterministic given the batch)."""
        bucket = plan.bucket if plan is not None and plan.bucket >= 0 else int(self.index.buckets[failed])
        members = self.index.members(bucket)
        rng = np.random.default_rng([*entropy, _REPLACEMENT_STREAM, failed])
        for _ in range(8):  # a few random picks first: cheap even for huge buckets
            pick = int(members[rng.integers(len(members))])
            if pick not in tried:
                tried.add(pick)
                return pick
        remaining = np.setdiff1d(members, np.fromiter(tried, dtype=np.int64), assume_unique=False)
        if not len(remaining):
            return None
        pick = int(remaining[rng.integers(len(remaining))])
        tried.add(pick)
        return pick

    def _read(self, index: int, plan: BatchPlan | None, entropy: tuple[int, ...]) -> dict:
        row = int(self.index.rows[index])
        path = self.metadata.path(row)
        rng = np.random.default_rng([*entropy, index])
        if self.index.kinds[index] == KIND_VIDEO:
            limit = plan.decode_limit if plan is not None else None
            frames, available = read_video_clip(path, self.options.frames, rng, limit=limit)
            kind = "video"
        else:
            frames, available, kind = read_image(path), 1, "image"
        text = self.metadata.text(row)
        if rng.random() < self.options.text_drop_ratio:
            text = ""
        if self.options.random_flip and rng.random() < 0.5:
            frames = frames[:, :, ::-1]
        return {
            "frames": torch.from_numpy(np.require(frames, requirements=("C_CONTIGUOUS", "WRITEABLE"))),
            "text": text,
            "type": kind,
            "index": index,
            "row": row,
            "available_frames": int(available),
            "plan": plan,
        }
