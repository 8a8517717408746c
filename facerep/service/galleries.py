"""The galleries a server holds: one folder per validated name under the gallery directory.

A name is checked against `GALLERY_NAME` in full before it touches the filesystem, so no name
can climb out of the directory (`..`, slashes, NUL, a trailing newline) or hide (`.name`).
Galleries are opened on first use and stay open; writes are serialised here, whatever the
Gallery class does inside, while searches go straight to it.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from facerep.encoders.base import Encoder
from facerep.service.errors import ServiceError
from facerep.tasks.gallery import Gallery

log = logging.getLogger("facerep.service")

# Letters, digits, `_` and `-`, starting with a letter or digit, at most 64 characters.
GALLERY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_NAME = re.compile(GALLERY_NAME)


def check_gallery_name(name: str) -> str:
    """`name` if it is a valid gallery name, else a 422 ServiceError."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ServiceError(
            422,
            "invalid_request",
            "a gallery name is 1-64 letters, digits, '_' or '-', starting with a letter or digit",
        )
    return name


class GalleryRegistry:
    """Open galleries by name under `root`, all with the server's encoder."""

    def __init__(self, root: Path, encoder: Encoder):
        self.root = root
        self.encoder = encoder
        self._open: dict[str, Gallery] = {}
        self._lock = threading.Lock()  # guards opening and creating
        self.write_lock = threading.Lock()  # one gallery write at a time, server-wide

    def path_of(self, name: str) -> Path:
        """The folder of gallery `name`: always a direct child of the root."""
        path = self.root / check_gallery_name(name)
        if path.parent != self.root:  # cannot happen for a valid name; never trust that alone
            raise ServiceError(422, "invalid_request", "invalid gallery name")
        return path

    def get(self, name: str, *, create: bool = False) -> Gallery:
        """The open gallery `name`.

        Raises:
            GalleryError: it does not exist (and `create` is false) or cannot be opened.
        """
        path = self.path_of(name)
        with self._lock:
            if name in self._open:
                return self._open[name]
            # A GalleryError (missing, damaged, another encoder's) is answered by its kind.
            gallery = Gallery(path, self.encoder, create=create)
            self._open[name] = gallery
            return gallery

    def sizes(self) -> dict[str, int]:
        """Faces in each open gallery."""
        with self._lock:
            opened = dict(self._open)
        return {name: len(gallery) for name, gallery in opened.items()}

    def close(self) -> None:
        """Close every open gallery (saving its index when it has grown)."""
        with self._lock:
            for gallery in self._open.values():
                gallery.close()
            self._open.clear()
