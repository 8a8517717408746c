"""The Encoder protocol every representation implements, so evaluation and tools treat all alike."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Maps aligned face crops to unit-length embeddings.

    Attributes:
        name: how reports and galleries name it (e.g. "pca", "dlib", a run's folder name).
        input_size: the crop side it works at; other sizes are resized by `embed`.
        dim: embedding size D.
    """

    name: str
    input_size: int
    dim: int

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """`[N, H, W, 3]` uint8 aligned faces -> `[N, D]` float32, each row of unit length."""
        ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), as float32."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
