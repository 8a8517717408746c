"""Face detection and 5-point landmarks with dlib, tuned to also work on tight crops and thumbnails.

dlib's HOG detector scans an 80x80 window, so a face that fills a 64x64 thumbnail, or a portrait
cropped at the hairline, is invisible to it as is. Small images are therefore padded (so the face
no longer touches the border) and upsampled before detection; large photos are shrunk to bound
the cost. Boxes and landmarks are mapped back to the original pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from facerep.faces.dlib_models import DetectorName, face_detector, shape_predictor_5
from facerep.types import Box

# Images up to this size are treated as face crops: padded, then scaled to it before detection.
SMALL_SIDE = 200
# Border added around small images, as a fraction of their longer side (faces touch the edges).
SMALL_PADDING = 0.25
# Larger photos are shrunk to this longer side: HOG's cost grows with area, faces stay > 80 px.
MAX_SIDE = 1600
# Below this, an image cannot hold a face that survives alignment.
MIN_IMAGE_SIDE = 12


@dataclass(frozen=True)
class Detection:
    """A face box, the detector's score and the `[5, 2]` landmarks, all in source pixels."""

    box: Box
    score: float
    landmarks: np.ndarray


def detect_faces(
    image: np.ndarray,
    detector: DetectorName = "hog",
    upsample: int = 0,
    min_face: float = 0.0,
) -> list[Detection]:
    """Find faces in an `[H, W, 3]` uint8 RGB image, largest first.

    Args:
        image: the photo.
        detector: "hog" (dlib's HOG+SVM, fast on CPU) or "cnn" (dlib's MMOD CNN, better at
            profile and small faces, ~10x slower on CPU).
        upsample: extra 2x upsamplings for small faces in large photos (as face_recognition's
            `number_of_times_to_upsample`).
        min_face: boxes narrower than this many source pixels are dropped.
    """
    detections = _detect_once(image, detector, upsample, pad=_is_small(image))
    if not detections and not _is_small(image):
        # A large but tight portrait: the face touches the border, so retry with a margin.
        detections = _detect_once(image, detector, upsample, pad=True)
    kept = [d for d in detections if d.box.width >= min_face]
    return sorted(kept, key=lambda d: d.box.width * d.box.height, reverse=True)


def _is_small(image: np.ndarray) -> bool:
    return max(image.shape[:2]) <= SMALL_SIDE * 2


def _detect_once(
    image: np.ndarray, detector: DetectorName, upsample: int, pad: bool
) -> list[Detection]:
    working, scale, margin = _working_image(image, pad)
    rects, scores = _run_detector(working, detector, upsample)
    predictor = shape_predictor_5()
    detections = []
    for rect, score in zip(rects, scores, strict=True):
        shape = predictor(working, rect)
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.bottom()]], float)
        (left, top), (right, bottom) = corners / scale - margin
        detections.append(
            Detection(
                Box(float(left), float(top), float(right), float(bottom)),
                float(score),
                points / scale - margin,
            )
        )
    return detections


def _working_image(image: np.ndarray, pad: bool) -> tuple[np.ndarray, float, int]:
    """The image the detector sees, its scale from the (padded) source, and the margin added."""
    margin = round(SMALL_PADDING * max(image.shape[:2])) if pad else 0
    if margin:
        image = np.pad(image, ((margin, margin), (margin, margin), (0, 0)), mode="edge")
    longest = max(image.shape[:2])
    if longest < SMALL_SIDE:
        scale = SMALL_SIDE / longest
    elif longest > MAX_SIDE:
        scale = MAX_SIDE / longest
    else:
        return np.ascontiguousarray(image), 1.0, margin
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX
    resized = np.asarray(Image.fromarray(image).resize(size, resample))
    # Report the exact scale of the rounded size, so mapped-back points stay sub-pixel exact.
    return resized, size[0] / width, margin


def _run_detector(image: np.ndarray, detector: DetectorName, upsample: int) -> tuple[list, list]:
    model = face_detector(detector)
    if detector == "cnn":
        found = model(image, upsample)
        return [d.rect for d in found], [d.confidence for d in found]
    rects, scores, _ = model.run(image, upsample, 0.0)
    return list(rects), list(scores)
