"""What a gallery says when it cannot do what was asked."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

# What went wrong, for callers that answer differently (the HTTP service picks a status by it):
# not_found: no gallery at the path; encoder_mismatch: it holds another encoder's embeddings;
# damaged: the path or database cannot be read as a gallery; unsupported: another format
# version; invalid: the arguments (embeddings, labels, queries) do not fit the gallery;
# read_only: a write to a gallery this process may only read.
GalleryErrorKind = Literal[
    "not_found", "encoder_mismatch", "damaged", "unsupported", "invalid", "read_only"
]


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
