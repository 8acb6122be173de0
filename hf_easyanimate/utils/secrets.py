"""Credentials never reach the disk: a redacted copy of the arguments is what gets pickled, logged or shown.

Trainer pickles its ``TrainingArguments`` into ``training_args.bin`` beside every checkpoint, with
``hub_token`` in plain text (``TrainingArguments.to_dict`` redacts it for JSON, the pickle does not).
Output folders are copied to shared storage, attached to bug reports and uploaded by hand, so every
field whose name ends in ``_token`` is set to None in what we save. Nothing ever reads a token back
from a checkpoint: a resumed run takes it from the command line, ``HF_TOKEN`` or ``huggingface-cli login``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterable
from typing import Any, TypeVar

import torch

from .atomic import atomic_path

SECRET_SUFFIX = "_token"
REDACTED = "<redacted>"
T = TypeVar("T")


def is_secret(name: str) -> bool:
    """Field names that hold credentials (``hub_token``, ``push_to_hub_token``, ...)."""
    return name.endswith(SECRET_SUFFIX)


def secret_values(*argument_objects: Any) -> list[str]:
    """The non-empty secret values held by dataclass argument objects, longest first (for masking text)."""
    values = set()
    for arguments in argument_objects:
        if arguments is None or not dataclasses.is_dataclass(arguments):
            continue
        for field in dataclasses.fields(arguments):
            value = getattr(arguments, field.name, None)
            if is_secret(field.name) and isinstance(value, str) and value:
                values.add(value)
    return sorted(values, key=len, reverse=True)


def redacted(arguments: T) -> T:
    """A shallow copy of a dataclass with every secret field set to None (the original is untouched)."""
    clone = copy.copy(arguments)
    for field in dataclasses.fields(arguments):
        if is_secret(field.name) and getattr(clone, field.name, None) is not None:
            object.__setattr__(clone, field.name, None)
    return clone


def save_training_args(arguments: Any, path: str | os.PathLike) -> None:
    """``training_args.bin`` as Trainer writes it, but from :func:`redacted` arguments, written atomically."""
    with atomic_path(os.fspath(path)) as temporary:
        torch.save(redacted(arguments), temporary)


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``<redacted>``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text
