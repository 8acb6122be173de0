"""``--output_dir`` safety, checked before any model loads: writable, and never a silent second run on top of a first.

Trainer (transformers 5) writes into whatever ``output_dir`` holds: the new LoRA replaces the trained one and
``save_total_limit`` rotation deletes the earlier run's checkpoints, leaving a folder that mixes two runs (and a
later ``--resume_from_checkpoint latest`` may pick the *other* run's newest checkpoint). A folder holding a run
is therefore only trained into when resumed, or explicitly replaced with ``--overwrite_output_dir true``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

# What marks a folder as holding a training run.
RUN_MARKERS = ("adapter_model.safetensors", "easyanimate_lora.safetensors", "trainer_state.json")
# Everything a run writes beside its checkpoints; removed with --overwrite_output_dir (TensorBoard's runs/ stays:
# each run writes its own event file there).
RUN_FILES = (*RUN_MARKERS, "adapter_config.json", "training_args.bin", "training_recipe.yaml", "README.md",
             "data_problems.json", "model_info.json")
RUN_FOLDERS = ("validation", "report")
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-\d+$")


class OutputDirError(ValueError):
    """``--output_dir`` cannot be used as asked; the message says what is there and the ways forward."""


def check_writable(output_dir: str) -> None:
    """Create ``output_dir`` if needed and prove a file can be written there (names the exact problem if not)."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise OutputDirError(f"--output_dir {output_dir} is a file, not a folder; pass a folder path")
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        if error.errno == errno.EROFS:
            reason = "is on a read-only filesystem"
        elif isinstance(error, PermissionError):
            reason = "is not writable (permission denied)"
        else:
            reason = f"cannot be written to ({error.strerror or error})"
        raise OutputDirError(f"--output_dir {output_dir} {reason}; pass a folder you can write to") from error


def checkpoints(output_dir: str) -> list[str]:
    """``checkpoint-N`` folder names in ``output_dir``, by step."""
    if not os.path.isdir(output_dir):
        return []
    names = [n for n in os.listdir(output_dir) if _CHECKPOINT.match(n) and os.path.isdir(os.path.join(output_dir, n))]
    return sorted(names, key=lambda name: int(name.rsplit("-", 1)[1]))


def previous_run(output_dir: str) -> list[str]:
    """What marks ``output_dir`` as holding an earlier run: its checkpoints and LoRA / state files (names)."""
    if not os.path.isdir(output_dir):
        return []
    found = checkpoints(output_dir)
    found += [name for name in RUN_MARKERS if os.path.isfile(os.path.join(output_dir, name))]
    return found


def _listing(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def guard_previous_run(output_dir: str, resume: object, overwrite: bool) -> list[str]:
    """Refuse a fresh run into a folder holding a run (unless resuming or overwriting); returns what is there."""
    found = previous_run(output_dir)
    if found and not resume and not overwrite:
        raise OutputDirError(
            f"--output_dir {output_dir} already holds a training run ({_listing(found)}). Training into it would "
            "replace its LoRA and rotate away its checkpoints. Either continue that run with "
            "--resume_from_checkpoint latest, or replace it with --overwrite_output_dir true (its checkpoints and "
            "LoRA files are deleted first), or choose another --output_dir."
        )
    return found


def clear_previous_run(output_dir: str) -> list[str]:
    """``--overwrite_output_dir``: delete the earlier run's checkpoints, LoRA, state and validation files."""
    removed = []
    for name in checkpoints(output_dir) + list(RUN_FOLDERS):
        path = os.path.join(output_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
            removed.append(name)
    for name in RUN_FILES:
        path = os.path.join(output_dir, name)
        if os.path.isfile(path):
            os.remove(path)
            removed.append(name)
    if removed:
        logger.warning("--overwrite_output_dir: deleted the earlier run in %s: %s", output_dir, _listing(removed, 12))
    return removed


STAGING = ".partial-save"  # trainers' save_model writes here first, then moves each file into place
# What an interrupted save leaves: peft's scratch folders and the temporaries of utils/atomic.py.
_LEFTOVER_DIRS = re.compile(r"^\.adapter-")
_LEFTOVER_FILES = re.compile(r"^\..+\.partial(\.[A-Za-z0-9]+)?$")


def _leftovers(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if (name == STAGING or _LEFTOVER_DIRS.match(name)) and os.path.isdir(path):
            found.append(path)
        elif _LEFTOVER_FILES.match(name) and os.path.isfile(path):
            found.append(path)
    return found


def remove_interrupted_saves(output_dir: str) -> list[str]:
    """Delete what a save interrupted by a kill, a full disk or a crash left in ``output_dir`` and its checkpoints
    (staging folder, scratch folders, ``.*.partial*`` temporaries; never a finished file), saying so once.

    Called with the folder's lock held: a running job's temporaries are never another job's leftovers.
    """
    folders = [output_dir] + [os.path.join(output_dir, name) for name in checkpoints(output_dir)]
    removed = [path for folder in folders for path in _leftovers(folder)]
    for path in removed:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    if removed:
        shown = ", ".join(os.path.relpath(path, output_dir) for path in removed[:6])
        logger.warning("removed what an interrupted save left in %s: %s%s", output_dir, shown,
                       f" and {len(removed) - 6} more" if len(removed) > 6 else "")
    return removed
