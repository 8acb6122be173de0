"""Load EasyAnimate metadata (JSON list, JSONL, CSV) into a ``datasets.Dataset`` with resolved paths."""

from __future__ import annotations

import os

import datasets

REQUIRED_COLUMNS = ("file_path", "text")


class MetadataError(ValueError):
    """The metadata file cannot be used; the message names the file and what is wrong."""


def _builder_for(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".json", ".jsonl"):
        return "json"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise MetadataError(f"{path}: unsupported metadata format {suffix!r}; use .json, .jsonl or .csv")


def resolve_path(file_path: str, data_dir: str | None) -> str:
    """Absolute path of a metadata ``file_path``: relative entries resolve against ``data_dir``."""
    if os.path.isabs(file_path) or not data_dir:
        return file_path
    return os.path.join(data_dir, file_path)


def load_metadata(meta_path: str, data_dir: str | None = None, max_samples: int | None = None) -> datasets.Dataset:
    """Rows with ``file_path`` (resolved), ``text`` and ``type`` ('video' | 'image', default 'image')."""
    if not os.path.exists(meta_path):
        raise MetadataError(f"metadata file {meta_path} does not exist")
    builder = _builder_for(meta_path)
    try:
        table = datasets.load_dataset(builder, data_files=meta_path, split="train")
    except Exception as error:  # datasets wraps parser errors in several exception types
        raise MetadataError(f"{meta_path}: cannot parse as {builder}: {error}") from error
    missing = [column for column in REQUIRED_COLUMNS if column not in table.column_names]
    if missing:
        raise MetadataError(f"{meta_path}: missing column(s) {missing}; rows need file_path, text, type")
    if max_samples is not None:
        table = table.select(range(min(max_samples, len(table))))
    if "type" not in table.column_names:
        table = table.add_column("type", ["image"] * len(table))
    base = data_dir if data_dir else None
    return table.map(
        lambda row: {"file_path": resolve_path(row["file_path"], base)},
        desc="Resolving paths",
        load_from_cache_file=False,
    )
