"""EasyAnimate metadata -> a columnar table: ``datasets`` for the rows, numpy for what bucketing needs.

Accepted: the original JSON list of ``{file_path, text, type}`` objects, JSON Lines, CSV/TSV, Parquet, a
folder written by ``datasets.save_to_disk``, a folder of data files, or a Hub dataset id. ``file_path``
resolves against ``--train_data_dir`` unless absolute. Optional ``width``/``height`` and ``num_frames``
(or ``duration`` x ``fps``) columns are used when present.

At a million rows nothing here creates per-row Python objects: the rows stay in ``datasets``' memory-mapped
Arrow file (cheap to hand to dataloader workers), checks run as Arrow compute kernels, and the per-row
numbers bucketing needs are numpy arrays. A JSON *list* is streamed to JSON Lines first (``datasets``
would otherwise parse the whole list into Python objects), once per content hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .problems import BAD_TEXT, MISSING_FILE_PATH, UNKNOWN_TYPE, DataProblem

logger = logging.getLogger(__name__)

KIND_UNKNOWN, KIND_IMAGE, KIND_VIDEO = -1, 0, 1
KIND_NAMES = {KIND_IMAGE: "image", KIND_VIDEO: "video"}
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".flv", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv")
_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
_ROW_CHECKS = (MISSING_FILE_PATH, BAD_TEXT, UNKNOWN_TYPE)  # problem code i + 1 in MetadataTable.row_problems
_HASH_CHUNK = 8 << 20


class MetadataError(ValueError):
    """The metadata cannot be used at all; the message names the file and what is wrong."""


def file_fingerprint(path: str) -> str:
    """sha256 of a file's bytes: caches keyed by it survive renames and notice edits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_dir() -> str:
    return os.path.join(datasets.config.HF_DATASETS_CACHE, "hf_easyanimate")


def _json_list_to_jsonl(source: str, target: str, chunk_chars: int = 4 << 20) -> int:
    """Stream a JSON list of objects into JSON Lines without holding the list in memory; returns rows.

    Each object's text is copied verbatim with its line breaks turned into spaces: outside strings they are
    whitespace, and JSON strings cannot hold a raw line break, so every object becomes one valid line.
    """
    decoder = json.JSONDecoder()
    temporary = f"{target}.tmp-{os.getpid()}"
    rows = 0
    with open(source, encoding="utf-8-sig") as handle, open(temporary, "w", encoding="utf-8") as out:
        buffer, position, at_end = handle.read(chunk_chars), 0, False

        def refill() -> None:
            nonlocal buffer, position, at_end
            more = handle.read(chunk_chars)
            at_end = not more
            buffer, position = buffer[position:] + more, 0

        def skip(chars: str) -> None:
            nonlocal position
            while True:
                while position < len(buffer) and buffer[position] in chars:
                    position += 1
                if position < len(buffer) or at_end:
                    return
                refill()

        skip(" \t\r\n")
        if position >= len(buffer) or buffer[position] != "[":
            raise MetadataError(f"{source}: expected a JSON list of rows ('[...]')")
        position += 1
        while True:
            skip(" \t\r\n,")
            if position >= len(buffer):
                raise MetadataError(f"{source}: the JSON list is not closed (missing ']' after row {rows})")
            if buffer[position] == "]":
                break
            try:
                row, end = decoder.raw_decode(buffer, position)
            except json.JSONDecodeError as error:
                if not at_end:
                    refill()
                    continue
                raise MetadataError(f"{source}: invalid JSON in row {rows}: {error.msg}") from error
            if not isinstance(row, dict):
                raise MetadataError(f"{source}: row {rows} is a {type(row).__name__}, not an object")
            out.write(buffer[position:end].replace("\n", " ").replace("\r", " "))
            out.write("\n")
            rows += 1
            position = end
    os.replace(temporary, target)
    return rows


def _first_char(path: str) -> str:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            while char := handle.read(1):
                if not char.isspace():
                    return char
    except UnicodeDecodeError as error:
        raise MetadataError(f"{path}: is not UTF-8 text ({error}); metadata must be UTF-8 JSON") from error
    return ""


