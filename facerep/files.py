"""Crash-safe file writing shared by datasets, runs and reports.

A write goes to a temporary file in the same folder, is fsynced, renamed over the target, and
the folder is fsynced: a crash at any moment leaves either the old file or the new one whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

# O_EXCL: a name another writer holds is never opened twice; O_CLOEXEC, as mkstemp's.
_CREATE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)


def fsync_path(path: str | Path) -> None:
    """Flush a file's or a folder's metadata and contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp_beside(path: Path) -> tuple[int, Path]:
    """Create a new, empty temp file beside `path`: its write descriptor and its path.

    It is created with mode 0o666 and the umask applies itself, so the file gets the permissions
    a plain `open(path, "w")` would. (Reading the umask means setting it, which races with other
    threads creating files; mkstemp's owner-only files would need that.)
    """
    while True:
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temp, _CREATE_FLAGS, 0o666), temp
        except FileExistsError:
            continue  # another writer's temp file: draw another name


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **kwargs: object) -> Iterator:
    """Write a temp file beside `path`, fsync, rename over it: a crash leaves the old file."""
    path = Path(path)
    handle, temp = _create_temp_beside(path)
    try:
        with os.fdopen(handle, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        fsync_path(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def file_digest(path: str | Path, length: int = 16) -> str:
    """The first `length` hex digits of a file's SHA-256: which weights made an embedding."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:length]
