"""Look inside the files once: sizes for bucketing (cached), or the full up-front check of ``--strict_data``.

Both run over many files in parallel threads (decoding and file I/O release the GIL) with a progress bar.
Probed sizes are cached beside the metadata, keyed by its content hash and data folder, so a restart (or
every rank of a multi-GPU run after the first) reads them instead of opening every file again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from .metadata import KIND_VIDEO, MetadataTable, default_cache_dir
from .problems import DataProblem
from .video import FrameSampling, SampleReadError, inspect_file, probe_file, quiet_decoding

logger = logging.getLogger(__name__)

PROBE_CACHE_VERSION = "1"


def probe_cache_path(meta: MetadataTable, cache_dir: str | None = None) -> str:
    """Where probed sizes are cached: beside the metadata file when that folder is writable."""
    data_dir = os.path.abspath(meta.data_dir) if meta.data_dir else ""
    key = hashlib.sha256(f"{PROBE_CACHE_VERSION}\0{meta.fingerprint}\0{data_dir}".encode()).hexdigest()[:20]
    if os.path.isfile(meta.source) and os.access(os.path.dirname(os.path.abspath(meta.source)), os.W_OK):
        folder, name = os.path.dirname(os.path.abspath(meta.source)), os.path.basename(meta.source)
        return os.path.join(folder, f".{name}.probe-{key}.npz")
    return os.path.join(cache_dir or default_cache_dir(), f"probe-{key}.npz")


def _run(
    check: Callable[[str, bool], tuple[int, int, int]], meta: MetadataTable, rows: np.ndarray, workers: int, desc: str
) -> tuple[np.ndarray, list[DataProblem]]:
    """Apply ``check(path, is_video)`` to ``rows``; returns ((n, 3) int32 sizes, -1 where failed) and problems."""
    sizes = np.full((len(rows), 3), -1, dtype=np.int32)
    problems: list[DataProblem] = []
    if not len(rows):
        return sizes, problems
    jobs = [(int(row), meta.path(int(row)), bool(meta.kinds[row] == KIND_VIDEO)) for row in rows]

    def one(job):
        row, path, is_video = job
        try:
            return check(path, is_video), None
        except SampleReadError as error:
            return None, DataProblem.from_error(row, path, error)

    failed = []
    with quiet_decoding() as progress, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(one, jobs, chunksize=16)
        bar = tqdm(results, total=len(jobs), desc=desc, unit="file", file=progress)
        for position, (size, problem) in enumerate(bar):
            if problem is None:
                sizes[position] = size
            else:
                failed.append(position)
    # Outside the quiet phase, one at a time: each failure's error then carries FFmpeg's own lines.
    for position in failed:
        size, problem = one(jobs[position])
        if problem is None:  # it read this time (a transient failure)
            sizes[position] = size
        else:
            problems.append(problem)
    return sizes, problems


def probe_missing_sizes(
    meta: MetadataTable, rows: np.ndarray, workers: int = 8, cache_dir: str | None = None
) -> list[DataProblem]:
    """Fill ``meta.heights/widths/num_frames`` for ``rows`` by opening the files; returns the rows that failed.

    Sizes found earlier are read from the cache; rows that failed last time are probed again (they may
    have been fixed).
    """
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return []
    path = probe_cache_path(meta, cache_dir)
    cached_rows = np.zeros(0, dtype=np.int64)
    cached_sizes = np.zeros((0, 3), dtype=np.int32)
    if os.path.exists(path):
        try:
            with np.load(path) as cache:
                cached_rows, cached_sizes = cache["rows"], cache["sizes"]
        except Exception as error:  # a torn or foreign file: probe again and overwrite it
            logger.warning("ignoring unreadable probe cache %s: %s", path, error)
    known = np.isin(rows, cached_rows[cached_sizes[:, 0] > 0]) if len(cached_rows) else np.zeros(len(rows), bool)
    if known.any():
        order = np.argsort(cached_rows)
        positions = order[np.searchsorted(cached_rows, rows[known], sorter=order)]
        _store(meta, rows[known], cached_sizes[positions])
    todo = rows[~known]
    if len(todo):
        logger.info("probing %d file(s) for width/height (no such columns in the metadata)", len(todo))
    sizes, problems = _run(probe_file, meta, todo, workers, "Probing clip sizes")
    good = sizes[:, 0] > 0
    _store(meta, todo[good], sizes[good])
    if len(todo):
        all_rows = np.concatenate([cached_rows, todo])
        all_sizes = np.concatenate([cached_sizes, sizes])
        keep = np.unique(all_rows[::-1], return_index=True)[1]  # newest result per row
        _save_cache(path, all_rows[::-1][keep], all_sizes[::-1][keep])
    return problems


def inspect_rows(
    meta: MetadataTable, rows: np.ndarray, sampling: FrameSampling, workers: int = 8
) -> list[DataProblem]:
    """The full check of every file in ``rows`` (open, length, decode); also fills sizes. Returns problems."""
    rows = np.asarray(rows, dtype=np.int64)
    sizes, problems = _run(
        lambda path, is_video: inspect_file(path, is_video, sampling), meta, rows, workers, "Checking files"
    )
    good = sizes[:, 0] > 0
    _store(meta, rows[good], sizes[good])
    return problems


def _store(meta: MetadataTable, rows: np.ndarray, sizes: np.ndarray) -> None:
    if len(rows):
        meta.heights[rows], meta.widths[rows] = sizes[:, 0], sizes[:, 1]
        meta.num_frames[rows] = np.where(meta.num_frames[rows] > 0, meta.num_frames[rows], sizes[:, 2])


def _save_cache(path: str, rows: np.ndarray, sizes: np.ndarray) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.tmp-{os.getpid()}.npz"
        np.savez(temporary, rows=rows.astype(np.int64), sizes=sizes.astype(np.int32))
        os.replace(temporary, path)
    except OSError as error:  # a read-only data folder must not stop training
        logger.warning("could not write the probe cache %s: %s", path, error)
