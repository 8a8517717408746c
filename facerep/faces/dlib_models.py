"""dlib's pretrained face models, shipped in the `face_recognition_models` package, loaded lazily.

The package's own `__init__` imports `pkg_resources` (gone from recent setuptools), so its folder is
located without importing it. Nothing is downloaded: a missing file is an installation error.

Each thread gets its own model objects: dlib's detectors keep scratch state while they run, so
two threads sharing one get wrong boxes or crash the process (seen with 4 threads on ORL: 99 of
200 detections differed from a single thread's, and one run segfaulted).
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from facerep.images import resize_faces

DetectorName = Literal["hog", "cnn"]

MODEL_FILES = {
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "mmod": "mmod_human_face_detector.dat",
    "resnet": "dlib_face_recognition_resnet_model_v1.dat",
}


_THREAD_MODELS = threading.local()


def per_thread(build: Callable[..., Any]) -> Callable[..., Any]:
    """Cache `build(*args)` once per thread (dlib's models must not be shared across threads)."""

    @functools.wraps(build)
    def get(*args: Any) -> Any:
        models = _THREAD_MODELS.__dict__.setdefault(build.__name__, {})
        if args not in models:
            models[args] = build(*args)
        return models[args]

    return get


def model_path(key: str) -> Path:
    """Path of one of dlib's model files inside the installed `face_recognition_models`."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed (pip install facerep)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / MODEL_FILES[key]
    if not path.is_file():
        raise RuntimeError(f"{path}: dlib model file missing; reinstall face_recognition_models")
    return path


@per_thread
def face_detector(name: DetectorName = "hog") -> Any:
    """dlib's HOG+SVM frontal detector, or its CNN (MMOD) detector; built once per thread."""
    import dlib

    if name == "hog":
        return dlib.get_frontal_face_detector()
    if name == "cnn":
        return dlib.cnn_face_detection_model_v1(str(model_path("mmod")))
    raise ValueError(f"unknown detector {name!r}: choose 'hog' or 'cnn'")


@per_thread
def shape_predictor_5() -> Any:
    """dlib's 5-point landmark model (two corners of each eye and the base of the nose)."""
    import dlib

    return dlib.shape_predictor(str(model_path("landmarks5")))


@per_thread
def face_recognizer() -> Any:
    """dlib's 128-D ResNet face recogniser (99.38% on LFW), for the `dlib` encoder."""
    import dlib

    return dlib.face_recognition_model_v1(str(model_path("resnet")))



RECOGNISER_CHIP = 150  # the recogniser's input side: dlib.get_face_chip's default


def unit_descriptors(faces: np.ndarray, num_jitters: int = 0, batch_size: int = 64) -> np.ndarray:
    """dlib's 128-D descriptors of `[N, H, W, 3]` uint8 aligned faces, as float32 unit rows.

    facerep's crops use dlib's own 5-point template, so a crop resized to 150 px is the chip
    the network was trained on, at the crop's resolution.
    """
    chips = resize_faces(faces, RECOGNISER_CHIP)
    out = np.zeros((len(chips), 128), np.float64)
    for start in range(0, len(chips), batch_size):
        batch = [np.ascontiguousarray(c) for c in chips[start : start + batch_size]]
        descriptors = face_recognizer().compute_face_descriptor(batch, num_jitters)
        out[start : start + len(batch)] = np.array([np.array(v) for v in descriptors])
    unit = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return unit.astype(np.float32)  # normalised in float64: a photo is at distance 0 of itself
