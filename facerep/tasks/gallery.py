"""A persistent face gallery: enrol labelled faces, search by face, remove for good.

A gallery is a folder:
- `gallery.sqlite`, the source of truth: one row per face (label, source, box, vector) and the
  encoder that made the vectors. One transaction per `add`, so a crash (even kill -9) leaves a
  prefix of the adds and never a vector without its metadata. WAL journal, so readers in other
  processes never block on the writer; `secure_delete`, so a removed row's bytes are zeroed.
- `index-<epoch>.faiss`, a derived FAISS index (`VectorIndex`), saved now and then and caught
  up from SQLite on open. Removed ids are tombstoned and left out of every search at once;
  `compact()` rebuilds the index without them, clears the tombstones, bumps the epoch (an
  index file of an older epoch is never trusted again), vacuums SQLite and deletes old files:
  after it, a removed face's vector and metadata are gone from disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from facerep.encoders.base import Encoder, encoder_identity, l2_normalise
from facerep.encoders.calibration import current_threshold
from facerep.encoders.photos import largest_face
from facerep.encoders.registry import resolve_encoder
from facerep.images import ImageSource
from facerep.tasks.index_policy import IndexChoice, choose_kind
from facerep.tasks.locks import ReadWriteLock
from facerep.tasks.vector_index import VectorIndex
from facerep.types import Box, Match

DB_FILE = "gallery.sqlite"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1
# A saved index may lag SQLite by this share of its rows before closing rewrites it; the lag
# is replayed from SQLite on open, which is far cheaper than rewriting a large index each time.
RESAVE_FRACTION = 0.01
# A label names a person, not a document: one line of at most this many characters.
MAX_LABEL = 200
LABEL_RULE = (
    f"must be 1-{MAX_LABEL} characters on one line, not only spaces, with no control characters"
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a removed id is never reused
    label TEXT NOT NULL,
    source TEXT,
    box TEXT,
    added REAL NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_label ON faces (label);
-- enrol_folder asks which of each batch's photos are in already: without it, a full scan per batch
CREATE INDEX IF NOT EXISTS faces_source ON faces (source);
CREATE TABLE IF NOT EXISTS removed (id INTEGER PRIMARY KEY);
"""
_FACE_COLUMNS = "id, label, source, box, added"  # a GalleryFace, in its field order
# `IN` over one JSON array parameter: a list of any length, where one `?` per item would stop at
# SQLite's variable limit (32,766 in many builds) for a large batch of queries.
_IN_LIST = "(SELECT value FROM json_each(?))"


def is_valid_label(label: object) -> bool:
    """Whether `label` can name a person in a gallery (see `LABEL_RULE`)."""
    import unicodedata

    # Unicode category C: controls (ANSI escapes, tabs, line breaks), format characters (bidi
    # overrides that reorder a printed line), surrogates (undecodable bytes), unassigned.
    return (
        isinstance(label, str)
        and bool(label.strip())
        and len(label) <= MAX_LABEL
        and not any(unicodedata.category(c)[0] == "C" for c in label)
    )


# What went wrong, for callers that answer differently (the HTTP service picks a status by it):
# not_found: no gallery at the path; encoder_mismatch: it holds another encoder's embeddings;
# damaged: the path or database cannot be read as a gallery; unsupported: another format
# version; invalid: the arguments (embeddings, labels, queries) do not fit the gallery.
GalleryErrorKind = Literal["not_found", "encoder_mismatch", "damaged", "unsupported", "invalid"]



class GalleryError(ValueError):
    """A gallery that cannot do what was asked; the message is one line: `path: reason`.

    Attributes:
        reason: what is wrong, without the path (safe to show someone who must not see it).
        kind: which kind of failure (`GalleryErrorKind`).
        path: the gallery folder, or None when the reason is about the arguments alone.
    """

    def __init__(self, reason: str, kind: GalleryErrorKind, path: Path | None = None):
        super().__init__(reason if path is None else f"{path}: {reason}")
        self.reason = reason
        self.kind = kind
        self.path = path

    def __reduce__(self) -> tuple:
        return type(self), (self.reason, self.kind, self.path)  # picklable (worker processes)


