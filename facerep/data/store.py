"""On-disk prepared dataset: aligned crops in one uint8 memory-mapped array plus a SQLite manifest.

Layout of a dataset folder:
    faces.u8          raw uint8 array `[N, S, S, 3]`, append-only, opened with `np.memmap`
    manifest.sqlite   `meta` (crop size, alignment), `faces` (a row per crop), `files` (per input)
    report.csv        every input that produced no face, with the reason

Crash safety: a batch's crops are appended and fsynced *before* the transaction that adds their
manifest rows commits, and the manifest is the only source of truth for N. A kill -9 at any point
leaves bytes past N that the next writer truncates; readers never see a crop without its row.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from facerep.files import atomic_write

CROPS_FILE = "faces.u8"
MANIFEST_FILE = "manifest.sqlite"
REPORT_FILE = "report.csv"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, key TEXT NOT NULL, hash TEXT, identity TEXT,
    split TEXT, status TEXT NOT NULL, reason TEXT, faces INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS files_hash ON files(hash);
CREATE TABLE IF NOT EXISTS faces (
    row INTEGER PRIMARY KEY, file_hash TEXT NOT NULL, source TEXT NOT NULL, identity TEXT,
    split TEXT, face_index INTEGER NOT NULL, box TEXT NOT NULL, score REAL NOT NULL,
    landmarks TEXT NOT NULL, yaw REAL, pitch REAL, roll REAL, stage TEXT
);
"""

# Outcomes of an input file. `ok` produced faces; every other outcome is listed in report.csv.
FileStatus = Literal[
    "ok",
    "no_face",
    "implausible_landmarks",
    "too_small",
    "corrupt",
    "refused",
    "unreadable",
    "duplicate",
    "error",
    "ignored",
]
# Inputs that gave no face of their own fault: no face in them, or not a usable image. Not
# failures: a `duplicate` (its content is stored once, under its first path) and an `ignored`
# file (its name is not an image's, e.g. a README); both are counted apart.
FAILED_STATUSES: frozenset[FileStatus] = frozenset(
    {"no_face", "implausible_landmarks", "too_small", "corrupt", "refused", "unreadable", "error"}
)
# The failures that are errors: files that could not be read or decoded, and internal bugs.
ERROR_STATUSES: frozenset[FileStatus] = frozenset({"corrupt", "refused", "unreadable", "error"})
# The `files` rows whose outcome a later run does not keep but tries again: inputs that could
# not be read at all (no hash), and inputs refused for their size (the limit may be raised).
_RETRIED = "(hash IS NULL OR status = 'refused')"
# What `retry_failed` tries again as well: the inputs a better search may still find a face in.
# `too_small` stays: no detector finds a face in fewer than 12 pixels.
RETRYABLE_STATUSES: frozenset[FileStatus] = frozenset(
    {"no_face", "implausible_landmarks", "error"}
)


@dataclass
class FaceRow:
    """One aligned face to store: its crop and the manifest fields that describe it."""

    crop: np.ndarray
    face_index: int
    box: list[float]
    score: float
    landmarks: list[list[float]]
    pose: list[float]
    stage: str = "photo"  # the detection cascade's stage that found it


@dataclass
class FileRecord:
    """The outcome of one input file, with the faces it produced."""

    path: str
    hash: str | None
    status: FileStatus
    reason: str | None = None
    identity: str | None = None
    split: str | None = None
    faces: list[FaceRow] = field(default_factory=list)
    key: str = ""  # path relative to the source folder, how re-runs recognise the input

    def __post_init__(self) -> None:
        self.key = self.key or self.path


class StoredFile(NamedTuple):
    """One input's row of the manifest's `files` table, as a reader sees it."""

    path: str
    hash: str | None
    identity: str | None
    split: str | None
    status: FileStatus
    reason: str | None
    faces: int


class DatasetError(ValueError):
    """A dataset folder that cannot be opened or written as asked; the message names it."""


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30.0)
    connection.execute("PRAGMA journal_mode=WAL")  # readers run while a prepare appends
    connection.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss
    return connection


