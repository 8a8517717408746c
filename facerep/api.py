"""The friendly verbs: load a photo and find its faces, as in face_recognition, typed."""

from __future__ import annotations

from facerep.faces.dlib_models import DetectorName
from facerep.faces.find import find_faces
from facerep.images import DEFAULT_MAX_PIXELS, ImageSource, load_image
from facerep.types import Face


def detect(
    image: ImageSource,
    *,
    size: int = 112,
    detector: DetectorName = "hog",
    upsample: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Face]:
    """Find every face in a photo (path, bytes, array or PIL image), largest first.

    Each `Face` has its box, detector score, 5 landmarks, head pose and a `size` x `size`
    aligned crop.

    Raises:
        ImageError: the photo cannot be read.
    """
    pixels = load_image(image, max_pixels=max_pixels)
    return find_faces(pixels, size=size, detector=detector, upsample=upsample)