@dataclass(frozen=True)
class GalleryFace:
    """One enrolled face's metadata."""

    id: int
    label: str
    source: str | None
    box: Box | None
    added: float


class Gallery:
    """Labelled face embeddings on disk, searchable by face; reopened by path.

    Args:
        path: the gallery folder (created on first use unless `create=False`).
        encoder: the encoder for new faces and queries (an Encoder, a name or a run folder).
            A new gallery defaults to dlib; an existing one defaults to the encoder it was
            built with and refuses any other.
        index: "auto" (exact up to 100k faces, ivf beyond), "exact", "ivf" or "hnsw"
            (see `facerep.tasks.vector_index`).
        create: make the gallery if it does not exist (else raise GalleryError).
    """

    def __init__(
        self,
        path: str | Path,
        encoder: Encoder | str | Path | None = None,
        *,
        index: IndexChoice = "auto",
        create: bool = True,
    ):
        self.path = Path(path)
        self.index_choice = index
        choose_kind(index, 0)  # validate early
        # Searches share the index; adds, removals and compaction take it alone. The SQLite
        # connection is used by one thread at a time.
        self._rw = ReadWriteLock()
        self._db_lock = threading.RLock()
        if isinstance(encoder, str | Path):
            # Before anything is created: an encoder that cannot load leaves no gallery behind.
            encoder = resolve_encoder(encoder)
        self._db = self._connect(create)
        try:
            self._encoder = self._check_encoder(encoder)
            meta = self._meta()
            self.dim, self.encoder_name = int(meta["dim"]), meta["encoder"]
            self._index: VectorIndex | None = None
            self._load_index()
        except BaseException:
            # A gallery that cannot be used (another encoder, a damaged index table) must not
            # keep its database open until garbage collection.
            self._db.close()
            raise

    # ---- opening -------------------------------------------------------------------------

    def _connect(self, create: bool) -> sqlite3.Connection:
        db_path = self.path / DB_FILE
        if not db_path.is_file():
            if not create:
                raise GalleryError(f"no gallery here (no {DB_FILE})", "not_found", self.path)
            if self.path.exists() and not self.path.is_dir():
                raise GalleryError("exists and is not a folder", "damaged", self.path)
            self.path.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False, timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed add survives power loss, not only a killed process.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA secure_delete=ON")
            db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            db.close()
            raise GalleryError(f"not a readable gallery ({e})", "damaged", self.path) from None
        return db

    def _check_encoder(self, encoder: Encoder | str | Path | None) -> Encoder | None:
        meta = self._meta()
        if not meta:
            chosen = resolve_encoder(encoder)
            self._write_meta(chosen)
            return chosen
        if int(meta.get("format", 0)) != FORMAT_VERSION:
            raise GalleryError(
                f"gallery format {meta.get('format')} is not supported", "unsupported", self.path
            )
        if encoder is None:
            return None  # loaded from the stored source when a face needs embedding
        chosen = resolve_encoder(encoder)
        identity = encoder_identity(chosen)
        if (identity.name, identity.dim, identity.fingerprint) != (
            meta["encoder"], int(meta["dim"]), meta["fingerprint"]
        ):
            raise GalleryError(
                f"holds {meta['encoder']} embeddings ({meta['dim']}-D); encoder "
                f"{chosen.name} ({chosen.dim}-D) does not match; use {meta['encoder_source']}",
                "encoder_mismatch",
                self.path,
            )
        return chosen

    def _meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _write_meta(self, encoder: Encoder) -> None:
        identity = encoder_identity(encoder)
        rows = {
            "format": str(FORMAT_VERSION),
            "encoder": identity.name,
            "encoder_source": identity.source,
            "dim": str(identity.dim),
            "fingerprint": identity.fingerprint,
            "epoch": "0",
        }
        with self._transaction():
            self._db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", rows.items())

    @property
    def encoder(self) -> Encoder:
        """The gallery's encoder, loaded from where the gallery says it came from."""
        with self._db_lock:
            if self._encoder is None:
                self._encoder = resolve_encoder(self._meta()["encoder_source"])
            return self._encoder

    # ---- the derived index ---------------------------------------------------------------

    def _load_index(self) -> None:
        # Callers hold the write lock (or are the constructor).
        self._epoch = int(self._meta()["epoch"])
        self._index = self._read_index_file()
        self._saved_rows = len(self._index) if self._index is not None else 0
        if self._index is None:
            self._index = self._build_index_from_db()
        else:
            self._catch_up()
        self._removed = self._removed_ids()
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]

    def _index_file(self, epoch: int) -> Path:
        return self.path / f"index-{epoch}.faiss"

    def _read_index_file(self) -> VectorIndex | None:
        path = self._index_file(self._epoch)
        try:
            index = VectorIndex.load(path)
        except (RuntimeError, ValueError, OSError):
            return None  # absent or unreadable: SQLite holds everything to rebuild it
        return index if index.dim == self.dim else None

    def _build_index_from_db(self) -> VectorIndex:
        ids, vectors = self._rows_after(-1)
        kind = choose_kind(self.index_choice, len(ids))
        return VectorIndex.build(vectors.reshape(-1, self.dim), ids, kind)

    def _catch_up(self) -> None:
        """Add to the in-memory index every row committed since it was last brought up to date."""
        ids, vectors = self._rows_after(self._index.last_id())
        self._index.add(vectors, ids)

    def _rows_after(self, last_id: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._db.execute(
            "SELECT id, vector FROM faces WHERE id > ? ORDER BY id", (last_id,)
        ).fetchall()
        ids = np.array([row[0] for row in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
        return ids, vectors.reshape(-1, self.dim)

    def _removed_ids(self) -> np.ndarray:
        rows = self._db.execute("SELECT id FROM removed").fetchall()
        return np.array([row[0] for row in rows], dtype=np.int64)

    def _refresh(self) -> None:
        """`_sync` under the write lock, when another process has committed something."""
        with self._db_lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            with self._rw.write(), self._db_lock:
                self._sync()

    def _sync(self) -> None:
        """Take in what other processes committed since we last looked (cheap when nothing)."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        if int(self._meta()["epoch"]) != self._epoch:
            self._load_index()  # compacted elsewhere: our index may hold removed faces
            return
        self._catch_up()
        self._removed = self._removed_ids()
        self._data_version = version

    # ---- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE: take the write lock up front, so concurrent writers queue instead of
        # failing halfway with SQLITE_BUSY.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add(
        self,
        images: ImageSource | Sequence[ImageSource],
        label: str,
        *,
        sources: Sequence[str | None] | None = None,
    ) -> list[int]:
        """Enrol the largest face of each photo under `label`; returns the new face ids.

        Every photo is read and embedded before anything is written, so a photo with no face
        or a corrupt file (NoFaceError, ImageError) leaves the gallery as it was.
        """
        batch = images if isinstance(images, list | tuple) else [images]
        faces = [largest_face(image, self.encoder) for image in batch]
        if sources is None:
            sources = [image if isinstance(image, str | Path) else None for image in batch]
        return self.add_embeddings(
            np.stack([face.embedding for face in faces]) if faces else np.zeros((0, self.dim)),
            [label] * len(faces),
            sources=[None if s is None else str(s) for s in sources],
            boxes=[face.box for face in faces],
        )

    def add_embeddings(
        self,
        embeddings: np.ndarray,
        labels: Sequence[str],
        *,
        sources: Sequence[str | None] | None = None,
        boxes: Sequence[Box | None] | None = None,
    ) -> list[int]:
        """Enrol `[N, D]` embeddings made by the gallery's encoder, in one transaction."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        self._check_embeddings(embeddings, labels)
        vectors = l2_normalise(embeddings.reshape(len(labels), -1))
        sources = list(sources) if sources is not None else [None] * len(labels)
        boxes = list(boxes) if boxes is not None else [None] * len(labels)
        now = time.time()
        with self._rw.write(), self._db_lock:
            self._sync()
            with self._transaction():
                ids = [
                    self._db.execute(
                        "INSERT INTO faces (label, source, box, added, vector) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (label, source, _box_json(box), now, vector.tobytes()),
                    ).lastrowid
                    for label, source, box, vector in zip(
                        labels, sources, boxes, vectors, strict=True
                    )
                ]
            self._index.add(vectors, np.array(ids, dtype=np.int64))
            return ids

    def _check_embeddings(self, embeddings: np.ndarray, labels: Sequence[str]) -> None:
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise GalleryError(
                f"holds {self.dim}-D {self.encoder_name} embeddings, got shape {embeddings.shape}",
                "invalid",
                self.path,
            )
        if len(labels) != len(embeddings):
            raise GalleryError(f"{len(embeddings)} embeddings but {len(labels)} labels", "invalid")
        if not np.isfinite(embeddings).all():
            raise GalleryError("embeddings contain NaN or infinity", "invalid")
        for label in labels:
            if not is_valid_label(label):
                raise GalleryError(f"face label {label!r}: {LABEL_RULE}", "invalid")

    def remove(self, target: int | str) -> int:
        """Remove a face by id (int) or every face of a label (str); returns how many.

        From now on no search returns them; `compact()` then erases them from disk.
        """
        column = "id" if isinstance(target, int | np.integer) else "label"
        with self._rw.write(), self._db_lock:
            self._sync()
            with self._transaction():
                ids = [
                    row[0]
                    for row in self._db.execute(
                        f"SELECT id FROM faces WHERE {column} = ?", (target,)
                    )
                ]
                self._db.executemany(
                    "INSERT OR IGNORE INTO removed VALUES (?)", [(i,) for i in ids]
                )
                self._db.executemany("DELETE FROM faces WHERE id = ?", [(i,) for i in ids])
            self._removed = np.union1d(self._removed, np.array(ids, dtype=np.int64))
            return len(ids)

    def compact(self) -> None:
        """Rebuild the index without removed faces and erase their bytes from every file."""
        with self._rw.write(), self._db_lock, self._file_lock():
            self._sync()
            next_epoch = self._epoch + 1
            index = self._build_index_from_db()
            index.save(self._index_file(next_epoch))
            with self._transaction():
                self._db.execute("DELETE FROM removed")
                self._db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'epoch'", (str(next_epoch),)
                )
            # VACUUM rewrites the file from live rows only; the checkpoint empties the WAL,
            # which may still hold pages written before the removal.
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._index, self._epoch, self._removed = index, next_epoch, np.empty(0, np.int64)
            self._saved_rows = len(index)
            self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
            self._delete_stale_index_files()

    def save_index(self) -> None:
        """Write the in-memory index to disk now (otherwise `close` does when it is worth it)."""
        with self._rw.write(), self._db_lock:
            self._save_index()

    def _save_index(self) -> None:
        with self._file_lock():
            self._sync()
            kind = choose_kind(self.index_choice, len(self._index))
            if kind != self._index.kind:
                self._index = VectorIndex.build(self._index.vectors(), self._index.ids(), kind)
            self._index.save(self._index_file(self._epoch))
            self._saved_rows = len(self._index)

    def close(self) -> None:
        """Save the index if it has grown enough since it was written, and close the database."""
        with self._rw.write(), self._db_lock:
            if self._db is None:
                return
            unsaved = len(self._index) - self._saved_rows
            if unsaved > 0 and unsaved >= RESAVE_FRACTION * self._saved_rows:
                self._save_index()
            self._db.close()
            self._db = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        # Index files are written by whoever saves; an OS lock keeps two processes from
        # racing a save against a compaction.
        with open(self.path / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _delete_stale_index_files(self) -> None:
        for path in self.path.glob("index-*.faiss"):
            if path != self._index_file(self._epoch):
                path.unlink(missing_ok=True)

    # ---- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count("SELECT COUNT(*) FROM faces")

    def _count(self, query: str) -> int:
        with self._db_lock:
            return self._db.execute(query).fetchone()[0]

    def labels(self) -> dict[str, int]:
        """Each label with how many faces it has, by label."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT label, COUNT(*) FROM faces GROUP BY label ORDER BY label"
            )
            return dict(rows.fetchall())

    def faces(self, label: str | None = None) -> list[GalleryFace]:
        """The enrolled faces (of one label, or all), oldest first."""
        query = f"SELECT {_FACE_COLUMNS} FROM faces"
        args: tuple = ()
        if label is not None:
            query, args = query + " WHERE label = ?", (label,)
        with self._db_lock:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [_gallery_face(row) for row in rows]

    def enrolled(self, sources: Iterable[str]) -> set[tuple[str, str]]:
        """The (source, label) pairs already in the gallery among `sources`."""
        with self._db_lock:
            rows = self._db.execute(
                f"SELECT source, label FROM faces WHERE source IN {_IN_LIST}",
                (json.dumps(list(sources)),),
            ).fetchall()
        return set(rows)

    def search(self, image: ImageSource, k: int = 5) -> list[Match]:
        """The `k` enrolled faces nearest to the largest face in `image`, nearest first.

        Raises:
            NoFaceError: no face in the photo. ImageError: the photo cannot be read.
        """
        return self.search_embedding(largest_face(image, self.encoder).embedding, k)

    def search_embedding(self, embedding: np.ndarray, k: int = 5) -> list[Match]:
        """The `k` enrolled faces nearest to a `[D]` embedding of the gallery's encoder."""
        return self.search_embeddings(np.asarray(embedding)[None], k)[0]

    def search_embeddings(self, embeddings: np.ndarray, k: int = 5) -> list[list[Match]]:
        """`search_embedding` for each row of `[Q, D]` embeddings."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise GalleryError(
                f"queries must be [Q, {self.dim}] ({self.encoder_name}), got {embeddings.shape}",
                "invalid",
                self.path,
            )
        self._refresh()
        with self._rw.read():
            scores, ids = self._index.search(l2_normalise(embeddings), k, exclude=self._removed)
        with self._db_lock:
            found = {face.id: face for face in self._faces_by_id(np.unique(ids[ids >= 0]))}
        threshold = current_threshold(self._encoder) if self._encoder else None
        return [
            [
                _match(found[face_id], float(score), threshold)
                for score, face_id in zip(row_scores, row_ids, strict=True)
                if face_id in found
            ]
            for row_scores, row_ids in zip(scores, ids.tolist(), strict=True)
        ]

    def _faces_by_id(self, ids: np.ndarray) -> list[GalleryFace]:
        rows = self._db.execute(
            f"SELECT {_FACE_COLUMNS} FROM faces WHERE id IN {_IN_LIST}",
            (json.dumps(ids.tolist()),),
        ).fetchall()
        return [_gallery_face(row) for row in rows]

    def info(self) -> dict[str, object]:
        """What the gallery holds: faces, labels, encoder, index kind and files on disk."""
        self._refresh()
        with self._db_lock:
            meta = self._meta()
        with self._rw.read():
            removed_pending, kind = len(self._removed), self._index.kind
        return {
            "path": str(self.path),
            "faces": len(self),
            "labels": self._count("SELECT COUNT(DISTINCT label) FROM faces"),
            "encoder": meta["encoder"],
            "encoder_source": meta["encoder_source"],
            "dim": int(meta["dim"]),
            "index": kind,
            "removed_pending_compaction": removed_pending,
            "bytes_on_disk": sum(p.stat().st_size for p in self.path.iterdir() if p.is_file()),
        }


def _box_json(box: Box | None) -> str | None:
    return None if box is None else json.dumps(box.as_list())


def _gallery_face(row: tuple) -> GalleryFace:
    face_id, label, source, box, added = row
    return GalleryFace(face_id, label, source, Box(*json.loads(box)) if box else None, added)


def _match(face: GalleryFace, similarity: float, threshold: float | None) -> Match:
    distance = 1.0 - similarity
    return Match(
        id=face.id,
        label=face.label,
        distance=distance,
        source=face.source,
        box=face.box,
        same=None if threshold is None else distance <= threshold,
    )
