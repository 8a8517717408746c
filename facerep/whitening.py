"""PCA whitening of embeddings: fitted without identity labels, stored with a run, applied on load.

Whitening decorrelates an embedding's directions and gives each unit variance, so the few
directions that carry lighting and pose no longer dominate a cosine distance; on small face sets
it is worth several points of verification accuracy. It needs no labels, so pretraining fits it
on its own (unlabelled) training faces at the end and stores it beside the weights:

    RUN/whitening.safetensors  mean [D], projection [D, K]; metadata: the weights it was
                               fitted for, the faces it saw

The run's encoder then applies it wherever the run embeds (verify, galleries, clustering, the
service, evaluation), so the encoder a user gets is the one the benchmark measures. Stored with
safetensors' numpy API: reading it needs neither torch nor pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerep.files import atomic_write_bytes

WHITENING_FILE = "whitening.safetensors"
DEFAULT_COMPONENTS = 128


@dataclass(frozen=True)
class Whitening:
    """A fitted PCA whitening: `(x - mean) @ projection`, then unit rows.

    Attributes:
        mean: `[D]` feature mean of the faces it was fitted on.
        projection: `[D, K]` principal directions, each scaled by 1/sqrt(its variance).
        weights: digest of the weights whose embeddings it was fitted on ("" when unknown).
        faces: how many faces it was fitted on.
    """

    mean: np.ndarray
    projection: np.ndarray
    weights: str = ""
    faces: int = 0

    @property
    def dim(self) -> int:
        """Output size K."""
        return int(self.projection.shape[1])

    def apply(self, features: np.ndarray) -> np.ndarray:
        """`[N, D]` features -> `[N, K]` whitened float32 rows of unit length."""
        projected = (np.asarray(features, np.float64) - self.mean) @ self.projection
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        return (projected / np.maximum(norms, 1e-12)).astype(np.float32)


def fit_whitening(
    features: np.ndarray, components: int = DEFAULT_COMPONENTS, whiten: bool = True
) -> Whitening:
    """PCA of `[N, D]` features, keeping at most `components` (fewer if N or D is smaller).

    Args:
        whiten: scale each direction to unit variance (False: a plain PCA projection).
    """
    from sklearn.decomposition import PCA

    features = np.asarray(features)
    kept = min(components, features.shape[0] - 1, features.shape[1])
    if kept < 1:
        raise ValueError(f"whitening needs at least 2 faces, got {features.shape[0]}")
    pca = PCA(n_components=kept, whiten=whiten, random_state=0).fit(features)
    projection = pca.components_.T.astype(np.float64)
    if whiten:
        # The variance floor keeps a direction the data never varies in from blowing up.
        projection = projection / np.sqrt(np.maximum(pca.explained_variance_, 1e-12))
    return Whitening(pca.mean_.astype(np.float64), projection, faces=int(features.shape[0]))


def save_whitening(run: str | Path, whitening: Whitening) -> Path:
    """Write RUN/whitening.safetensors atomically; returns its path."""
    from safetensors.numpy import save

    path = Path(run) / WHITENING_FILE
    # safetensors writes an array's memory as it lies: a transposed view would load scrambled.
    tensors = {
        "mean": np.ascontiguousarray(whitening.mean, np.float32),
        "projection": np.ascontiguousarray(whitening.projection, np.float32),
    }
    metadata = {"weights": whitening.weights, "faces": str(whitening.faces)}
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def load_whitening(run: str | Path) -> Whitening | None:
    """The run's stored whitening, None when it has none; ValueError for a damaged file."""
    from safetensors import SafetensorError, safe_open

    path = Path(run) / WHITENING_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            mean, projection = f.get_tensor("mean"), f.get_tensor("projection")
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: damaged ({type(e).__name__}: {e})") from None
    if mean.ndim != 1 or projection.ndim != 2 or projection.shape[0] != mean.shape[0]:
        raise ValueError(f"{path}: damaged (mean {mean.shape}, projection {projection.shape})")
    return Whitening(
        mean.astype(np.float64),
        projection.astype(np.float64),
        metadata.get("weights", ""),
        int(metadata.get("faces", "0")),
    )


def remove_whitening(run: str | Path) -> None:
    """Delete a run's whitening (its weights are about to change)."""
    (Path(run) / WHITENING_FILE).unlink(missing_ok=True)