def _load_file(path: str, cache_dir: str) -> tuple[datasets.Dataset, str]:
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _BUILDERS:
        raise MetadataError(f"{path}: unsupported metadata format {suffix!r}; use .json, .jsonl, .csv, .tsv or .parquet")
    fingerprint = file_fingerprint(path)
    data_file, builder, options = path, _BUILDERS[suffix], {}
    if suffix == ".tsv":
        options["sep"] = "\t"
    first = _first_char(path) if builder == "json" else ""
    if builder == "json" and first not in ("[", "{"):
        raise MetadataError(
            f"{path}: is not JSON (it starts with {first!r}); EasyAnimate metadata is a JSON list of "
            "{\"file_path\", \"text\", \"type\"} objects, or JSON Lines with one such object per line"
        )
    if first == "[":
        os.makedirs(cache_dir, exist_ok=True)
        data_file = os.path.join(cache_dir, f"metadata-{fingerprint[:20]}.jsonl")
        if not os.path.exists(data_file):
            logger.info("converting the JSON list %s to JSON Lines (once per content) in %s", path, data_file)
            _json_list_to_jsonl(path, data_file)
        if os.path.getsize(data_file) == 0:
            raise MetadataError(f"{path}: the JSON list is empty; there are no rows to train on")
    try:
        table = datasets.load_dataset(builder, data_files=data_file, split="train", **options)
    except Exception as error:  # datasets wraps parser errors in several exception types
        cause = error
        while cause.__cause__ is not None:  # the parser's own message names the row
            cause = cause.__cause__
        raise MetadataError(f"{path}: cannot read as {builder}: {str(cause) or error}") from error
    return table, fingerprint


def _load_dataset(source: str, cache_dir: str) -> tuple[datasets.Dataset, str]:
    """A ``datasets`` table from a file, a ``save_to_disk`` folder, a folder of data files or a Hub id."""
    if os.path.isfile(source):
        return _load_file(source, cache_dir)
    try:
        if os.path.isdir(source):
            if os.path.exists(os.path.join(source, "state.json")) or os.path.exists(
                os.path.join(source, "dataset_dict.json")
            ):
                loaded = datasets.load_from_disk(source)
            else:
                loaded = datasets.load_dataset(source)
        else:
            loaded = datasets.load_dataset(source)
    except FileNotFoundError as error:
        raise MetadataError(f"metadata {source} does not exist (not a file, a folder or a Hub dataset)") from error
    except Exception as error:
        raise MetadataError(f"metadata {source}: cannot load with `datasets`: {error}") from error
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise MetadataError(f"metadata {source} has splits {list(loaded)}; a 'train' split is needed")
        loaded = loaded["train"]
    return loaded, loaded._fingerprint


def _string_column(table: pa.Table, name: str, rows: int) -> tuple[pa.ChunkedArray, np.ndarray]:
    """(values as strings, mask of values that are not strings) for a column that should hold strings.

    ``datasets`` stores a column of mixed JSON types (e.g. ``text: 5`` in one row) as JSON text; a string
    value there is the one starting with a quote, and is decoded.
    """
    column = table.column(name).slice(0, rows)
    if isinstance(column.type, pa.JsonType):
        raw = pa.chunked_array([chunk.storage for chunk in column.chunks], type=pa.string())
        is_string = pc.fill_null(pc.starts_with(raw, '"'), False)
        decoded = [json.loads(value) if ok else None for value, ok in zip(raw.to_pylist(), is_string.to_pylist())]
        return pa.chunked_array([pa.array(decoded, type=pa.string())]), ~is_string.to_numpy(zero_copy_only=False)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column, np.zeros(rows, dtype=bool)
    if pa.types.is_null(column.type):
        return pa.chunked_array([pa.nulls(rows, pa.string())]), np.zeros(rows, dtype=bool)
    return pa.chunked_array([pa.nulls(rows, pa.string())]), np.ones(rows, dtype=bool)


def _blank(values: pa.ChunkedArray) -> np.ndarray:
    """True where a string value is null, empty or whitespace only."""
    empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0)
    return pc.fill_null(empty, True).to_numpy(zero_copy_only=False)


