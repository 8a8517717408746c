"""Ingest: walk a source, detect and align every face, and append them to a prepared dataset.

The parent process reads and hashes each file (so re-runs and exact duplicates are skipped before
any detection work), worker processes decode, detect, landmark and align, and the parent commits
results in batches through `DatasetWriter`, so a crash loses at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from facerep.data.sources import IgnoredFile, Layout, SourceItem, walk_source
from facerep.data.store import DatasetWriter, FaceRow, FileRecord
from facerep.faces.align import DEFAULT_PADDING, alignment_template
from facerep.faces.dlib_models import DetectorName
from facerep.faces.find import ImageTooSmallError, find_faces
from facerep.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    decode_image,
    load_image,
    read_image_bytes,
)

FacesPerImage = Literal["auto", "largest", "all"]

# A worker process is started only for every this many inputs (see `_useful_workers`).
FILES_PER_WORKER = 100


@dataclass(frozen=True)
class PrepareOptions:
    """How faces are found and cropped; stored in the dataset's meta so re-runs stay consistent."""

    size: int = 112  # crop side in pixels; 64 for small models
    padding: float = DEFAULT_PADDING  # margin around the 5-point template (dlib's convention)
    detector: DetectorName = "hog"
    upsample: int = 0  # extra 2x upsamplings, for small faces in large photos
    min_face: float = 0.0  # drop detections narrower than this (source pixels)
    # "auto": the largest face when the folder names the identity (a second face is someone
    # else), every face in an unlabeled folder.
    faces: FacesPerImage = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class PrepareSummary:
    """What one prepare run did: counts by outcome, the faces it added, and where the report is."""

    found: int = 0
    already_done: int = 0
    outcomes: Counter = field(default_factory=Counter)
    faces_added: int = 0
    total_faces: int = 0
    errors: list[str] = field(default_factory=list)
    report: Path | None = None

    @property
    def failed(self) -> int:
        """Inputs that produced no face this run (duplicates and ignored names excluded)."""
        return sum(
            n for status, n in self.outcomes.items() if status not in ("ok", "duplicate", "ignored")
        )


Progress = Callable[[int, int], None]


def prepare_dataset(
    source: str | Path,
    out: str | Path,
    options: PrepareOptions | None = None,
    *,
    workers: int = 1,
    layout: Layout = "auto",
    split: str | None = None,
    commit_every: int = 64,
    on_progress: Progress | None = None,
) -> PrepareSummary:
    """Detect, align and store every face under `source` into the dataset folder `out`.

    Re-running on the same `out` skips inputs already recorded (by content hash) and completes
    an interrupted run. Returns counts by outcome; report.csv in `out` lists every failure.
    """
    options = options or PrepareOptions()
    items, ignored = walk_source(source, layout, split)
    summary = PrepareSummary(found=len(items))
    meta = {
        "padding": options.padding,
        "detector": options.detector,
        "template": alignment_template(options.size, options.padding).round(3).tolist(),
    }
    with DatasetWriter(out, options.size, meta) as writer:
        tasks = _Tasks(items, writer.known_inputs(), summary)
        pending: list[FileRecord] = [_ignored_record(f) for f in ignored]
        done = 0
        for record in _run_tasks(iter(tasks), options, _useful_workers(workers, len(items))):
            new = [*tasks.take_parent_records(), record]
            pending += new
            done += len(new)
            if len(pending) >= commit_every:
                _commit(writer, pending, summary)
            if on_progress:
                on_progress(summary.already_done + done, len(items))
        pending += tasks.take_parent_records()
        _commit(writer, pending, summary)
        if on_progress:
            on_progress(len(items), len(items))
        summary.total_faces = writer.count
        summary.report = writer.write_report()
    return summary


def _commit(writer: DatasetWriter, pending: list[FileRecord], summary: PrepareSummary) -> None:
    writer.add(pending)
    for record in pending:
        summary.outcomes[record.status] += 1
        summary.faces_added += len(record.faces)
        if record.status in ("corrupt", "refused", "unreadable", "error"):
            summary.errors.append(f"{record.path}: {record.reason}")
    pending.clear()


