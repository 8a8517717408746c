"""Shared helpers of the evaluation tests: embeddings laid out by hand."""

from __future__ import annotations

import numpy as np


def on_circle(degrees: list[float]) -> np.ndarray:
    """L2-normalised 2-D embeddings at the given angles."""
    radians = np.radians(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)