def _float_column(table: pa.Table, name: str, rows: int) -> np.ndarray | None:
    """A numeric column as float64 with NaN where missing, invalid or not positive; None if absent."""
    if name not in table.column_names:
        return None
    column = table.column(name).slice(0, rows)
    if isinstance(column.type, pa.JsonType) or pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        import pandas as pd

        values = pd.to_numeric(pd.Series(column.to_pylist(), dtype=object), errors="coerce").to_numpy(np.float64)
    elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type):
        values = pc.cast(column, pa.float64()).to_numpy().astype(np.float64)
    else:
        return np.full(rows, np.nan)
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def _to_int32(values: np.ndarray) -> np.ndarray:
    """Floats -> int32 (truncated), -1 for NaN."""
    clean = np.nan_to_num(values, nan=-1.0).clip(-1, np.iinfo(np.int32).max)
    return clean.astype(np.int32)


@dataclass
class MetadataTable:
    """The metadata rows plus per-row numpy arrays; pickles cheaply (the rows stay memory-mapped)."""

    dataset: datasets.Dataset
    source: str
    data_dir: str | None
    fingerprint: str
    num_rows: int
    kinds: np.ndarray  # int8: KIND_IMAGE | KIND_VIDEO | KIND_UNKNOWN
    heights: np.ndarray  # int32, -1 = unknown (probed when bucketing needs it)
    widths: np.ndarray
    num_frames: np.ndarray
    row_problems: np.ndarray  # uint8: 0 = usable, else 1 + index into _ROW_CHECKS
    _text_is_json: bool = field(default=False, repr=False)
    _path_is_json: bool = field(default=False, repr=False)

    def __len__(self) -> int:
        return self.num_rows

    def _cell(self, row: int, column: str, is_json: bool):
        value = self.dataset.data.fast_slice(row, 1).column(column)[0].as_py()
        return json.loads(value) if is_json and value is not None else value

    def raw_path(self, row: int) -> str | None:
        value = self._cell(row, "file_path", self._path_is_json)
        return value if isinstance(value, str) else None

    def path(self, row: int) -> str:
        """``file_path`` of ``row`` resolved against ``data_dir`` (an absolute path wins, as os.path.join does)."""
        raw = self.raw_path(row) or ""
        return os.path.join(self.data_dir, raw) if self.data_dir else raw

    def rows_outside_data_dir(self) -> np.ndarray:
        """Usable rows whose relative ``file_path`` climbs out of ``data_dir`` with ``..``.

        The original reads them (a shared clip folder next to the dataset is a common layout), so they stay
        in training; they are only reported, since a stray ``..`` can also pull in files nobody meant to use.
        Only rows containing ``..`` are resolved, so this stays cheap at a million rows.
        """
        if not self.data_dir:
            return np.zeros(0, dtype=np.int64)
        paths, _ = _string_column(self.dataset.data, "file_path", self.num_rows)
        maybe = pc.fill_null(pc.match_substring(paths, ".."), False).to_numpy(zero_copy_only=False)
        root = os.path.abspath(self.data_dir)
        outside = [
            int(row) for row in np.flatnonzero(maybe & self.usable)
            if not os.path.isabs(self.raw_path(int(row)) or "")
            and os.path.commonpath([root, os.path.abspath(self.path(int(row)))]) != root
        ]
        return np.asarray(outside, dtype=np.int64)

    def text(self, row: int) -> str:
        value = self._cell(row, "text", self._text_is_json)
        return value if isinstance(value, str) else ""

    def kind_name(self, row: int) -> str:
        return KIND_NAMES.get(int(self.kinds[row]), "unknown")

    @property
    def usable(self) -> np.ndarray:
        return self.row_problems == 0

    def problems(self) -> list[DataProblem]:
        """The row-level problems (no file_path, bad text, unknown type), with what was found."""
        found = []
        for row in np.flatnonzero(self.row_problems):
            row = int(row)
            kind = _ROW_CHECKS[int(self.row_problems[row]) - 1]
            if kind == MISSING_FILE_PATH:
                value = self._cell(row, "file_path", self._path_is_json)
                detail = "file_path is missing or empty" if value in (None, "") else f"file_path is {value!r}"
                found.append(DataProblem(row, None, kind, detail))
                continue
            if kind == BAD_TEXT:
                value = self._cell(row, "text", self._text_is_json)
                detail = ("text is missing" if value is None else f"text is not a string: {value!r}"
                          if not isinstance(value, str) else "text is empty")
            else:
                detail = f"type is {self._cell(row, 'type', False)!r}; use 'video' or 'image'"
            found.append(DataProblem(row, self.path(row), kind, detail))
        return found


