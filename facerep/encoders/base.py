"""The Encoder protocol every representation implements, so evaluation and tools treat all alike."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from facerep.types import Face


@runtime_checkable
class Encoder(Protocol):
    """Maps aligned face crops to unit-length embeddings.

    Attributes:
        name: how reports and galleries name it (e.g. "pca", "dlib", a run's folder name).
        input_size: the crop side it works at; other sizes are resized by `embed`.
        dim: embedding size D.

    Optional members, which evaluation looks up where present:
        fit(faces): an estimator fitted on the training identities' faces (eigenfaces).
        tokens(faces): `[N, L, D]` patch tokens, for pooling on a grid (a facerep run).
        whitened: True when the embeddings are PCA-whitened already (eigenfaces), so
            evaluation does not whiten them again.
    """

    name: str
    input_size: int
    dim: int

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """`[N, H, W, 3]` uint8 aligned faces -> `[N, D]` float32, each row of unit length."""
        ...


def embed_faces(faces: list[Face], encoder: Encoder) -> None:
    """Set each face's `embedding` from its aligned crop, in one encoder call."""
    if not faces:
        return
    vectors = encoder.embed(np.stack([face.crop for face in faces]))
    for face, vector in zip(faces, vectors, strict=True):
        face.embedding = vector


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), as float32."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def resize_faces(faces: np.ndarray, size: int) -> np.ndarray:
    """`[N, H, W, 3]` uint8 faces at `size` x `size` (box-filtered when shrinking)."""
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
        raise ValueError(f"faces must be uint8 [N, H, W, 3], got {faces.dtype} {faces.shape}")
    if faces.shape[1:3] == (size, size):
        return faces
    shrink = size < faces.shape[1]
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    resized = [np.asarray(Image.fromarray(face).resize((size, size), resample)) for face in faces]
    return np.stack(resized) if resized else np.zeros((0, size, size, 3), np.uint8)


def file_digest(path: str | Path, length: int = 16) -> str:
    """The first `length` hex digits of a file's SHA-256: which weights made an embedding."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:length]
