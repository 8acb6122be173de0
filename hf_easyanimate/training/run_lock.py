"""One job per folder: a lock file in ``--output_dir`` (or the latent cache) names the job that holds it.

Two trainings into one output_dir would rotate each other's checkpoints away and mix two runs in ``latest``; two
precomputes into one cache would write the same shards. The lock is a file created exclusively (``O_EXCL``, which
works on local disks and NFS alike, unlike ``flock``) holding the holder's pid, host and command. A second job
refuses in one line naming the holder. A lock whose holder is gone (a ``kill -9``, a crashed node) is detected from
its pid when it was taken on this host, and taken over with a warning; one from another host cannot be checked, so
the message says how to remove it once that job is known to be gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time

logger = logging.getLogger(__name__)

LOCK_NAME = ".hf_easyanimate.lock"
_HELD: set[str] = set()  # the locks this process holds now: one of ours on disk but not here is a leftover


class FolderLockedError(RuntimeError):
    """Another job holds the folder; the message names it and what to do."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _holder(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            holder = json.load(handle)
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # being written right now, or damaged: treated as held by an unknown job


def _describe(holder: dict) -> str:
    if not holder:
        return "unknown: its lock file is empty or damaged"
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {when}: "
            f"{holder.get('command', '?')}")


class FolderLock:
    """Held from :meth:`acquire` to :meth:`release` (also a context manager); ``what`` names the folder's role."""

    def __init__(self, folder: str, what: str = "--output_dir") -> None:
        self.folder, self.what = folder, what
        self.path = os.path.join(folder, LOCK_NAME)
        self.held = False

    def _create(self) -> bool:
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                       "command": " ".join(sys.argv)[:500]}, handle)
        return True

    def acquire(self) -> FolderLock:
        os.makedirs(self.folder, exist_ok=True)
        for _ in range(2):
            if self._create():
                self.held = True
                _HELD.add(self.path)
                return self
            holder = _holder(self.path)
            stale = holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) and (
                not _alive(holder["pid"]) or (holder["pid"] == os.getpid() and self.path not in _HELD))
            if not stale:
                raise FolderLockedError(
                    f"{self.what} {self.folder} is in use by another job ({_describe(holder)}). Wait for it to finish, "
                    f"or use another {self.what}; if that job is gone (it ran on another machine), delete {self.path}"
                )
            logger.warning("%s: taking over the lock of a job that is gone (%s)", self.folder, _describe(holder))
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        raise FolderLockedError(f"{self.what} {self.folder}: another job took the lock at the same moment")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        _HELD.discard(self.path)
        if _holder(self.path).get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
