"""dlib's ResNet face recogniser (128-D, 99.38% on LFW): the supervised reference encoder.

facerep's crops use dlib's own 5-point mean-face template at padding 0.25, so a crop resized to
150x150 is the chip the network was trained on (`dlib.get_face_chip`), at the crop's resolution
(`facerep.faces.dlib_models.unit_descriptors`; distillation's teacher calls the same).
"""

from __future__ import annotations

import numpy as np

from facerep.faces.dlib_models import RECOGNISER_CHIP, unit_descriptors

CHIP_SIZE = RECOGNISER_CHIP  # the network's input side
# dlib's own rule is "same person below 0.6 euclidean distance" between raw descriptors, whose
# norm is about 1.49 (mean over faces_unlabeled); on unit vectors that is a cosine distance of
# 0.6**2 / (2 * 1.49**2) = 0.081. `facerep calibrate` replaces it with one measured at a FAR.
DEFAULT_THRESHOLD = 0.08


class DlibEncoder:
    """128-D dlib face descriptors, L2-normalised.

    Args:
        num_jitters: average over this many randomly jittered copies (dlib's option; slower).
        batch_size: chips per call into dlib.
    """

    name = "dlib"
    source = "dlib"
    fingerprint = "dlib"  # the weights ship in face_recognition_models: one set only
    input_size = CHIP_SIZE
    dim = 128
    default_threshold = DEFAULT_THRESHOLD
    # dlib holds the GIL while it embeds and costs the same per face in a batch: a server
    # embeds its faces in the worker process that found them (facerep.service.workers).
    holds_gil = True

    def __init__(self, num_jitters: int = 0, batch_size: int = 64):
        self.num_jitters = num_jitters
        self.batch_size = batch_size

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """`[N, H, W, 3]` uint8 aligned faces -> `[N, 128]` float32 unit rows."""
        return unit_descriptors(faces, self.num_jitters, self.batch_size)
