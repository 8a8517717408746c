"""Group the faces of a photo folder by person, as photo apps do, and write them out.

Every face of every photo is embedded and clustered by average linkage on cosine distance,
cut at the verification threshold: two groups merge while their faces are, on average, as
close as a verified pair. Average linkage rather than single linkage, so one ambiguous face
cannot chain two people together (dlib's Chinese whispers has the same weakness). Groups of one
face are "unmatched": a person seen once is kept apart, not forced into someone else's folder.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from facerep.clustering import cluster_embeddings
from facerep.data.sources import named_photos
from facerep.encoders.base import Encoder
from facerep.encoders.photos import embed_photo
from facerep.faces.dlib_models import DetectorName
from facerep.images import ImageError, ImageSource
from facerep.outputs import check_output, mark_output, swap_in_folder
from facerep.types import Box, Failure

UNMATCHED = -1
# A person needs two faces to be recognised as someone; one face alone matches nobody.
MIN_CLUSTER_SIZE = 2
LinkMode = Literal["symlink", "copy"]


@dataclass(frozen=True)
class ClusteredFace:
    """One face and the person it was grouped with."""

    source: str
    face_index: int  # 0 is the largest face of its photo
    box: Box
    cluster: int  # 0 is the largest group; UNMATCHED (-1) for a face that matches nobody
    # The photo file; `source` is its name as text (`path_text`), which may not open it.
    path: Path | None = field(default=None, compare=False)


@dataclass
class Clustering:
    """Faces grouped by person, plus the photos that gave no face and why."""

    faces: list[ClusteredFace]
    threshold: float
    failures: list[tuple[str, str]] = field(default_factory=list)

    def clusters(self) -> dict[int, list[ClusteredFace]]:
        """Cluster number -> its faces, largest cluster first; unmatched faces left out."""
        groups: dict[int, list[ClusteredFace]] = {}
        for face in sorted(self.faces, key=lambda f: f.cluster):
            if face.cluster != UNMATCHED:
                groups.setdefault(face.cluster, []).append(face)
        return groups

    def unmatched(self) -> list[ClusteredFace]:
        """Faces that matched nobody else."""
        return [face for face in self.faces if face.cluster == UNMATCHED]


def cluster_photos(
    images: str | Path | Sequence[ImageSource],
    encoder: Encoder,
    threshold: float,
    *,
    detector: DetectorName = "hog",
    on_progress: Callable[[int, int], None] | None = None,
) -> Clustering:
    """Embed every face in a folder (or list) of photos and group the faces by person.

    Args:
        images: a folder (walked recursively) or a list of photos.
        encoder: makes the embeddings.
        threshold: cosine distance at which two faces are the same person.
        detector: "hog" or "cnn".
        on_progress: called with (photos done, photos in all).
    """
    photos = named_photos(images)
    faces, vectors, failures = [], [], []
    for done, (name, photo) in enumerate(photos, 1):
        try:
            found = embed_photo(photo, encoder, detector=detector)
        except ImageError as e:
            failures.append(Failure.of(name, e))
            found = []
        else:
            if not found:
                failures.append(Failure(name, "no face found"))
        for index, face in enumerate(found):
            faces.append((name, index, face.box, photo))
            vectors.append(face.embedding)
        if on_progress is not None:
            on_progress(done, len(photos))
    # No face at all (an empty folder, only corrupt or faceless photos): an empty result.
    matrix = np.array(vectors).reshape(len(vectors), -1 if vectors else 0)
    labels = _person_labels(matrix, threshold)
    clustered = [
        ClusteredFace(name, index, box, int(label), photo if isinstance(photo, Path) else None)
        for (name, index, box, photo), label in zip(faces, labels, strict=True)
    ]
    return Clustering(clustered, threshold, failures)


def _person_labels(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster ids numbered by size (0 largest), UNMATCHED for groups below MIN_CLUSTER_SIZE."""
    if len(vectors) == 0:
        return np.empty(0, np.int64)
    raw = cluster_embeddings(vectors, "agglomerative", distance_threshold=threshold)
    ids, first_seen, sizes = np.unique(raw, return_index=True, return_counts=True)
    order = sorted(range(len(ids)), key=lambda i: (-sizes[i], first_seen[i]))
    labels = np.full(len(raw), UNMATCHED, np.int64)
    for number, i in enumerate(j for j in order if sizes[j] >= MIN_CLUSTER_SIZE):
        labels[raw == ids[i]] = number
    return labels


def person_folder(cluster: int) -> str:
    """The folder name of a cluster: person-001 for the largest, `unmatched` for the rest."""
    return "unmatched" if cluster == UNMATCHED else f"person-{cluster + 1:03d}"


def write_clusters(
    clustering: Clustering, out: str | Path, mode: LinkMode = "symlink", overwrite: bool = False
) -> Path:
    """Write one folder per person (links to or copies of the photos), clusters.csv and
    failures.csv; the folder appears whole or not at all.

    Raises:
        OutputError: `out` is a file, holds a photo, or has content facerep did not write, or
            content at all and `overwrite` is False.
    """
    out = Path(out)
    sources = [face.source for face in clustering.faces] + [s for s, _ in clustering.failures]
    check_output(out, sources, kind="cluster", overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        mark_output(staging, "cluster")
        rows = _place_photos(clustering, staging, mode)
        _write_csv(
            staging / "clusters.csv",
            ["source", "face", "cluster", "folder", "file", "left", "top", "right", "bottom"],
            rows,
        )
        _write_csv(staging / "failures.csv", ["source", "reason"], clustering.failures)
        swap_in_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _place_photos(clustering: Clustering, root: Path, mode: LinkMode) -> list[list]:
    """Link or copy each photo into the folder of each person in it; one CSV row per face."""
    rows, placed = [], {}
    for face in clustering.faces:
        folder = root / person_folder(face.cluster)
        key = (face.source, folder.name)
        if key not in placed:
            folder.mkdir(exist_ok=True)
            placed[key] = _unique_name(folder, Path(face.source).name)
            _place(face.path or Path(face.source), folder / placed[key], mode)
        rows.append(
            [
                face.source,
                face.face_index,
                face.cluster,
                folder.name,
                placed[key],
                *face.box.as_list(),
            ]
        )
    return rows


def _unique_name(folder: Path, name: str) -> str:
    # Photos from different subfolders may share a name (IMG_0001.jpg); never overwrite one.
    candidate, n = name, 1
    while (folder / candidate).exists() or (folder / candidate).is_symlink():
        stem, suffix = os.path.splitext(name)
        candidate, n = f"{stem}-{n}{suffix}", n + 1
    return candidate


def _place(source: Path, target: Path, mode: LinkMode) -> None:
    if mode == "symlink":
        target.symlink_to(source.resolve())
    else:
        shutil.copy2(source, target)


def _write_csv(path: Path, header: list[str], rows: Sequence[Sequence]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
