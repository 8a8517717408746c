"""Face detection and 5-point landmarks with dlib, tuned to also work on tight crops and thumbnails.

dlib's HOG detector scans an 80x80 window, so a face that fills a 64x64 thumbnail is invisible to
it as is, and a portrait cropped at the hairline fails because the face touches the border.
Small images are therefore upsampled and large photos shrunk to a working size, and when that
finds nothing, the detector looks once more with a margin around the image. Boxes and landmarks
are mapped back to the original pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from facerep.faces.dlib_models import DetectorName, face_detector, shape_predictor_5
from facerep.types import Box

# Smaller images (face crops, thumbnails) are upsampled to this longer side, so a face that fills
# them spans more than HOG's 80-px window. 170 found as many faces as 200 on ORL, cs131_faces,
# the unlabeled corpus and the LFW sample, 1.2-1.7x faster; 150 began to lose some.
SMALL_SIDE = 170
# Larger photos are shrunk to this longer side: HOG's cost grows with area, faces stay > 80 px.
MAX_SIDE = 1600
# Margin of the second look, as a fraction of the working image's longer side: it gives tight
# portraits (ORL) the border HOG needs around a face.
RETRY_PADDING = 0.25


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
    working, scale = _working_image(image)
    detections = _detect_once(working, scale, 0, detector, upsample)
    if not detections:
        margin = round(RETRY_PADDING * max(working.shape[:2]))
        padded = np.pad(working, ((margin, margin), (margin, margin), (0, 0)), mode="edge")
        detections = _detect_once(padded, scale, margin, detector, upsample)
    kept = [d for d in detections if d.box.width >= min_face]
    return sorted(kept, key=lambda d: d.box.width * d.box.height, reverse=True)


def _detect_once(
    working: np.ndarray, scale: np.ndarray, margin: int, detector: DetectorName, upsample: int
) -> list[Detection]:
    """Run the detector and landmarks on `working`, mapping results back to source pixels."""
    rects, scores = _run_detector(working, detector, upsample)
    predictor = shape_predictor_5()
    detections = []
    for rect, score in zip(rects, scores, strict=True):
        shape = predictor(working, rect)
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.bottom()]], float)
        (left, top), (right, bottom) = to_source(corners, scale, margin)
        box = Box(float(left), float(top), float(right), float(bottom))
        detections.append(Detection(box, float(score), to_source(points, scale, margin)))
    return detections


def to_source(points: np.ndarray, scale: np.ndarray, margin: int) -> np.ndarray:
    """Map `[K, 2]` working-image pixels back to the source, pixel centres at integers.

    A resize by s maps the source's pixel edges, not centres, so x_work = (x + 0.5) * s - 0.5.
    """
    return (points - margin + 0.5) / scale - 0.5


def _working_image(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image at the detector's working size, and its (x, y) scale from the source."""
    longest = max(image.shape[:2])
    if longest < SMALL_SIDE:
        scale = SMALL_SIDE / longest
    elif longest > MAX_SIDE:
        scale = MAX_SIDE / longest
    else:
        return np.ascontiguousarray(image), np.ones(2)
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX
    resized = np.asarray(Image.fromarray(image).resize(size, resample))
    # The exact scales of the rounded size, per axis, so mapped-back points stay exact.
    return resized, np.array([size[0] / width, size[1] / height])


def _run_detector(image: np.ndarray, detector: DetectorName, upsample: int) -> tuple[list, list]:
    model = face_detector(detector)
    if detector == "cnn":
        found = model(image, upsample)
        return [d.rect for d in found], [d.confidence for d in found]
    rects, scores, _ = model.run(image, upsample, 0.0)
    return list(rects), list(scores)
