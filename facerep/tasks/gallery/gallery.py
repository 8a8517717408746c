"""A persistent face gallery: enrol labelled faces, search by face, remove for good.

A gallery is a folder: `gallery.sqlite`, the source of truth (`database`), and a derived FAISS
index kept in step with it (`index_sync`), made by one encoder and refusing any other
(`identity`). In a process, searches share the index while adds, removals and compaction take
it alone (`locks`); other processes' commits are taken in before each read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from facerep.data.sources import path_text
from facerep.encoders.base import Encoder, l2_normalise
from facerep.encoders.calibration import current_threshold
from facerep.encoders.photos import largest_face
from facerep.encoders.registry import resolve_encoder
from facerep.files import file_digest
from facerep.images import ImageSource
from facerep.tasks.gallery.database import GalleryDatabase, GalleryFace
from facerep.tasks.gallery.errors import GalleryError
from facerep.tasks.gallery.identity import check_format, check_identity, identity_meta
from facerep.tasks.gallery.index_sync import DerivedIndex
from facerep.tasks.gallery.labels import check_label
from facerep.tasks.gallery.locks import ReadWriteLock
from facerep.tasks.index_policy import IndexChoice, choose_kind
from facerep.types import Box, Match


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
        read_only: search and list without writing a byte (for a gallery this user may only
            read); writes raise GalleryError of kind "read_only".
    """

    def __init__(
        self,
        path: str | Path,
        encoder: Encoder | str | Path | None = None,
        *,
        index: IndexChoice = "auto",
        create: bool = True,
        read_only: bool = False,
    ):
        self.path = Path(path)
        self.index_choice = index
        self.read_only = read_only
        choose_kind(index, 0)  # validate early
        # Searches share the index; adds, removals and compaction take it alone. The SQLite
        # connection is used by one thread at a time.
        self._rw = ReadWriteLock()
        self._db_lock = threading.RLock()
        if isinstance(encoder, str | Path):
            # Before anything is created: an encoder that cannot load leaves no gallery behind.
            encoder = resolve_encoder(encoder)
        self._database = GalleryDatabase(self.path, create, read_only)
        try:
            self._encoder = self._check_encoder(encoder)
            meta = self._database.meta()
            self.dim, self.encoder_name = int(meta["dim"]), meta["encoder"]
            self._index = DerivedIndex(self.path, self._database, self.dim, index)
        except BaseException:
            # A gallery that cannot be used (another encoder, a damaged index table) must not
            # keep its database open until garbage collection.
            self._database.close()
            raise
        self._closed = False

    def _check_encoder(self, encoder: Encoder | None) -> Encoder | None:
        meta = self._database.meta()
        if not meta:
            chosen = resolve_encoder(encoder)
            self._database.write_meta(identity_meta(chosen))
            # Another process may have made the gallery first, with its own encoder.
            check_identity(self._database.meta(), chosen, self.path)
            return chosen
        check_format(meta, self.path)
        if encoder is None:
            return None  # loaded from the stored source when a face needs embedding
        check_identity(meta, encoder, self.path)
        return encoder

    @property
    def encoder(self) -> Encoder:
        """The gallery's encoder, loaded from where the gallery says it came from."""
        with self._db_lock:
            if self._encoder is None:
                meta = self._database.meta()
                encoder = resolve_encoder(meta["encoder_source"])
                # The source may embed differently now (a run whitened or retrained since).
                check_identity(meta, encoder, self.path)
                self._encoder = encoder
            return self._encoder

    def _refresh(self) -> None:
        """Take in other processes' commits, under the write lock, when there are any."""
        with self._db_lock:
            stale = self._index.stale()
        if stale:
            with self._rw.write(), self._db_lock:
                self._index.sync()

    # ---- writing -------------------------------------------------------------------------

    def add(
        self,
        images: ImageSource | Sequence[ImageSource],
        label: str,
        *,
        sources: Sequence[str | None] | None = None,
    ) -> list[int | None]:
        """Enrol the largest face of each photo under `label`; returns the new face ids (None
        for a photo file enrolled under `label` already).

        Every photo is read and embedded before anything is written, so a photo with no face
        or a corrupt file (NoFaceError, ImageError) leaves the gallery as it was.
        """
        _check_labels([label])  # before any face is detected
        batch = images if isinstance(images, list | tuple) else [images]
        faces = [largest_face(image, self.encoder) for image in batch]
        files = [Path(image) if isinstance(image, str | Path) else None for image in batch]
        if sources is None:
            sources = [None if file is None else path_text(file) for file in files]
        return self.add_embeddings(
            np.stack([face.embedding for face in faces]) if faces else np.zeros((0, self.dim)),
            [label] * len(faces),
            sources=[None if s is None else str(s) for s in sources],
            boxes=[face.box for face in faces],
            contents=[None if file is None else photo_digest(file) for file in files],
        )

    def add_embeddings(
        self,
        embeddings: np.ndarray,
        labels: Sequence[str],
        *,
        sources: Sequence[str | None] | None = None,
        boxes: Sequence[Box | None] | None = None,
        contents: Sequence[str | None] | None = None,
    ) -> list[int | None]:
        """Enrol `[N, D]` embeddings made by the gallery's encoder, in one transaction.

        Args:
            sources, boxes: where each face came from (a file's path; its box there).
            contents: a digest of each source file's bytes (`photo_digest`): a face whose
                label, source and content are in the gallery already is not added again, even
                by another process adding at the same moment.

        Returns:
            The new face ids, in order; None for a face that was enrolled already.
        """
        embeddings = np.asarray(embeddings, dtype=np.float32)
        self._check_embeddings(embeddings, labels)
        vectors = l2_normalise(embeddings.reshape(len(labels), -1))
        none = [None] * len(labels)
        sources = list(sources) if sources is not None else none
        boxes = list(boxes) if boxes is not None else none
        contents = list(contents) if contents is not None else none
        with self._rw.write(), self._db_lock:
            self._index.sync()
            ids, (missed_ids, missed) = self._database.insert_faces(
                labels, sources, boxes, vectors, contents, self._index.index.last_id()
            )
            self._index.add(missed, missed_ids.tolist())  # committed by others meanwhile
            new = [row for row, face_id in enumerate(ids) if face_id is not None]
            self._index.add(vectors[new], [ids[row] for row in new])
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
        _check_labels(labels)

    def remove(self, target: int | str) -> int:
        """Remove a face by id (int) or every face of a label (str); returns how many.

        From now on no search returns them; `compact()` then erases them from disk.
        """
        column = "id" if isinstance(target, int | np.integer) else "label"
        with self._rw.write(), self._db_lock:
            self._index.sync()
            ids = self._database.remove_faces(column, target)
            self._index.tombstone(ids)
            return len(ids)

    def compact(self) -> None:
        """Rebuild the index without removed faces and erase their bytes from every file."""
        self._refuse_if_read_only("compact")
        with self._rw.write(), self._db_lock:
            self._index.compact()

    def save_index(self) -> None:
        """Write the in-memory index to disk now (otherwise `close` does when it is worth it)."""
        self._refuse_if_read_only("save its index")
        with self._rw.write(), self._db_lock:
            self._index.save()

    def _refuse_if_read_only(self, what: str) -> None:
        if self.read_only:
            raise GalleryError(f"opened read-only: cannot {what}", "read_only", self.path)

    def close(self) -> None:
        """Save the index if it has grown enough since it was written, and close the database."""
        with self._rw.write(), self._db_lock:
            if self._closed:
                return
            if not self.read_only:
                self._index.save_if_grown()
            self._database.close()
            self._closed = True

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._db_lock:
            return self._database.count()

    def labels(self) -> dict[str, int]:
        """Each label with how many faces it has, by label."""
        with self._db_lock:
            return self._database.labels()

    def faces(self, label: str | None = None) -> list[GalleryFace]:
        """The enrolled faces (of one label, or all), oldest first."""
        with self._db_lock:
            return self._database.faces(label)

    def enrolled(self, sources: Iterable[str]) -> set[tuple[str, str]]:
        """The (source, label) pairs already in the gallery among `sources`."""
        with self._db_lock:
            return self._database.enrolled(sources)

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
            scores, ids = self._index.search(l2_normalise(embeddings), k)
        with self._db_lock:
            live = np.unique(ids[ids >= 0]).tolist()
            found = {face.id: face for face in self._database.faces_by_id(live)}
        threshold = current_threshold(self._encoder) if self._encoder else None
        return [
            [
                _match(found[face_id], float(score), threshold)
                for score, face_id in zip(row_scores, row_ids, strict=True)
                if face_id in found
            ]
            for row_scores, row_ids in zip(scores, ids.tolist(), strict=True)
        ]

    def info(self) -> dict[str, object]:
        """What the gallery holds: faces, labels, encoder, index kind and files on disk."""
        self._refresh()
        with self._db_lock:
            meta = self._database.meta()
            faces, labels = self._database.count(), self._database.count("DISTINCT label")
        with self._rw.read():
            removed_pending, kind = len(self._index.removed), self._index.index.kind
        return {
            "path": str(self.path),
            "faces": faces,
            "labels": labels,
            "encoder": meta["encoder"],
            "encoder_source": meta["encoder_source"],
            "dim": int(meta["dim"]),
            "index": kind,
            "removed_pending_compaction": removed_pending,
            "bytes_on_disk": sum(p.stat().st_size for p in self.path.iterdir() if p.is_file()),
        }


def photo_digest(path: str | Path) -> str:
    """What tells two photo files apart in a gallery: a digest of the file's bytes."""
    return file_digest(path, length=32)


def _check_labels(labels: Iterable[str]) -> None:
    for label in labels:
        try:
            check_label(label, "face label")  # quoted shortened: never a 100 kB line
        except ValueError as e:
            raise GalleryError(str(e), "invalid") from None


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
