"""Ingest: walk a source, detect and align every face, and append them to a prepared dataset.

The parent process reads and hashes each file (so re-runs and exact duplicates are skipped before
any detection work), worker processes decode, detect, landmark and align, and the parent commits
results in batches through `DatasetWriter`, so a crash loses at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from facerep.data.items import SourceItem
from facerep.data.sources import IgnoredFile, Layout, walk_source
from facerep.data.store import (
    ERROR_STATUSES,
    FAILED_STATUSES,
    DatasetWriter,
    FaceRow,
    FileRecord,
    FileStatus,
)
from facerep.faces.align import DEFAULT_PADDING, alignment_template
from facerep.faces.dlib_models import DetectorName
from facerep.faces.find import search_and_align, too_small_reason
from facerep.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    decode_image,
    load_image,
    read_image_bytes,
)
from facerep.outputs import claim_output

FacesPerImage = Literal["auto", "largest", "all"]
# How faces are searched, not how they are cut: `retry_failed` may change these on a dataset,
# since every face records the cascade stage that found it.
SEARCH_OPTIONS = frozenset({"detector", "upsample", "cascade", "assume_cropped"})

# A worker process is started only for every this many inputs (see `_useful_workers`).
FILES_PER_WORKER = 100


@dataclass(frozen=True)
class PrepareOptions:
    """How faces are found and cropped.

    Every option but `max_pixels` is stored in the dataset's meta and checked when a run adds to
    the dataset, so it never mixes faces found or cut two ways; `max_pixels` only limits what one
    run will decode.
    """

    size: int = 112  # crop side in pixels; 64 for small models
    padding: float = DEFAULT_PADDING  # margin around the 5-point template (dlib's convention)
    detector: DetectorName = "hog"
    upsample: int = 0  # extra 2x upsamplings, for small faces in large photos
    min_face: float = 0.0  # drop detections narrower than this (source pixels)
    # "auto": the largest face when the folder names the identity (a second face is someone
    # else), every face in an unlabeled folder.
    faces: FacesPerImage = "auto"
    # The detection cascade (facerep.faces.detect) when the first look finds nothing; and, for
    # datasets of pre-cropped faces, the whole frame as the face box when no detector fires.
    cascade: bool = True
    assume_cropped: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS

    def meta(self) -> dict[str, object]:
        """The options a dataset's meta records and checks, with the template they give."""
        options = {k: v for k, v in asdict(self).items() if k != "max_pixels"}
        template = alignment_template(self.size, self.padding).round(3).tolist()
        return {**options, "template": template}


@dataclass
class PrepareSummary:
    """What one prepare run did: counts by outcome, the faces it added, and where the report is."""

    found: int = 0
    already_done: int = 0
    outcomes: Counter = field(default_factory=Counter)
    stages: Counter = field(default_factory=Counter)  # the cascade stage of each face added
    faces_added: int = 0
    total_faces: int = 0
    errors: list[str] = field(default_factory=list)
    report: Path | None = None

    def recorded(self) -> int:
        """Inputs given an outcome this run (names ignored as non-images not counted)."""
        return sum(n for status, n in self.outcomes.items() if status != "ignored")

    @property
    def failed(self) -> int:
        """Inputs that failed this run (`FAILED_STATUSES`); duplicates and ignored names did not."""
        return sum(n for status, n in self.outcomes.items() if status in FAILED_STATUSES)

    @property
    def duplicates(self) -> int:
        """Inputs this run found to be copies of one already stored (kept once, not failures)."""
        return self.outcomes["duplicate"]


