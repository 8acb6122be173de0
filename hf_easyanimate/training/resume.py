"""Which checkpoint a run resumes from (the newest intact one, :mod:`.checkpoints` checks them), and checkpoint
rotation that never deletes it."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

from .checkpoints import TRAINER_STATE, CheckpointReport, inspect_checkpoint

logger = logging.getLogger(__name__)

class CheckpointNotFound(ValueError):
    """``--resume_from_checkpoint`` names nothing usable; the message says what was looked at."""


def is_complete(checkpoint: str) -> bool:
    """Trainer writes ``trainer_state.json`` after the weights, optimizer and RNG state: its presence means done."""
    return os.path.isfile(os.path.join(checkpoint, TRAINER_STATE))


def _checkpoints_newest_first(output_dir: str) -> list[str]:
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return [path for _, path in sorted(found, reverse=True)]


def latest_checkpoint(output_dir: str) -> str | None:
    """The newest ``checkpoint-N`` fit to resume from. A half-written one (no state file) is skipped with a warning;
    a damaged one (:func:`inspect_checkpoint`) too, naming the file and the reason. None when there is none at all;
    :class:`CheckpointNotFound` when every complete one is damaged."""
    damaged: list[CheckpointReport] = []
    for path in _checkpoints_newest_first(output_dir):
        if not is_complete(path):
            logger.warning("%s is incomplete (no %s); not resuming from it", path, TRAINER_STATE)
            continue
        report = inspect_checkpoint(path)
        if not report.intact:
            damaged.append(report)
            continue
        for skipped in damaged:
            logger.warning("%s cannot be resumed from (%s); resuming from %s", skipped.name, skipped.reason(),
                           report.name)
        if report.inexact():
            logger.warning(report.inexact())
        return path
    if damaged:
        raise CheckpointNotFound(
            f"--resume_from_checkpoint latest: no checkpoint in {output_dir} can be resumed from: "
            + "; ".join(report.reason() for report in damaged)
            + ". Start a fresh run with --overwrite_output_dir true, or another --output_dir."
        )
    return None


def _checked(candidate: str) -> str:
    """A named checkpoint: complete and intact, else one line saying which file is wrong."""
    if not is_complete(candidate):
        raise CheckpointNotFound(
            f"--resume_from_checkpoint {candidate}: the checkpoint is incomplete (no {TRAINER_STATE}; the run "
            "probably died while writing it). Resume from an earlier one or use `latest`."
        )
    report = inspect_checkpoint(candidate)
    if not report.intact:
        raise CheckpointNotFound(
            f"--resume_from_checkpoint {candidate}: damaged, {report.reason()}. Resume from an earlier checkpoint, "
            "or use `latest` (it skips damaged ones)."
        )
    if report.inexact():
        logger.warning(report.inexact())
    return candidate


def resolve_resume(value: str | bool | None, output_dir: str) -> str | None:
    """``latest``/``True`` -> newest intact checkpoint (None, with a warning, if there is none); a path -> itself,
    once checked.

    Like the original, a path that does not exist is also looked up by its base name inside ``output_dir``
    (``--resume_from_checkpoint checkpoint-500``).
    """
    if value in (None, False, "", "none", "None"):
        return None
    if value is True or str(value).lower() in ("latest", "true"):
        last = latest_checkpoint(output_dir)
        if last is None:
            logger.warning("--resume_from_checkpoint latest: no checkpoint in %s, starting fresh", output_dir)
        return last
    path = str(value)
    candidates = [path, os.path.join(output_dir, os.path.basename(os.path.normpath(path)))]
    for candidate in candidates:
        if os.path.isdir(candidate):
            return _checked(candidate)
    raise CheckpointNotFound(
        f"--resume_from_checkpoint {path}: no such checkpoint (looked at {' and '.join(dict.fromkeys(candidates))})"
    )


def rotate_checkpoints_keeping(output_dir: str, save_total_limit: int | None, keep: set[str]) -> list[str]:
    """Trainer's rotation (oldest first, newest always kept) that also never deletes the paths in ``keep``.

    Returns the deleted checkpoints. A protected checkpoint counts toward the limit, as Trainer counts its best
    checkpoint: with limit 2 after resuming from checkpoint-100, the folder keeps checkpoint-100 and the newest one.
    """
    if not save_total_limit or save_total_limit <= 0:
        return []
    checkpoints = sort_checkpoints(output_dir, use_mtime=True)
    if len(checkpoints) <= save_total_limit:
        return []
    protected = {os.path.realpath(checkpoints[-1])} | {os.path.realpath(path) for path in keep if path}
    deleted = []
    remaining = len(checkpoints)
    for checkpoint in checkpoints:
        if remaining <= max(save_total_limit, len(protected)):
            break
        if os.path.realpath(checkpoint) in protected:
            continue
        logger.info("Deleting older checkpoint %s (save_total_limit=%d)", checkpoint, save_total_limit)
        shutil.rmtree(checkpoint, ignore_errors=True)
        deleted.append(checkpoint)
        remaining -= 1
    return deleted


class NothingToTrain(ValueError):
    """The checkpoint being resumed already reached the run's end; the message says which flag to raise."""


def check_remaining(checkpoint: str | None, max_steps: int, num_train_epochs: float) -> None:
    """Raise :class:`NothingToTrain` when resuming ``checkpoint`` would train zero steps.

    Trainer would run no step and print ``train_loss 0``, which reads like a result; say what happened instead.
    """
    if checkpoint is None:
        return
    with open(os.path.join(checkpoint, TRAINER_STATE), encoding="utf-8") as handle:
        state = json.load(handle)
    name, step = os.path.basename(os.path.normpath(checkpoint)), int(state.get("global_step", 0))
    if max_steps > 0 and step >= max_steps:
        raise NothingToTrain(f"{name} is at max_steps {max_steps}: nothing to train; raise --max_steps")
    epoch = float(state.get("epoch") or 0.0)
    if max_steps <= 0 and epoch >= num_train_epochs - 1e-9:
        raise NothingToTrain(
            f"{name} is at epoch {epoch:g} of --num_train_epochs {num_train_epochs:g}: nothing to train; raise "
            "--num_train_epochs"
        )
