"""Photos to embedded faces with a given encoder: what the verbs, tools and tasks share.

Below both `facerep.api` (which resolves encoder names first) and `facerep.tasks` (which are
handed an encoder), so neither imports the other.
"""

from __future__ import annotations

from facerep.encoders.base import Encoder, embed_faces
from facerep.faces.dlib_models import DetectorName
from facerep.faces.find import NoFaceError, find_faces
from facerep.images import DEFAULT_MAX_PIXELS, ImageSource, describe_source, load_image
from facerep.types import Face


def embed_photo(
    image: ImageSource,
    encoder: Encoder,
    *,
    detector: DetectorName = "hog",
    upsample: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Face]:
    """Every face in a photo, aligned at the encoder's input size and embedded, largest first.

    Raises:
        ImageError: the photo cannot be read.
    """
    pixels = load_image(image, max_pixels=max_pixels)
    faces = find_faces(pixels, size=encoder.input_size, detector=detector, upsample=upsample)
    embed_faces(faces, encoder)
    return faces


def largest_face(
    image: ImageSource,
    encoder: Encoder,
    *,
    detector: DetectorName = "hog",
    upsample: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Face:
    """The largest face of a photo, embedded: the one a portrait or ID photo is about.

    Raises:
        NoFaceError: no face was found. ImageError: the photo cannot be read.
    """
    pixels = load_image(image, max_pixels=max_pixels)  # decoded here: its size explains a miss
    # Only the largest is aligned: enrolling, searching and verifying need no other.
    faces = find_faces(
        pixels, size=encoder.input_size, detector=detector, upsample=upsample, max_faces=1
    )
    if not faces:
        raise NoFaceError.in_image(describe_source(image), pixels)
    embed_faces(faces, encoder)
    return faces[0]