Progress = Callable[[int, int], None]
# A worker's job: the input's place in the source order, its record so far (status "ok", to be
# filled in), and its bytes or, for a built-in sample, its pixels.
Task = tuple[int, FileRecord, bytes | np.ndarray]


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
    retry_failed: bool = False,
) -> PrepareSummary:
    """Detect, align and store every face under `source` into the dataset folder `out`.

    Re-running on the same `out` skips inputs already recorded (by content hash and path
    relative to `source`) and completes an interrupted run. With `retry_failed` it also tries
    again the inputs that gave no face (`RETRYABLE_STATUSES`: no face found, implausible
    landmarks, an internal error), with this run's search options, replacing their outcome;
    inputs that gave faces are never searched again, so no face is stored twice. Returns counts
    by outcome; report.csv in `out` lists every failure.

    Raises:
        DatasetError: `out` was prepared with other options (see `PrepareOptions`), or another
            prepare is writing it.
        OutputError: `out` holds or lies inside `source`, or is a folder of other files.
    """
    options = options or PrepareOptions()
    items, ignored = walk_source(source, layout, split)
    claim_output(out, [source], kind="prepare")
    summary = PrepareSummary(found=len(items))
    with (
        DatasetWriter(
            out,
            options.size,
            options.meta(),
            retry_failed=retry_failed,
            replaceable=SEARCH_OPTIONS,
        ) as writer,
        _Executor(options, _useful_workers(workers, len(items))) as executor,
    ):
        screen = _Screen(writer.known_inputs(), summary)
        _commit(writer, [_ignored_record(f) for f in ignored], summary)
        in_flight: _Batch | None = None
        # Batches are hashed here, on the main thread, and committed in order: a duplicate is
        # never committed before the original it points to.
        for start in range(0, len(items), commit_every):
            parent_records, tasks = screen.sort(items[start : start + commit_every], start)
            batch = _Batch(parent_records, executor.submit(tasks))
            if in_flight is not None:
                _commit(writer, in_flight.records(), summary)
            in_flight = batch
            if on_progress:
                on_progress(summary.already_done + summary.recorded(), len(items))
        if in_flight is not None:
            _commit(writer, in_flight.records(), summary)
        if on_progress:
            on_progress(len(items), len(items))
        summary.total_faces = writer.count
        summary.report = writer.write_report()
    return summary


def _commit(writer: DatasetWriter, records: list[FileRecord], summary: PrepareSummary) -> None:
    writer.add(records)
    for record in records:
        summary.outcomes[record.status] += 1
        summary.faces_added += len(record.faces)
        summary.stages.update(face.stage for face in record.faces)
        if record.status in ERROR_STATUSES:
            summary.errors.append(f"{record.path}: {record.reason}")


class _Screen:
    """Reads and hashes inputs, setting aside those already done, duplicates and unreadable ones.

    The `seen` map (content hash -> first path) spans earlier runs, so a copy of a file that an
    earlier run ingested is reported as its duplicate.
    """

    def __init__(self, known: list[tuple[str, str, str, str]], summary: PrepareSummary):
        self.summary = summary
        self.done = {(digest, key) for digest, key, _, _ in known}
        self.seen: dict[str, str] = {}
        for digest, _, path, status in known:
            if status != "duplicate":
                self.seen.setdefault(digest, path)

    def sort(self, items: list[SourceItem], offset: int) -> tuple[list, list[Task]]:
        """(index, record) for inputs settled here, and worker tasks for the rest."""
        records, tasks = [], []
        for index, item in enumerate(items, start=offset):
            try:
                payload = _read_payload(item)
            except ImageError as e:
                records.append((index, _record(item, None, e.kind, e.reason)))
                continue
            digest = _content_hash(payload)
            if (digest, item.key) in self.done:
                self.summary.already_done += 1
            elif digest in self.seen:
                reason = f"same content as {self.seen[digest]}"
                records.append((index, _record(item, digest, "duplicate", reason)))
            else:
                self.seen[digest] = item.name
                tasks.append((index, _record(item, digest, "ok"), payload))
        return records, tasks


def _record(
    item: SourceItem, digest: str | None, status: FileStatus, reason: str | None = None
) -> FileRecord:
    return FileRecord(item.name, digest, status, reason, item.identity, item.split, key=item.key)


