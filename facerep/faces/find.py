"""Photo -> faces: detection, landmarks, alignment and pose in one call."""

from __future__ import annotations

import numpy as np

from facerep.faces.align import DEFAULT_PADDING, align_face
from facerep.faces.detect import MIN_IMAGE_SIDE, detect_faces
from facerep.faces.dlib_models import DetectorName
from facerep.faces.pose import estimate_pose
from facerep.types import Face


class NoFaceError(ValueError):
    """A photo in which no face was found, where one was needed; one line: `source: reason`."""


class ImageTooSmallError(NoFaceError):
    """An image too small to hold a detectable face."""


def find_faces(
    image: np.ndarray,
    *,
    size: int = 112,
    padding: float = DEFAULT_PADDING,
    detector: DetectorName = "hog",
    upsample: int = 0,
    min_face: float = 0.0,
    max_faces: int | None = None,
) -> list[Face]:
    """Detect, landmark and align every face in an `[H, W, 3]` uint8 image, largest first.

    Each face carries its `[size, size, 3]` aligned crop and its landmarks in crop pixels.

    Raises:
        ImageTooSmallError: the image's shorter side is below `MIN_IMAGE_SIDE` pixels.
    """
    height, width = image.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ImageTooSmallError(f"image too small to hold a face ({width}x{height} px)")
    detections = detect_faces(image, detector=detector, upsample=upsample, min_face=min_face)
    faces = []
    for detection in detections[:max_faces]:
        crop, crop_landmarks = align_face(image, detection.landmarks, size, padding)
        faces.append(
            Face(
                box=detection.box,
                score=detection.score,
                landmarks=detection.landmarks,
                crop_landmarks=crop_landmarks,
                pose=estimate_pose(detection.landmarks),
                crop=crop,
            )
        )
    return faces
