"""Why a file cannot be read, in one sentence: for every file a user hands us (weights, LoRA, cache shards,
checkpoint state), so that a damaged one is a one-line error naming it instead of a traceback from deep inside a
library."""

from __future__ import annotations

import os


def safetensors_problem(path: str) -> str | None:
    """What is wrong with the safetensors file at ``path`` (None when it opens and every tensor is covered).

    ``safe_open`` reads the header and checks that the file holds every byte it promises, so a truncated, empty or
    garbage file is told apart without reading the tensors.
    """
    from safetensors import SafetensorError, safe_open

    if not os.path.exists(path):
        return "no such file"
    if not os.path.isfile(path):
        return "not a file"
    try:
        with safe_open(path, framework="pt") as handle:
            handle.keys()
    except SafetensorError as error:
        reason = str(error).removeprefix("Error while deserializing header: ")
        return f"not a readable safetensors file ({reason}: truncated, or not safetensors at all)"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    return None


def torch_file_problem(path: str) -> str | None:
    """What is wrong with a ``torch.save`` file (optimizer, scheduler, RNG state) loaded as Trainer loads them on
    resume: ``weights_only=True`` with transformers' allow-list of numpy arrays and dtypes, whatever else is refused
    unread (None when it loads). ``mmap`` keeps a large optimizer state out of memory."""
    from pickle import UnpicklingError  # what weights_only raises on a refused object; nothing is unpickled here

    import torch
    from transformers.trainer_pt_utils import safe_globals

    if not os.path.isfile(path):
        return "no such file"
    if os.path.getsize(path) == 0:
        return "empty file"
    try:
        with safe_globals():
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except UnpicklingError:
        return "holds objects other than tensors and plain values (a pickle payload?), so it is refused unread"
    except (RuntimeError, ValueError, EOFError, OSError) as error:
        first = str(error).strip().split(". ")[0].splitlines()[0] if str(error).strip() else type(error).__name__
        return f"not a readable torch file, truncated or damaged ({first[:100]})"
    return None
