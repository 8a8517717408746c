"""Fixtures for the face tests: scikit-image's astronaut photo, the ORL and cs131 faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's 512x512 RGB portrait of Eileen Collins: one frontal face, shipped with it."""
    from skimage.data import astronaut

    return astronaut()


@pytest.fixture(scope="session")
def astronaut_landmarks(astronaut) -> np.ndarray:
    """dlib's 5 landmarks on the astronaut's face, `[5, 2]` in photo pixels."""
    from facerep.faces.detect import detect_faces

    detections = detect_faces(astronaut)
    assert len(detections) == 1
    return detections[0].landmarks


@pytest.fixture(scope="session")
def orl_dir(shared_data) -> Path:
    """The ORL faces (`s<id>/<n>.pgm`, 92x112 greyscale); skips where the data is absent."""
    root = shared_data / "orl"
    if not (root / "s1" / "1.pgm").is_file():
        pytest.skip(f"ORL faces not found under {root}")
    return root


@pytest.fixture(scope="session")
def cs131_dir(shared_data) -> Path:
    """cs131_faces (`train|test/<name>/<n>.jpg`, 64x64 colour); skips where the data is absent."""
    root = shared_data / "cs131_faces"
    if not (root / "train").is_dir():
        pytest.skip(f"cs131 faces not found under {root}")
    return root
