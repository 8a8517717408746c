"""Raw pixels as an embedding: the floor every learned representation must clear."""

from __future__ import annotations

import numpy as np

from facerep.encoders.base import l2_normalise
from facerep.images import resize_faces


class PixelsEncoder:
    """Downsampled, per-image standardised pixels (greyscale by default), unit length.

    Args:
        size: side the faces are shrunk to before flattening (32: 1,024 values in grey).
        grey: average the colour channels (colour mostly encodes lighting, not identity).
    """

    def __init__(self, size: int = 32, grey: bool = True):
        self.size = size
        self.grey = grey
        self.name = "pixels"
        self.source = "pixels"
        self.fingerprint = "pixels"
        self.input_size = size
        self.dim = size * size * (1 if grey else 3)

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """`[N, H, W, 3]` uint8 aligned faces -> `[N, D]` float32 unit rows."""
        x = resize_faces(faces, self.size).astype(np.float32)
        if self.grey:
            x = x.mean(axis=-1)
        x = x.reshape(len(x), self.dim)
        # Standardising each image removes global brightness and contrast, as eigenfaces do.
        x = x - x.mean(axis=1, keepdims=True)
        return l2_normalise(x)
