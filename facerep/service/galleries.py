"""The galleries a server holds: one folder per validated name under the gallery directory.

A name is checked against `GALLERY_NAME` in full before it touches the filesystem, so no name
can climb out of the directory (`..`, slashes, NUL, a trailing newline) or hide (`.name`).
Galleries are opened on first use and stay open. Opening one (loading or rebuilding its index
may take seconds) holds up only the requests for that gallery, never the others or /metrics.
The registry counts each gallery's faces for /metrics: once when it opens, then with every add
and removal made through it (other processes' writes show once the server reopens it).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

from facerep.encoders.base import Encoder
from facerep.service.errors import ServiceError
from facerep.tasks.gallery import Gallery
from facerep.types import Box

# Letters, digits, `_` and `-`, starting with a letter or digit, at most 64 characters.
GALLERY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_NAME = re.compile(GALLERY_NAME)


def check_gallery_name(name: str) -> str:
    """`name` if it is a valid gallery name, else a 422 ServiceError."""
    if _NAME.fullmatch(name) is None:
        raise ServiceError(
            422,
            "invalid_request",
            "a gallery name is 1-64 letters, digits, '_' or '-', starting with a letter or digit",
        )
    return name


class GalleryRegistry:
    """Open galleries by name under `root`, all with the server's encoder."""

    def __init__(self, root: Path, encoder: Encoder, read_only: bool = False):
        self.root = root
        self.encoder = encoder
        self.read_only = read_only  # a --read-only server opens its galleries without writing
        self._lock = threading.Lock()  # guards the three dicts, never held while opening
        self._open: dict[str, Gallery] = {}
        self._sizes: dict[str, int] = {}  # faces in each open gallery, for /metrics
        self._opening: dict[str, threading.Event] = {}  # set once that gallery's open ended

    def get(self, name: str, *, create: bool = False) -> Gallery:
        """The open gallery `name` (opened now if it is not yet).

        Raises:
            ServiceError: `name` is not a valid gallery name (422).
            GalleryError: it does not exist (and `create` is false) or cannot be opened.
        """
        path = self.root / check_gallery_name(name)
        while True:
            with self._lock:
                if name in self._open:
                    return self._open[name]
                opening = self._opening.get(name)
                if opening is None:
                    opening = self._opening[name] = threading.Event()
                    break
            # Another thread is opening it: wait, then look again (its open may have failed,
            # or not created what this caller may create).
            opening.wait()
        try:
            gallery = Gallery(
                path, self.encoder, create=create and not self.read_only,
                read_only=self.read_only,
            )
            size = len(gallery)
            with self._lock:
                self._open[name], self._sizes[name] = gallery, size
        finally:
            with self._lock:
                del self._opening[name]
            opening.set()
        return gallery

    def add(
        self, name: str, embedding: np.ndarray, label: str, source: str | None, box: Box
    ) -> int:
        """Enrol one `[D]` embedding in gallery `name` (created if new); returns its face id."""
        gallery = self.get(name, create=True)
        [face_id] = gallery.add_embeddings(embedding[None], [label], sources=[source], boxes=[box])
        with self._lock:
            self._sizes[name] += 1
        return face_id

    def remove(self, name: str, face_id: int) -> bool:
        """Remove face `face_id` from gallery `name`; whether it was there."""
        removed = self.get(name).remove(face_id)
        with self._lock:
            self._sizes[name] -= removed
        return removed > 0

    def sizes(self) -> dict[str, int]:
        """Faces in each open gallery, as counted at opening and by this server's writes."""
        with self._lock:
            return dict(self._sizes)

    def close(self) -> None:
        """Close every open gallery (saving its index when it has grown)."""
        with self._lock:
            opened = list(self._open.values())
            self._open.clear()
            self._sizes.clear()
        for gallery in opened:
            gallery.close()
