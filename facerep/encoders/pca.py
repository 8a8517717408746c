"""Eigenfaces: PCA of face pixels, fitted on training identities only (Turk and Pentland, 1991)."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from facerep.encoders.base import l2_normalise
from facerep.encoders.pixels import PixelsEncoder


class PCAEncoder:
    """Eigenfaces over `PixelsEncoder` features, whitened by default.

    Follows scikit-learn's estimator rules: `__init__` stores arguments, `fit` returns self,
    learned state ends in `_`.

    Args:
        n_components: eigenfaces kept (fewer when the training set is smaller).
        whiten: scale each component to unit variance; on small face sets this is worth
            several points of verification accuracy.
        size: pixel side the faces are shrunk to first.
    """

    name = "pca"

    def __init__(self, n_components: int = 100, whiten: bool = True, size: int = 32):
        self.n_components = n_components
        self.whiten = whiten
        self.size = size

    @property
    def input_size(self) -> int:
        """Pixel side the faces are shrunk to."""
        return self.size

    @property
    def dim(self) -> int:
        """Embedding size: the number of components kept (after fitting)."""
        return int(self.pca_.n_components_) if hasattr(self, "pca_") else self.n_components

    def fit(self, faces: np.ndarray) -> PCAEncoder:
        """Learn the eigenfaces from `[N, H, W, 3]` uint8 faces of the training identities."""
        self.pixels_ = PixelsEncoder(self.size)
        features = self.pixels_.embed(faces)
        components = min(self.n_components, len(features) - 1, features.shape[1])
        self.pca_ = PCA(n_components=components, whiten=self.whiten, random_state=0)
        self.pca_.fit(features)
        return self

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """`[N, H, W, 3]` uint8 aligned faces -> `[N, D]` float32 unit rows."""
        if not hasattr(self, "pca_"):
            raise ValueError("pca encoder is not fitted: call fit() on training faces first")
        features = self.pixels_.embed(faces)
        if len(features) == 0:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalise(self.pca_.transform(features))