class DatasetWriter:
    """Appends files and faces to a dataset folder, one committed batch at a time.

    Only one writer may hold a folder; a second one fails at once with a clear message.

    With `retry_failed`, inputs whose outcome is in `RETRYABLE_STATUSES` are tried again (and
    their old outcome replaced), and the `meta` keys in `replaceable` may differ from the stored
    ones: the new values are recorded (each face's `stage` says how it was found).
    """

    def __init__(
        self,
        root: str | Path,
        size: int,
        meta: dict[str, object],
        *,
        retry_failed: bool = False,
        replaceable: frozenset[str] = frozenset(),
    ):
        self.root = Path(root)
        self.size = size
        self._retried = _RETRIED
        if retry_failed:
            statuses = ", ".join(f"'{status}'" for status in sorted(RETRYABLE_STATUSES))
            self._retried = f"({_RETRIED[1:-1]} OR status IN ({statuses}))"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = _take_lock(self.root)
        try:
            self._db = _connect(self.root / MANIFEST_FILE)
            self._db.executescript(_SCHEMA)
            _add_stage_column(self._db)
        except sqlite3.DatabaseError as e:
            self._lock.close()
            raise DatasetError(f"{self.root / MANIFEST_FILE}: damaged manifest ({e})") from None
        self._check_meta(
            {"size": size, "format": FORMAT_VERSION, **meta}, replaceable if retry_failed else ()
        )
        self.count = _face_count(self._db)
        # Read-write, not append: every batch is written at the offset its rows will claim.
        fd = os.open(self.root / CROPS_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        self._crops = os.fdopen(fd, "r+b")
        # Drop bytes a crash left past the last committed row.
        self._crops.truncate(self.count * self._frame_bytes)

    @property
    def _frame_bytes(self) -> int:
        return self.size * self.size * 3

    def _check_meta(self, wanted: dict[str, object], replaceable=()) -> None:
        """Record `wanted` in a new dataset; refuse to add to one that was made otherwise.

        A key an older dataset lacks is recorded now, as nothing says how it was made; a key in
        `replaceable` takes the new value.
        """
        stored = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        for key, value in wanted.items():
            text = json.dumps(value)
            if key not in stored or key in replaceable:
                with self._db:
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, text))
            elif json.loads(stored[key]) != json.loads(text):  # 0 and 0.0 are the same setting
                raise DatasetError(
                    f"{self.root}: prepared with {key}={stored[key]}, not {text}; "
                    f"use the same {key} or a new output folder"
                )

    def known_inputs(self) -> list[tuple[str, str, str, str]]:
        """(content hash, key, path, status) of every input whose outcome stands, in order.

        Unreadable and refused inputs are left out: a re-run tries them again, and `add`
        replaces their old outcome.
        """
        rows = self._db.execute(
            f"SELECT hash, key, path, status FROM files WHERE NOT {self._retried} ORDER BY id"
        )
        return rows.fetchall()

    def add(self, records: Sequence[FileRecord]) -> None:
        """Append the crops of `records`, fsync, then commit their manifest rows atomically."""
        faces = [(record, face) for record in records for face in record.faces]
        if faces:
            self._crops.seek(self.count * self._frame_bytes)
            for _, face in faces:
                self._crops.write(np.ascontiguousarray(face.crop, dtype=np.uint8).tobytes())
            self._crops.flush()
            os.fsync(self._crops.fileno())
        with self._db:
            # An input retried (see `known_inputs`) has its old outcome replaced.
            self._db.executemany(
                f"DELETE FROM files WHERE key = ? AND {self._retried}",
                [(r.key,) for r in records],
            )
            self._db.executemany(
                "INSERT INTO files (path, key, hash, identity, split, status, reason, faces) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.path, r.key, r.hash, r.identity, r.split, r.status, r.reason, len(r.faces))
                    for r in records
                ],
            )
            self._db.executemany(
                "INSERT INTO faces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    _face_values(self.count + i, record, face)
                    for i, (record, face) in enumerate(faces)
                ],
            )
        self.count += len(faces)

    def write_report(self) -> Path:
        """Rewrite report.csv (atomically) from every file that produced no face."""
        rows = self._db.execute(
            "SELECT path, status, reason FROM files WHERE status != 'ok' ORDER BY id"
        ).fetchall()
        path = self.root / REPORT_FILE
        with atomic_write(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "status", "reason"])
            writer.writerows(rows)
        return path

    def close(self) -> None:
        """Close the crops file and the manifest, and release the folder."""
        self._crops.close()
        self._db.close()
        self._lock.close()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _face_values(row: int, record: FileRecord, face: FaceRow) -> tuple:
    yaw, pitch, roll = face.pose
    return (
        row,
        record.hash,
        record.path,
        record.identity,
        record.split,
        face.face_index,
        json.dumps(face.box),
        face.score,
        json.dumps(face.landmarks),
        yaw,
        pitch,
        roll,
        face.stage,
    )


