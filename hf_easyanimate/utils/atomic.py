"""Write files so that a crash, a full disk or a kill never leaves a torn file where a good one was."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator


def follow_umask(path: str) -> None:
    """Give ``path`` the mode a plain ``open()`` would (0666 minus the umask).

    ``tempfile.mkstemp`` creates 0600 files and safetensors writes its files 0600 too, so without this every
    LoRA would be unreadable to a ComfyUI service or a teammate while everything else is 0644.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block finishes.

    The temporary file lives in the same folder (same filesystem), so the final ``os.replace`` is atomic, and it
    gets the umask's mode just before, whatever wrote it. On any error the temporary file is removed and ``path``
    is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, extension = os.path.splitext(os.path.basename(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{extension}", dir=folder)
    os.close(handle)
    try:
        yield temporary
        follow_umask(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def atomic_copy(source: str, destination: str) -> None:
    """Copy ``source`` over ``destination`` so that ``destination`` is never seen half-copied."""
    with atomic_path(destination) as temporary:
        shutil.copyfile(source, temporary)
