"""The Encoder protocol every representation implements, so evaluation and tools treat all alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from facerep.types import Face


@runtime_checkable
class Encoder(Protocol):
    """Maps aligned face crops to unit-length embeddings: all a tool or evaluation needs.

    Attributes:
        name: how reports and galleries name it (e.g. "pca", "dlib", a run's folder name).
        input_size: the crop side it works at; other sizes are resized by `embed`.
        dim: embedding size D.

    Optional abilities are the small protocols below; callers check for them with
    `isinstance` and never set attributes on an encoder (a loaded encoder is shared).
    """

    name: str
    input_size: int
    dim: int

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """`[N, H, W, 3]` uint8 aligned faces -> `[N, D]` float32, each row of unit length."""
        ...


@runtime_checkable
class Identified(Protocol):
    """An encoder that can say how to rebuild it and which weights made its embeddings."""

    source: str  # what `load_encoder` takes to rebuild it: a name, or a run folder's path
    fingerprint: str  # changes whenever the weights do; galleries refuse a mismatch


@runtime_checkable
class RunBacked(Protocol):
    """An encoder rebuilt from a facerep run folder (its calibration is stored there)."""

    run: Path


@runtime_checkable
class TokenEncoder(Protocol):
    """An encoder with patch tokens, which evaluation can pool on a grid (a facerep run)."""

    def tokens(self, faces: np.ndarray) -> Any:
        """`[N, H, W, 3]` uint8 faces -> `[N, L, D]` patch tokens (a CPU float tensor)."""
        ...


@runtime_checkable
class Fittable(Protocol):
    """An estimator fitted on training faces before it embeds (eigenfaces)."""

    def fit(self, faces: np.ndarray) -> Any:
        """Fit on `[N, H, W, 3]` uint8 faces of the training identities; returns self."""
        ...

    @property
    def fitted(self) -> bool:
        """Whether `fit` has run, so `embed` works."""
        ...


@runtime_checkable
class Prewhitened(Protocol):
    """An encoder whose embeddings may be PCA-whitened already, so evaluation need not."""

    whitened: bool


@runtime_checkable
class DefaultThreshold(Protocol):
    """An encoder with a verification threshold of its own, used until one is calibrated."""

    default_threshold: float


@runtime_checkable
class HoldsGIL(Protocol):
    """An encoder that keeps the GIL while it embeds (dlib), so threads cannot share it."""

    holds_gil: bool


@dataclass(frozen=True)
class EncoderIdentity:
    """What must match for two encoders' vectors to be comparable, and how to rebuild one."""

    name: str
    dim: int
    source: str
    fingerprint: str


def encoder_identity(encoder: Encoder) -> EncoderIdentity:
    """The encoder's identity; an encoder that cannot tell is known by its name alone."""
    if isinstance(encoder, Identified):
        return EncoderIdentity(encoder.name, int(encoder.dim), encoder.source, encoder.fingerprint)
    return EncoderIdentity(encoder.name, int(encoder.dim), encoder.name, encoder.name)


def holds_gil(encoder: Encoder) -> bool:
    """Whether the encoder keeps the GIL while it embeds."""
    return isinstance(encoder, HoldsGIL) and bool(encoder.holds_gil)


def is_whitened(encoder: Encoder) -> bool:
    """Whether the encoder's embeddings are PCA-whitened already."""
    return isinstance(encoder, Prewhitened) and bool(encoder.whitened)


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