def _add_stage_column(db: sqlite3.Connection) -> None:
    """Give a dataset made before the detection cascade its `faces.stage` column (NULL there)."""
    if _stage_column(db) == "NULL":
        with db:
            db.execute("ALTER TABLE faces ADD COLUMN stage TEXT")


def _take_lock(root: Path):
    lock = open(root / LOCK_FILE, "w")  # noqa: SIM115 - held for the writer's lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DatasetError(f"{root}: another facerep prepare is writing this folder") from None
    return lock


def _stage_column(db: sqlite3.Connection) -> str:
    """`stage`, or NULL for a dataset prepared before the cascade (read-only: not migrated)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(faces)")}
    return "stage" if "stage" in columns else "NULL"


def _face_count(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]


class PreparedDataset:
    """Read-only view of a prepared dataset: crops as a memmap, manifest columns as arrays.

    Attributes:
        crops: `[N, S, S, 3]` uint8 memmap of aligned faces.
        identities: `[N]` identity names (None where the layout had none).
        sources: `[N]` source paths; `face_index`: `[N]` index of the face within its image.
        landmarks: `[N, 5, 2]` landmarks in crop pixels; `poses`: `[N, 3]` yaw, pitch, roll.
        boxes: `[N, 4]` detector boxes in source pixels; `scores`: `[N]` detector scores.
        splits: `[N]` source split folder (e.g. "train"), None where there was none.
        stages: `[N]` the detection cascade's stage that found each face (None in datasets
            prepared before the cascade).
        files: a `StoredFile` per input ever recorded, whatever its outcome, in order.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest = self.root / MANIFEST_FILE
        if not manifest.is_file():
            raise DatasetError(f"{root}: not a prepared dataset (no {MANIFEST_FILE})")
        db = sqlite3.connect(f"file:{manifest}?mode=ro", uri=True, timeout=30.0)
        try:
            self.meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
            rows = db.execute(
                "SELECT source, identity, split, face_index, box, score, landmarks, yaw, pitch,"
                f" roll, {_stage_column(db)} FROM faces ORDER BY row"
            ).fetchall()
            self.files = [
                StoredFile(*row)
                for row in db.execute(
                    "SELECT path, hash, identity, split, status, reason, faces FROM files"
                    " ORDER BY id"
                )
            ]
        except (sqlite3.DatabaseError, json.JSONDecodeError) as e:
            raise DatasetError(f"{manifest}: damaged manifest ({e})") from None
        finally:
            db.close()
        self.size = int(self.meta["size"])
        self._set_columns(rows)
        self.crops = _open_crops(self.root / CROPS_FILE, len(rows), self.size)

    def _set_columns(self, rows: list[tuple]) -> None:
        columns = list(zip(*rows, strict=True)) if rows else [()] * 11
        self.sources = np.array(columns[0], dtype=object)
        self.identities = np.array(columns[1], dtype=object)
        self.splits = np.array(columns[2], dtype=object)
        self.face_index = np.array(columns[3], dtype=np.int64)
        self.boxes = np.array([json.loads(b) for b in columns[4]], dtype=np.float32).reshape(-1, 4)
        self.scores = np.array(columns[5], dtype=np.float32)
        self.landmarks = np.array([json.loads(lm) for lm in columns[6]], dtype=np.float32).reshape(
            -1, 5, 2
        )
        self.poses = np.array(columns[7:10], dtype=np.float32).T.reshape(-1, 3)
        self.stages = np.array(columns[10], dtype=object)

    def __len__(self) -> int:
        return len(self.sources)

    def outcomes(self) -> Counter[str]:
        """Count of input files by status (`FileStatus`)."""
        return Counter(f.status for f in self.files)

    def failures(self) -> dict[str, int]:
        """Count of input files that failed (`FAILED_STATUSES`), by status."""
        return {s: n for s, n in self.outcomes().items() if s in FAILED_STATUSES}


def _open_crops(path: Path, count: int, size: int) -> np.ndarray:
    shape = (count, size, size, 3)
    if count == 0:
        return np.zeros(shape, dtype=np.uint8)
    if path.stat().st_size < count * size * size * 3:
        raise DatasetError(f"{path}: holds fewer crops than the manifest lists (damaged dataset)")
    return np.memmap(path, dtype=np.uint8, mode="r", shape=shape)


def open_dataset(root: str | Path) -> PreparedDataset:
    """Open a prepared dataset folder for reading."""
    return PreparedDataset(root)
