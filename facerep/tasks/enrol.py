"""Labelled photo folders -> embedded faces: enrolling a gallery, calibrating a threshold.

A folder is read as one person per subfolder (`DIR/<label>/<photo>`), or, given a label, as
photos of that one person. Each photo stands for its largest face, as an ID photo does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facerep.data.sources import absolute_path, path_text, walk_source
from facerep.encoders.base import Encoder
from facerep.encoders.photos import largest_face
from facerep.faces.find import NoFaceError
from facerep.images import ImageError
from facerep.tasks.gallery import Gallery, photo_digest
from facerep.tasks.gallery.labels import check_label
from facerep.types import Face, Failure

# Photos embedded, then committed, together: one gallery transaction per batch.
BATCH_SIZE = 16

Progress = Callable[[int, int], None]


@dataclass
class EnrolSummary:
    """What `enrol_folder` did: faces added, photos already enrolled, photos that failed."""

    added: int = 0
    already_enrolled: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)


def labelled_photos(folder: str | Path, label: str | None = None) -> list[tuple[Path, str]]:
    """(photo, label) for every photo under `folder`: its subfolder's name, or `label`.

    Raises:
        ValueError: `folder` does not exist, holds no photos, or (with no label) has photos
            outside person folders; or a label (`label`, or a person folder's name) is not one
            a gallery takes. All before any photo is read.
    """
    if label is not None:
        check_label(label)
    items, _ = walk_source(folder, layout="flat")
    if not items:
        raise ValueError(f"{folder}: no photos found")
    if label is not None:
        return [(absolute_path(item.path), label) for item in items]
    # An item's key is its path relative to `folder` (a lone photo's is its own name).
    loose = [item.name for item in items if "/" not in item.key]
    if loose:
        raise ValueError(
            f"{folder}: photos outside person folders ({loose[0]}); give a label or put each "
            "person's photos in a folder named for them"
        )
    photos = [(absolute_path(item.path), item.key.split("/")[0]) for item in items]
    for name in sorted({name for _, name in photos}):  # before any face is detected
        check_label(name, f"{path_text(folder)}: the person folder")
    return photos


def embed_largest_faces(
    photos: list[tuple[Path, str]], encoder: Encoder
) -> Iterator[tuple[Path, str, Face | Failure]]:
    """(photo, label, its embedded largest face or why there is none), in order."""
    for path, label in photos:
        try:
            yield path, label, largest_face(path, encoder)
        except (NoFaceError, ImageError) as e:
            yield path, label, Failure.of(path_text(path), e)


def embed_photos(
    photos: list[tuple[Path, str]], encoder: Encoder, on_progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """`[N, D]` embeddings and `[N]` labels of labelled photos, plus the photos that failed."""
    vectors, labels, failures = [], [], []
    for done, (_, label, face) in enumerate(embed_largest_faces(photos, encoder), 1):
        if isinstance(face, Failure):
            failures.append(face)
        else:
            vectors.append(face.embedding)
            labels.append(label)
        if on_progress is not None:
            on_progress(done, len(photos))
    matrix = np.array(vectors).reshape(len(vectors), -1 if vectors else 0)  # none: [0, 0]
    return matrix, np.array(labels, dtype=object), failures


def enrol_folder(
    gallery: Gallery,
    folder: str | Path,
    label: str | None = None,
    on_progress: Progress | None = None,
) -> EnrolSummary:
    """Add the largest face of every photo under `folder` to `gallery`, a batch at a time.

    A photo already in the gallery (same path and label) is skipped, so re-running after an
    interruption completes the job. Photos with no face or unreadable are listed, not added.
    """
    photos = labelled_photos(folder, label)
    summary = EnrolSummary()
    for start in range(0, len(photos), BATCH_SIZE):
        batch = photos[start : start + BATCH_SIZE]
        known = gallery.enrolled(path_text(path) for path, _ in batch)
        todo = [(path, name) for path, name in batch if (path_text(path), name) not in known]
        summary.already_enrolled += len(batch) - len(todo)
        faces = list(embed_largest_faces(todo, gallery.encoder))
        summary.failures += [f for _, _, f in faces if isinstance(f, Failure)]
        found = [(p, n, f) for p, n, f in faces if not isinstance(f, Failure)]
        ids = _add_found(gallery, found) if found else []
        # None: another process enrolled that photo between our look-up and our insert.
        added = [name for (_, name, _), face_id in zip(found, ids, strict=True) if face_id]
        for name in added:
            summary.labels[name] = summary.labels.get(name, 0) + 1
        summary.added += len(added)
        summary.already_enrolled += len(found) - len(added)
        if on_progress is not None:
            on_progress(start + len(batch), len(photos))
    return summary


def _add_found(gallery: Gallery, found: list[tuple[Path, str, Face]]) -> list[int | None]:
    """Add the embedded faces of a batch in one transaction, each photo once (by content)."""
    return gallery.add_embeddings(
        np.stack([face.embedding for _, _, face in found]),
        [name for _, name, _ in found],
        sources=[path_text(path) for path, _, _ in found],
        boxes=[face.box for _, _, face in found],
        contents=[photo_digest(path) for path, _, _ in found],
    )