class _Tasks:
    """Reads and hashes inputs in the parent, yielding only new, unique ones for the workers.

    Inputs that fail or repeat before any worker sees them become records collected here.
    """

    def __init__(
        self, items: list[SourceItem], known: list[tuple[str, str]], summary: PrepareSummary
    ):
        self.items = items
        self.done = set(known)
        self.summary = summary
        # The first path seen with each content, earlier runs included.
        self.seen: dict[str, str] = {}
        for digest, path in known:
            self.seen.setdefault(digest, path)
        self._parent_records: list[FileRecord] = []

    def __iter__(self) -> Iterator[tuple]:
        for item in self.items:
            try:
                payload = _read_payload(item)
            except ImageError as e:
                self._record(item, None, e.kind, e.reason)
                continue
            digest = _content_hash(payload)
            if (digest, item.name) in self.done:
                self.summary.already_done += 1
            elif digest in self.seen:
                self._record(item, digest, "duplicate", f"same content as {self.seen[digest]}")
            else:
                self.seen[digest] = item.name
                yield (item.name, item.identity, item.split, digest, payload)

    def _record(self, item: SourceItem, digest: str | None, status: str, reason: str) -> None:
        self._parent_records.append(
            FileRecord(item.name, digest, status, reason, item.identity, item.split)
        )

    def take_parent_records(self) -> list[FileRecord]:
        """Records made in the parent since the last call."""
        records, self._parent_records = self._parent_records, []
        return records


def _read_payload(item: SourceItem) -> bytes | np.ndarray:
    if item.load_array is not None:
        return load_image(item.load_array(), name=item.name)
    return read_image_bytes(item.path)


def _content_hash(payload: bytes | np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(payload, np.ndarray):
        digest.update(str(payload.shape).encode())
        payload = payload.tobytes()
    digest.update(payload)
    return digest.hexdigest()


def _ignored_record(ignored: IgnoredFile) -> FileRecord:
    return FileRecord(ignored.name, None, "ignored", ignored.reason)


def _useful_workers(workers: int, inputs: int) -> int:
    """No more processes than the inputs pay for: starting one costs ~0.5 s, ~100 faces' work."""
    return max(1, min(workers, inputs // FILES_PER_WORKER))


def _run_tasks(tasks: Iterator[tuple], options: PrepareOptions, workers: int) -> Iterator:
    if workers <= 1:
        yield from (process_input(task, options) for task in tasks)
        return
    # spawn, not fork: the parent may hold threads (torch, SQLite) that a fork would break.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(options,)) as pool:
        yield from pool.imap(_process_in_worker, tasks, chunksize=4)


_worker_options: PrepareOptions | None = None


def _init_worker(options: PrepareOptions) -> None:
    global _worker_options
    _worker_options = options


def _process_in_worker(task: tuple) -> FileRecord:
    assert _worker_options is not None
    return process_input(task, _worker_options)


def process_input(task: tuple, options: PrepareOptions) -> FileRecord:
    """Decode one input and find its faces; every failure becomes a record, never an exception."""
    name, identity, split, digest, payload = task
    record = FileRecord(name, digest, "ok", None, identity, split)
    try:
        if isinstance(payload, bytes):
            image = decode_image(payload, name, max_pixels=options.max_pixels)
        else:
            image = payload
        faces = _find(image, identity, options)
    except ImageError as e:
        record.status, record.reason = e.kind, e.reason
        return record
    except ImageTooSmallError as e:
        record.status, record.reason = "too_small", str(e)
        return record
    except Exception as e:  # a bug must not stop the other 14,999 files; it is reported instead
        record.status, record.reason = "error", f"internal error: {type(e).__name__}: {e}"
        return record
    if not faces:
        record.status, record.reason = "no_face", "no face found"
    record.faces = faces
    return record


def _find(image: np.ndarray, identity: str | None, options: PrepareOptions) -> list[FaceRow]:
    largest_only = options.faces == "largest" or (options.faces == "auto" and identity)
    faces = find_faces(
        image,
        size=options.size,
        padding=options.padding,
        detector=options.detector,
        upsample=options.upsample,
        min_face=options.min_face,
        max_faces=1 if largest_only else None,
    )
    return [
        FaceRow(
            crop=face.crop,
            face_index=i,
            box=face.box.as_list(),
            score=round(face.score, 4),
            landmarks=face.crop_landmarks.round(2).tolist(),
            pose=face.pose.as_list(),
        )
        for i, face in enumerate(faces)
    ]