class _Batch:
    """One batch in flight: the records settled on the main thread and the workers' job."""

    def __init__(self, parent_records: list[tuple[int, FileRecord]], job: Callable[[], list]):
        self.parent_records = parent_records
        self.job = job

    def records(self) -> list[FileRecord]:
        """Every record of the batch, in source order."""
        merged = self.parent_records + self.job()
        return [record for _, record in sorted(merged, key=lambda pair: pair[0])]


class _Executor:
    """Runs tasks in this process, or in a pool of worker processes, one batch at a time."""

    def __init__(self, options: PrepareOptions, workers: int):
        self.options, self.workers, self.pool = options, workers, None

    def __enter__(self) -> _Executor:
        if self.workers > 1:
            # spawn, not fork: the parent may hold threads (torch, SQLite) a fork would break.
            context = multiprocessing.get_context("spawn")
            self.pool = context.Pool(
                self.workers, initializer=_init_worker, initargs=(self.options,)
            )
        return self

    def submit(self, tasks: list[Task]) -> Callable[[], list[tuple[int, FileRecord]]]:
        """Start a batch; the returned callable waits for its `(index, record)` results."""
        if self.pool is None:
            results = [process_input(task, self.options) for task in tasks]
            return lambda: results
        job = self.pool.map_async(_process_in_worker, tasks, chunksize=4)
        return job.get

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.terminate() if exc[0] else self.pool.close()
            self.pool.join()


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
    return FileRecord(ignored.name, None, "ignored", ignored.reason, key=ignored.name)


def _useful_workers(workers: int, inputs: int) -> int:
    """No more processes than the inputs pay for: starting one costs ~0.5 s, ~100 faces' work."""
    return max(1, min(workers, inputs // FILES_PER_WORKER))


_worker_options: PrepareOptions | None = None


def _init_worker(options: PrepareOptions) -> None:
    global _worker_options
    _worker_options = options


def _process_in_worker(task: Task) -> tuple[int, FileRecord]:
    assert _worker_options is not None
    return process_input(task, _worker_options)


def process_input(task: Task, options: PrepareOptions) -> tuple[int, FileRecord]:
    """Decode one input and find its faces; every failure becomes a record, never an exception.

    Returns the task's index with the record, so batches can be put back in source order.
    """
    index, record, payload = task
    return index, _fill_record(record, payload, options)


def _fill_record(
    record: FileRecord, payload: bytes | np.ndarray, options: PrepareOptions
) -> FileRecord:
    try:
        if isinstance(payload, bytes):
            image = decode_image(payload, record.path, max_pixels=options.max_pixels)
        else:
            image = payload
        too_small = too_small_reason(image)
        if too_small:  # told apart from `no_face`: no detector could have found one
            record.status, record.reason = "too_small", too_small
            return record
        faces, failure = _find(image, record.identity, options)
    except ImageError as e:
        record.status, record.reason = e.kind, e.reason
        return record
    except Exception as e:  # a bug must not stop the other 14,999 files; it is reported instead
        record.status, record.reason = "error", f"internal error: {type(e).__name__}: {e}"
        return record
    if not faces:
        record.status, record.reason = failure
    record.faces = faces
    return record


def _find(
    image: np.ndarray, identity: str | None, options: PrepareOptions
) -> tuple[list[FaceRow], tuple[str, str]]:
    """The faces to store, and (status, reason) for when there are none."""
    largest_only = options.faces == "largest" or (options.faces == "auto" and identity)
    faces, search = search_and_align(
        image,
        size=options.size,
        padding=options.padding,
        detector=options.detector,
        upsample=options.upsample,
        min_face=options.min_face,
        max_faces=1 if largest_only else None,
        cascade=options.cascade,
        assume_cropped=options.assume_cropped,
    )
    rows = [
        FaceRow(
            crop=face.crop,
            face_index=i,
            box=face.box.as_list(),
            score=round(face.score, 4),
            landmarks=face.crop_landmarks.round(2).tolist(),
            pose=face.pose.as_list(),
            stage=face.stage,
        )
        for i, face in enumerate(faces)
    ]
    return rows, search.failure()
