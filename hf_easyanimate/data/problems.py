"""Bad data: what is wrong with a row, a log that counts skips, and the end-of-training report.

A broken sample must never crash a run deep inside a step. By default it is skipped (the dataset replaces
it from the same bucket), counted, warned about once with its file name, and totalled when training ends;
``--strict_data`` turns every problem into an error before the first step.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

# Problem names, as they appear in warnings, `validate-data` tables and data_problems.json.
MISSING_FILE_PATH = "missing_file_path"
BAD_TEXT = "bad_text"
UNKNOWN_TYPE = "unknown_type"
MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
UNREADABLE_VIDEO = "unreadable_video"
TOO_SHORT = "too_short"
UNREADABLE_IMAGE = "unreadable_image"
PROBLEM_KINDS = (
    MISSING_FILE_PATH, BAD_TEXT, UNKNOWN_TYPE, MISSING_FILE, EMPTY_FILE, UNREADABLE_VIDEO, TOO_SHORT, UNREADABLE_IMAGE,
)
REPORT_NAME = "data_problems.json"
BATCH_KEY = "data_problems"  # collated batches carry the skips of their samples under this key


class DataProblem(NamedTuple):
    """One bad metadata row: its 0-based row number, file (as resolved; None if absent), kind and detail."""

    row: int
    file: str | None
    kind: str
    detail: str

    @classmethod
    def from_error(cls, row: int, path: str | None, error: Exception) -> DataProblem:
        """From a read error (``SampleReadError``: its ``kind``), without repeating the path in the detail."""
        detail = str(error)
        if path and detail.startswith(f"{path}: "):
            detail = detail[len(path) + 2 :]
        return cls(row, path, getattr(error, "kind", UNREADABLE_VIDEO), detail)

    def line(self) -> str:
        return f"row {self.row}: {self.file or '<no file_path>'}: {self.kind} ({self.detail})"


class DataValidationError(ValueError):
    """The data has problems and ``--strict_data`` (or ``validate-data``) asked to fail; lists them."""

    def __init__(self, problems: list[DataProblem], source: str = "metadata", limit: int = 20) -> None:
        self.problems = problems
        header = f"{source}: {len(problems)} problem(s) found before training"
        more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
        hint = ("\nFix or remove these rows, or drop --strict_data to skip them (they are counted and reported); "
                "`hf-easyanimate validate-data` lists them all.")
        super().__init__(header + ":\n" + format_problem_table(problems[:limit]) + more + hint)


def format_problem_table(problems: Iterable[DataProblem]) -> str:
    """A plain-text table (row, problem, file, detail), one line per problem."""
    problems = list(problems)
    if not problems:
        return "  (no problems)"
    width = max(len(p.kind) for p in problems)
    lines = [f"  {'row':>7}  {'problem':<{width}}  file  (detail)"]
    lines += [f"  {p.row:>7}  {p.kind:<{width}}  {p.file or '<no file_path>'}  ({p.detail})" for p in problems]
    return "\n".join(lines)


class DataProblemLog:
    """Problems found up front and skips at read time, deduplicated by row; skip events are counted."""

    def __init__(self, problems: Iterable[DataProblem] = ()) -> None:
        self.by_row: dict[int, DataProblem] = {}
        self.skips: Counter[int] = Counter()
        self.extend(problems)

    def extend(self, problems: Iterable[DataProblem], count_skips: bool = True) -> None:
        for problem in problems:
            problem = DataProblem(*problem)  # batches may carry plain tuples after pickling/collation
            self.by_row.setdefault(problem.row, problem)
            if count_skips:
                self.skips[problem.row] += 1

    def __len__(self) -> int:
        return len(self.by_row)

    @property
    def problems(self) -> list[DataProblem]:
        return [self.by_row[row] for row in sorted(self.by_row)]

    def summary(self, limit: int = 20) -> str:
        problems = self.problems
        kinds = Counter(p.kind for p in problems)
        head = (f"{len(problems)} bad file(s)/row(s) skipped ({sum(self.skips.values())} skip(s) in all): "
                + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())))
        lines = [head] + [f"  {p.line()}" for p in problems[:limit]]
        if len(problems) > limit:
            lines.append(f"  ... and {len(problems) - limit} more (all in {REPORT_NAME})")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "bad_rows": len(self.by_row),
            "skips": sum(self.skips.values()),
            "problems": [{**p._asdict(), "skips": self.skips[p.row]} for p in self.problems],
        }


def gather_problem_logs(log: DataProblemLog) -> DataProblemLog:
    """Merge the logs of every rank (each saw only its own batches); a no-op in a single process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return log
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (log.problems, dict(log.skips)))
    merged = DataProblemLog()
    for problems, skips in parts:
        merged.extend(problems, count_skips=False)
        merged.skips.update(skips)
    return merged


class DataProblemsCallback(TrainerCallback):
    """Prints the skipped files when training ends and writes ``output_dir/data_problems.json``."""

    def __init__(self, log: DataProblemLog) -> None:
        self.log = log

    def on_train_end(self, args, state, control, **kwargs):
        merged = gather_problem_logs(self.log)
        if not state.is_world_process_zero:
            return
        if not len(merged):
            logger.info("data: no bad samples were met")
            return
        logger.warning("data: %s", merged.summary())
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, REPORT_NAME), "w", encoding="utf-8") as handle:
            json.dump(merged.to_json(), handle, indent=2)
