"""The gallery's derived FAISS index, kept in step with its database.

`index-<epoch>.faiss` is saved now and then and caught up from SQLite on open. Removed ids are
tombstoned and left out of every search at once; `compact()` rebuilds the index without them,
clears the tombstones, bumps the epoch (an index file of an older epoch is never trusted again),
vacuums SQLite and deletes old files: after it, a removed face's vector is gone from disk.
Another process's commits are seen through SQLite's `data_version`. Callers hold the gallery's
locks; nothing here locks but the OS file lock around writing index files.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from facerep.tasks.gallery.database import GalleryDatabase
from facerep.tasks.index_policy import IndexChoice, choose_kind
from facerep.tasks.vector_index import VectorIndex

LOCK_FILE = ".lock"
# A saved index may lag SQLite by this share of its rows before closing rewrites it; the lag
# is replayed from SQLite on open, which is far cheaper than rewriting a large index each time.
RESAVE_FRACTION = 0.01


class DerivedIndex:
    """The in-memory index of a gallery's vectors, its tombstones, and its files on disk."""

    def __init__(self, folder: Path, database: GalleryDatabase, dim: int, choice: IndexChoice):
        self.folder, self.database, self.dim, self.choice = folder, database, dim, choice
        self.load()

    def load(self) -> None:
        """Read the current epoch's index file (or rebuild it from SQLite) and catch it up."""
        self.epoch = int(self.database.meta()["epoch"])
        index = self._read_file()
        self.saved_rows = len(index) if index is not None else 0
        if index is None:
            self.index = self._build()
        else:
            self.index = index
            self._catch_up()
        self.removed = self.database.removed_ids()
        self.data_version = self.database.data_version()

    def _file(self, epoch: int) -> Path:
        return self.folder / f"index-{epoch}.faiss"

    def _read_file(self) -> VectorIndex | None:
        try:
            index = VectorIndex.load(self._file(self.epoch))
        except (RuntimeError, ValueError, OSError):
            return None  # absent or unreadable: SQLite holds everything to rebuild it
        return index if index.dim == self.dim else None

    def _build(self) -> VectorIndex:
        ids, vectors = self.database.rows_after(-1, self.dim)
        return VectorIndex.build(vectors, ids, choose_kind(self.choice, len(ids)))

    def _catch_up(self) -> None:
        """Add every row committed since the index was last brought up to date."""
        ids, vectors = self.database.rows_after(self.index.last_id(), self.dim)
        self.index.add(vectors, ids)

    def stale(self) -> bool:
        """Whether another connection has committed since we last looked."""
        return self.database.data_version() != self.data_version

    def sync(self) -> None:
        """Take in what other processes committed since we last looked (cheap when nothing)."""
        version = self.database.data_version()
        if version == self.data_version:
            return
        if int(self.database.meta()["epoch"]) != self.epoch:
            self.load()  # compacted elsewhere: our index may hold removed faces
            return
        self._catch_up()
        self.removed = self.database.removed_ids()
        self.data_version = version

    def add(self, vectors: np.ndarray, ids: list[int]) -> None:
        """Index faces just committed."""
        self.index.add(vectors, np.array(ids, dtype=np.int64))

    def tombstone(self, ids: list[int]) -> None:
        """Leave removed faces out of every search from now on."""
        self.removed = np.union1d(self.removed, np.array(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids `[Q, k]` of the nearest live faces (-1 where fewer)."""
        return self.index.search(queries, k, exclude=self.removed)

    def compact(self) -> None:
        """Rebuild without removed faces under a new epoch, and erase them from every file."""
        with self._file_lock():
            self.sync()
            next_epoch = self.epoch + 1
            index = self._build()
            index.save(self._file(next_epoch))
            self.database.start_epoch(next_epoch)
            self.database.erase_free_pages()
            self.index, self.epoch, self.removed = index, next_epoch, np.empty(0, np.int64)
            self.saved_rows = len(index)
            self.data_version = self.database.data_version()
            for path in self.folder.glob("index-*.faiss"):
                if path != self._file(self.epoch):
                    path.unlink(missing_ok=True)

    def save(self) -> None:
        """Write the index to disk now, first switching its kind if the gallery outgrew it."""
        with self._file_lock():
            self.sync()
            kind = choose_kind(self.choice, len(self.index))
            if kind != self.index.kind:
                self.index = VectorIndex.build(self.index.vectors(), self.index.ids(), kind)
            self.index.save(self._file(self.epoch))
            self.saved_rows = len(self.index)

    def save_if_grown(self) -> None:
        """`save` when the index has grown by `RESAVE_FRACTION` since it was written."""
        unsaved = len(self.index) - self.saved_rows
        if unsaved > 0 and unsaved >= RESAVE_FRACTION * self.saved_rows:
            self.save()

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        # Index files are written by whoever saves; an OS lock keeps two processes from
        # racing a save against a compaction.
        with open(self.folder / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
