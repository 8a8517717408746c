"""A gallery's SQLite database: the schema, the connection's settings and every query.

The database is the source of truth: one row per face (label, source, box, vector) and the
encoder that made the vectors. One transaction per add, so a crash (even kill -9) leaves a
prefix of the adds and never a vector without its metadata. WAL journal, so readers in other
processes never block on the writer; `secure_delete`, so a removed row's bytes are zeroed.
A gallery opened read-only (a user who may only read it) never writes a byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from facerep.tasks.gallery.errors import GalleryError
from facerep.types import Box

DB_FILE = "gallery.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a removed id is never reused
    label TEXT NOT NULL,
    source TEXT,
    box TEXT,
    added REAL NOT NULL,
    vector BLOB NOT NULL,
    content TEXT  -- digest of the photo's bytes, where the face came from a file
);
CREATE INDEX IF NOT EXISTS faces_label ON faces (label);
-- enrol_folder asks which of each batch's photos are in already: without it, a full scan per batch
CREATE INDEX IF NOT EXISTS faces_source ON faces (source);
CREATE TABLE IF NOT EXISTS removed (id INTEGER PRIMARY KEY);
"""
# One face per photo and person, enforced by SQLite itself: two `gallery add` runs of the same
# folder at once both pass the "already enrolled?" look-up, and the second insert is dropped
# here instead of enrolling every photo twice. Faces without a source file (embeddings given
# directly, uploads) are not constrained.
PHOTO_ONCE = """
CREATE UNIQUE INDEX IF NOT EXISTS faces_photo ON faces (label, source, content)
    WHERE source IS NOT NULL AND content IS NOT NULL;
"""
_FACE_COLUMNS = "id, label, source, box, added"  # a GalleryFace, in its field order
# `IN` over one JSON array parameter: a list of any length, where one `?` per item would stop at
# SQLite's variable limit (32,766 in many builds) for a large batch of queries.
_IN_LIST = "(SELECT value FROM json_each(?))"


@dataclass(frozen=True)
class GalleryFace:
    """One enrolled face's metadata."""

    id: int
    label: str
    source: str | None
    box: Box | None
    added: float


