"""Eigenfaces: PCA of face pixels, fitted on training identities only (Turk and Pentland, 1991).

The PCA itself is `facerep.whitening.fit_whitening`, which evaluation also uses to whiten any
encoder's features (fitted on the training identities' features).
"""

from __future__ import annotations

import numpy as np

from facerep.encoders.pixels import PixelsEncoder
from facerep.whitening import fit_whitening


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
        return hasattr(self, "whitening_")

    @property
    def dim(self) -> int:
        """Embedding size: the number of components kept (after fitting)."""
        if self.fitted:
            return self.whitening_.dim
        return self.n_components

    def fit(self, faces: np.ndarray) -> PCAEncoder:
        """Learn the eigenfaces from `[N, H, W, 3]` uint8 faces of the training identities."""
        self.pixels_ = PixelsEncoder(self.size)
        features = self.pixels_.embed(faces)
        self.whitening_ = fit_whitening(features, self.n_components, self.whiten)
        return self

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """`[N, H, W, 3]` uint8 aligned faces -> `[N, D]` float32 unit rows."""
        if not self.fitted:
            raise ValueError("pca encoder is not fitted: call fit() on training faces first")
        return self.whitening_.apply(self.pixels_.embed(faces))
