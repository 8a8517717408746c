"""Eigenfaces: PCA of face pixels, fitted on training identities only (Turk and Pentland, 1991).

`Whitener` is the PCA projection itself, shared with evaluation, which whitens any encoder's
features with it (fitted on the training identities' features).
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from facerep.encoders.base import l2_normalise
from facerep.encoders.pixels import PixelsEncoder


class Whitener:
    """PCA projection fitted on training-identity features, whitened by default, unit rows out.

    Args:
        n_components: components kept (fewer when there are fewer samples or dimensions).
        whiten: scale each component to unit variance; decorrelates and equalises the feature
            directions, worth several points of verification accuracy on small face sets.
    """

    def __init__(self, n_components: int = 128, whiten: bool = True):
        self.n_components = n_components
        self.whiten = whiten

    def fit(self, features: np.ndarray) -> Whitener:
        """Fit on `[N, D]` features of the training identities only."""
        components = min(self.n_components, features.shape[0] - 1, features.shape[1])
        self.pca_ = PCA(n_components=components, whiten=self.whiten, random_state=0)
        self.pca_.fit(features)
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        """`[N, D]` features -> `[N, components]` projected (whitened) float32 unit rows."""
        if len(features) == 0:
            return np.zeros((0, self.pca_.n_components_), np.float32)
        return l2_normalise(self.pca_.transform(features))


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
    source = "pca"
    fingerprint = "pca"

    def __init__(self, n_components: int = 100, whiten: bool = True, size: int = 32):
        self.n_components = n_components
        self.whiten = whiten
        self.size = size

    @property
    def input_size(self) -> int:
        """Pixel side the faces are shrunk to."""
        return self.size

    @property
    def whitened(self) -> bool:
        """Whether the embeddings are whitened already, so evaluation need not whiten them."""
        return self.whiten

    @property
    def fitted(self) -> bool:
        """Whether `fit` has run, so `embed` works."""
        return hasattr(self, "whitener_")

    @property
    def dim(self) -> int:
        """Embedding size: the number of components kept (after fitting)."""
        if self.fitted:
            return int(self.whitener_.pca_.n_components_)
        return self.n_components

    def fit(self, faces: np.ndarray) -> PCAEncoder:
        """Learn the eigenfaces from `[N, H, W, 3]` uint8 faces of the training identities."""
        self.pixels_ = PixelsEncoder(self.size)
        self.whitener_ = Whitener(self.n_components, self.whiten).fit(self.pixels_.embed(faces))
        return self

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """`[N, H, W, 3]` uint8 aligned faces -> `[N, D]` float32 unit rows."""
        if not self.fitted:
            raise ValueError("pca encoder is not fitted: call fit() on training faces first")
        return self.whitener_.transform(self.pixels_.embed(faces))