class GalleryDatabase:
    """The connection to one gallery's `gallery.sqlite`; used by one thread at a time.

    Args:
        folder: the gallery folder.
        create: make the folder and database when they do not exist (else GalleryError).
        read_only: open without writing anything (no schema, no journal change).
    """

    def __init__(self, folder: Path, create: bool, read_only: bool = False):
        self.folder, self.read_only = folder, read_only
        path = folder / DB_FILE
        if not path.is_file():
            if not create or read_only:
                raise GalleryError(f"no gallery here (no {DB_FILE})", "not_found", folder)
            if folder.exists() and not folder.is_dir():
                raise GalleryError("exists and is not a folder", "damaged", folder)
            folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
        if not read_only and not writable:
            raise GalleryError(
                "cannot be written here (a read-only folder or file); search, list and info "
                "still work, as they only read",
                "read_only",
                folder,
            )
        self.db = self._connect(path)

    def _connect(self, path: Path) -> sqlite3.Connection:
        self.path, self.immutable = path, False
        try:
            if self.read_only:
                db, self.immutable = _open_read_only(path)
                self._signature = _file_signature(path)
            else:
                db = _open_for_writing(path)
        except sqlite3.DatabaseError as e:
            raise GalleryError(f"not a readable gallery ({e})", "damaged", self.folder) from None
        return db

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    # ---- transactions and meta -----------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; rolled back whole on any error."""
        if self.read_only:
            raise GalleryError("opened read-only: cannot write", "read_only", self.folder)
        # IMMEDIATE: take the write lock up front, so concurrent writers queue instead of
        # failing halfway with SQLITE_BUSY.
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def meta(self) -> dict[str, str]:
        """Every meta row: the encoder's identity, the format and the index epoch."""
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def write_meta(self, rows: dict[str, str]) -> None:
        """Store meta rows that are not there yet."""
        with self.transaction():
            self.db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", rows.items())

    def data_version(self) -> object:
        """Changes whenever another connection commits (SQLite's `data_version`).

        An immutable connection (a read-only folder with no WAL) sees no commits, so there the
        files' identity stands in for it, and the connection is opened again when they change.
        """
        if not self.immutable:
            return self.db.execute("PRAGMA data_version").fetchone()[0]
        if _file_signature(self.path) != self._signature:
            self.db.close()
            self.db = self._connect(self.path)  # which records the files' new signature
        return self._signature

    # ---- faces ---------------------------------------------------------------------------

    def insert_faces(
        self,
        labels: Sequence[str],
        sources: Sequence[str | None],
        boxes: Sequence[Box | None],
        vectors: np.ndarray,
        contents: Sequence[str | None],
        seen_up_to: int,
    ) -> tuple[list[int | None], tuple[np.ndarray, np.ndarray]]:
        """Insert faces in one transaction.

        Args:
            seen_up_to: the highest id the caller's index holds: every face committed after it
                by anyone else is read in the same transaction, before the new ones go in, so
                none of them can fall between the caller's catch-up and its own ids.

        Returns:
            The new ids (None for a photo enrolled under that label already: same source and
            content), and (ids, vectors) of the faces others committed after `seen_up_to`.
        """
        now = time.time()
        rows = zip(labels, sources, boxes, vectors, contents, strict=True)
        with self.transaction():
            missed = self.rows_after(seen_up_to, vectors.shape[1])
            return [
                _first(
                    self.db.execute(
                        "INSERT INTO faces (label, source, box, added, vector, content) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
                        (label, source, _box_json(box), now, vector.tobytes(), content),
                    ).fetchone()
                )
                for label, source, box, vector, content in rows
            ], missed

    def remove_faces(self, column: str, target: int | str) -> list[int]:
        """Delete the faces whose `column` ("id" or "label") is `target`, tombstoning their ids."""
        with self.transaction():
            ids = [
                row[0]
                for row in self.db.execute(f"SELECT id FROM faces WHERE {column} = ?", (target,))
            ]
            self.db.executemany("INSERT OR IGNORE INTO removed VALUES (?)", [(i,) for i in ids])
            self.db.executemany("DELETE FROM faces WHERE id = ?", [(i,) for i in ids])
        return ids

    def rows_after(self, last_id: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids `[M]` and vectors `[M, dim]` of every face with an id above `last_id`, in order."""
        rows = self.db.execute(
            "SELECT id, vector FROM faces WHERE id > ? ORDER BY id", (last_id,)
        ).fetchall()
        ids = np.array([row[0] for row in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
        return ids, vectors.reshape(-1, dim)

    def removed_ids(self) -> np.ndarray:
        """The tombstoned ids the index may still hold (until compaction)."""
        rows = self.db.execute("SELECT id FROM removed").fetchall()
        return np.array([row[0] for row in rows], dtype=np.int64)

    def start_epoch(self, epoch: int) -> None:
        """After compaction: no tombstones left, and index files of older epochs are void."""
        with self.transaction():
            self.db.execute("DELETE FROM removed")
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (str(epoch),))

    def erase_free_pages(self) -> None:
        """Rewrite the file from live rows only and empty the WAL, which may still hold pages
        written before a removal."""
        self.db.execute("VACUUM")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def count(self, what: str = "*") -> int:
        """`COUNT(what)` over the faces (e.g. `DISTINCT label`)."""
        return self.db.execute(f"SELECT COUNT({what}) FROM faces").fetchone()[0]

    def labels(self) -> dict[str, int]:
        """Each label with how many faces it has, by label."""
        rows = self.db.execute("SELECT label, COUNT(*) FROM faces GROUP BY label ORDER BY label")
        return dict(rows.fetchall())

    def faces(self, label: str | None = None) -> list[GalleryFace]:
        """The enrolled faces (of one label, or all), oldest first."""
        query, args = f"SELECT {_FACE_COLUMNS} FROM faces", ()
        if label is not None:
            query, args = query + " WHERE label = ?", (label,)
        return [_gallery_face(row) for row in self.db.execute(query + " ORDER BY id", args)]

    def faces_by_id(self, ids: Iterable[int]) -> list[GalleryFace]:
        """The faces with these ids (those still enrolled)."""
        rows = self.db.execute(
            f"SELECT {_FACE_COLUMNS} FROM faces WHERE id IN {_IN_LIST}", (json.dumps(list(ids)),)
        )
        return [_gallery_face(row) for row in rows]

    def enrolled(self, sources: Iterable[str]) -> set[tuple[str, str]]:
        """The (source, label) pairs already in the gallery among `sources`."""
        rows = self.db.execute(
            f"SELECT source, label FROM faces WHERE source IN {_IN_LIST}",
            (json.dumps(list(sources)),),
        )
        return set(rows.fetchall())


# `INSERT ... ON CONFLICT DO NOTHING RETURNING` (one face per photo) needs this SQLite.
MIN_SQLITE = (3, 35, 0)


OPEN_RETRY_SECONDS = 30.0


def _open_for_writing(path: Path) -> sqlite3.Connection:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise sqlite3.DatabaseError(
            f"SQLite {sqlite3.sqlite_version} is too old to write galleries (needs "
            f"{'.'.join(map(str, MIN_SQLITE))} or newer)"
        )
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    deadline = time.monotonic() + OPEN_RETRY_SECONDS
    while True:
        try:
            _set_up(db)
            return db
        except sqlite3.OperationalError as e:
            # Two processes creating one gallery at once: SQLite answers "locked" at once,
            # without its busy timeout, to a new file's switch to WAL or a read lock's upgrade.
            # Every step is idempotent, so the loser tries again.
            if "locked" in str(e) and time.monotonic() < deadline:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                time.sleep(0.05)
                continue
            db.close()
            raise
        except sqlite3.DatabaseError:
            db.close()
            raise


def _set_up(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed add survives power loss, not only a killed process.
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA secure_delete=ON")
    db.executescript(SCHEMA)
    _add_content_column(db)
    db.executescript(PHOTO_ONCE)


def _add_content_column(db: sqlite3.Connection) -> None:
    """Galleries made before photos were told apart by content get the column (all NULL: their
    faces stay unconstrained, new adds are). Under the write lock, checked again inside it: two
    processes opening an old gallery at once must not both add it."""
    def has_column() -> bool:
        return "content" in {row[1] for row in db.execute("PRAGMA table_info(faces)")}

    if has_column():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if not has_column():
            db.execute("ALTER TABLE faces ADD COLUMN content TEXT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _open_read_only(path: Path) -> tuple[sqlite3.Connection, bool]:
    """A connection that writes nothing, even where the folder cannot be written, and whether
    it is immutable.

    A WAL database's readers need its `-shm` file; where it is absent (the last writer closed
    cleanly, so there is no `-wal` either) and cannot be made, the file is read as immutable.
    """
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=60)
    try:
        db.execute("SELECT COUNT(*) FROM meta").fetchone()
        return db, False
    except sqlite3.OperationalError:
        db.close()
        if Path(f"{path}-wal").exists():
            raise  # a journal is there to be read: immutable would miss its commits
    db = sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)
    try:
        db.execute("SELECT COUNT(*) FROM meta").fetchone()  # fails here, as a damaged gallery
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db, True


def _file_signature(path: Path) -> tuple:
    """What changes when anyone writes the database: its file's and its WAL's identity."""
    signature = []
    for file in (path, Path(f"{path}-wal")):
        try:
            stat = file.stat()
            signature.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
        except FileNotFoundError:
            signature.append(None)
    return tuple(signature)


def _first(row: tuple | None) -> int | None:
    return None if row is None else row[0]


def _box_json(box: Box | None) -> str | None:
    return None if box is None else json.dumps(box.as_list())


def _gallery_face(row: tuple) -> GalleryFace:
    face_id, label, source, box, added = row
    return GalleryFace(face_id, label, source, Box(*json.loads(box)) if box else None, added)
