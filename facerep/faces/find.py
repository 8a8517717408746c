"""Photo -> faces: detection, landmarks, alignment and pose in one call."""

from __future__ import annotations

from typing import Any

import numpy as np

from facerep.faces.align import DEFAULT_PADDING, align_face
from facerep.faces.detect import Detection, FaceSearch, search_faces
from facerep.faces.dlib_models import DetectorName
from facerep.faces.pose import estimate_pose
from facerep.types import Face

# Below this side, in pixels, an image cannot hold a face that survives alignment.
MIN_IMAGE_SIDE = 12


def too_small_reason(image: np.ndarray) -> str | None:
    """Why an `[H, W, 3]` image cannot hold a face, or None when it can.

    An image can when its shorter side is `MIN_IMAGE_SIDE` pixels or more.
    """
    height, width = image.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        return f"image too small to hold a face ({width}x{height} px)"
    return None


class NoFaceError(ValueError):
    """A photo in which no face was found, where one was needed; one line: `source: reason`."""

    def __init__(self, source: str, reason: str = "no face found"):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self):
        # Rebuilt from its fields (not its message) when it crosses a process boundary.
        return (type(self), (self.source, self.reason))

    @classmethod
    def in_image(cls, source: str, image: np.ndarray) -> NoFaceError:
        """The error for a photo without faces, saying so when it is too small to hold one."""
        small = too_small_reason(image)
        return cls(source, f"no face found: {small}" if small else "no face found")


def find_faces(image: np.ndarray, **options: Any) -> list[Face]:
    """Detect, landmark and align every face in an `[H, W, 3]` uint8 image, largest first.

    Each face carries its `[size, size, 3]` aligned crop and its landmarks in crop pixels. An
    image too small to hold one (`too_small_reason`) is not searched. The keywords are
    `search_and_align`'s.
    """
    faces, _ = search_and_align(image, **options)
    return faces


def search_and_align(
    image: np.ndarray,
    *,
    size: int = 112,
    padding: float = DEFAULT_PADDING,
    detector: DetectorName = "hog",
    upsample: int = 0,
    min_face: float = 0.0,
    max_faces: int | None = None,
    cascade: bool = True,
    assume_cropped: bool = False,
) -> tuple[list[Face], FaceSearch]:
    """`find_faces`, with the search behind it (which says why when no face was kept).

    `cascade` and `assume_cropped` are `facerep.faces.detect.search_faces`'s; `max_faces`
    keeps the largest faces only.
    """
    if too_small_reason(image):
        return [], FaceSearch()
    search = search_faces(
        image,
        detector,
        upsample,
        min_face,
        cascade=cascade,
        assume_cropped=assume_cropped,
        size=size,
        padding=padding,
    )
    faces = [_aligned(image, d, size, padding) for d in search.detections[:max_faces]]
    return faces, search


def _aligned(image: np.ndarray, detection: Detection, size: int, padding: float) -> Face:
    crop, crop_landmarks = align_face(image, detection.landmarks, size, padding)
    return Face(
        box=detection.box,
        score=detection.score,
        landmarks=detection.landmarks,
        crop_landmarks=crop_landmarks,
        pose=estimate_pose(detection.landmarks),
        crop=crop,
        stage=detection.stage,
    )