def _kinds(table: pa.Table, paths: pa.ChunkedArray, rows: int) -> np.ndarray:
    """'video' / 'image' (case and spaces ignored); a missing type is guessed from the file extension."""
    lowered_paths = pc.utf8_lower(pc.fill_null(paths, ""))
    by_extension = np.zeros(rows, dtype=bool)
    for extension in VIDEO_EXTENSIONS:
        by_extension |= pc.ends_with(lowered_paths, extension).to_numpy(zero_copy_only=False)
    guessed = np.where(by_extension, KIND_VIDEO, KIND_IMAGE).astype(np.int8)
    if "type" not in table.column_names:
        return guessed
    types, not_string = _string_column(table, "type", rows)
    normalised = pc.utf8_lower(pc.utf8_trim_whitespace(types))
    is_video = pc.fill_null(pc.equal(normalised, "video"), False).to_numpy(zero_copy_only=False)
    is_image = pc.fill_null(pc.equal(normalised, "image"), False).to_numpy(zero_copy_only=False)
    missing = pc.is_null(types).to_numpy(zero_copy_only=False) & ~not_string
    kinds = np.full(rows, KIND_UNKNOWN, dtype=np.int8)
    kinds[is_image] = KIND_IMAGE
    kinds[is_video] = KIND_VIDEO
    kinds[missing] = guessed[missing]
    return kinds


def load_metadata(
    meta: str,
    data_dir: str | None = None,
    max_samples: int | None = None,
    cache_dir: str | None = None,
) -> MetadataTable:
    """Load and check the metadata (``--train_data_meta``); rows with problems are flagged, not dropped."""
    if not meta:
        raise MetadataError("--train_data_meta is required: the metadata file listing your clips")
    if os.path.isfile(meta) and os.path.getsize(meta) == 0:
        raise MetadataError(f"metadata file {meta} is empty")
    dataset, fingerprint = _load_dataset(meta, cache_dir or default_cache_dir())
    columns = dataset.column_names
    if "file_path" not in columns or "text" not in columns:
        missing = [name for name in ("file_path", "text") if name not in columns]
        if len(dataset) == 1 and str(meta).lower().endswith(".json"):
            raise MetadataError(
                f"{meta}: holds one JSON object (keys {columns}), not a list of rows; EasyAnimate metadata is a "
                "JSON list of {\"file_path\", \"text\", \"type\"} objects"
            )
        raise MetadataError(f"{meta}: missing column(s) {missing}; rows need file_path, text and type (found {columns})")
    rows = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    table = dataset.data
    paths, path_not_string = _string_column(table, "file_path", rows)
    texts, text_not_string = _string_column(table, "text", rows)
    kinds = _kinds(table, paths, rows)

    problems = np.zeros(rows, dtype=np.uint8)
    problems[kinds == KIND_UNKNOWN] = 1 + _ROW_CHECKS.index(UNKNOWN_TYPE)
    problems[text_not_string | _blank(texts)] = 1 + _ROW_CHECKS.index(BAD_TEXT)
    problems[path_not_string | _blank(paths)] = 1 + _ROW_CHECKS.index(MISSING_FILE_PATH)

    missing = np.full(rows, -1, dtype=np.int32)
    frames = _float_column(table, "num_frames", rows)
    if frames is None and "duration" in columns and "fps" in columns:
        frames = _float_column(table, "duration", rows) * _float_column(table, "fps", rows)
    num_frames = _to_int32(frames) if frames is not None else missing.copy()
    heights, widths = _float_column(table, "height", rows), _float_column(table, "width", rows)
    if heights is None or widths is None:
        heights, widths = missing.copy(), missing.copy()
    else:
        heights, widths = _to_int32(heights), _to_int32(widths)
    unknown = (heights <= 0) | (widths <= 0)
    heights[unknown], widths[unknown] = -1, -1
    return MetadataTable(
        dataset=dataset,
        source=meta,
        data_dir=data_dir or None,
        fingerprint=fingerprint,
        num_rows=rows,
        kinds=kinds,
        heights=heights,
        widths=widths,
        num_frames=num_frames,
        row_problems=problems,
        _text_is_json=isinstance(table.column("text").type, pa.JsonType),
        _path_is_json=isinstance(table.column("file_path").type, pa.JsonType),
    )
