"""The friendly verbs: find faces, embed, verify, cluster; as in face_recognition, typed.

Every verb takes an `encoder`: an Encoder, a name (`dlib`, `pixels`), a run folder, or None for
dlib's ResNet recogniser, which ships with facerep, so nothing is downloaded. Encoders by name
come from `facerep.encoders.registry`; the work itself lives below (`facerep.encoders.photos`,
`facerep.tasks`), which never import this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from facerep.encoders import photos
from facerep.encoders.calibration import encoder_threshold
from facerep.encoders.registry import (
    DEFAULT_ENCODER,
    EncoderLike,
    list_encoders,
    load_encoder,
    resolve_encoder,
)
from facerep.faces.dlib_models import DetectorName
from facerep.faces.find import NoFaceError, find_faces
from facerep.images import DEFAULT_MAX_PIXELS, ImageSource, describe_source, load_image
from facerep.types import Face, Verdict

if TYPE_CHECKING:  # clustering brings in scikit-learn: loaded when a folder is clustered
    from facerep.encoders.base import Encoder
    from facerep.tasks.cluster import Clustering
    from facerep.tasks.occlusion import OcclusionMapper

__all__ = [
    "DEFAULT_ENCODER",
    "EncoderLike",
    "cluster",
    "detect",
    "embed",
    "encoder_threshold",
    "largest_face",
    "list_encoders",
    "load_encoder",
    "resolve_encoder",
    "verify",
]


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


def embed(
    image: ImageSource,
    encoder: EncoderLike = None,
    *,
    detector: DetectorName = "hog",
    upsample: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    ignore_occluded: bool = False,
) -> list[Face]:
    """Every face in a photo with its `embedding` set, largest first.

    With `ignore_occluded` (a ViT run's encoder with an occlusion prior) the patches the run's
    occlusion map marks are left out of the embedding, so sunglasses or a hand weigh less.

    Raises:
        ImageError: the photo cannot be read. ValueError: `ignore_occluded` with an encoder
            that cannot leave patches out, or a run without an occlusion prior.
    """
    chosen = resolve_encoder(encoder)
    if ignore_occluded:
        pixels = load_image(image, max_pixels=max_pixels)
        mapper = occlusion_mapper(chosen)
        return mapper.embed_photo(chosen, pixels, detector=detector, upsample=upsample)
    return photos.embed_photo(
        image, chosen, detector=detector, upsample=upsample, max_pixels=max_pixels
    )


def occlusion_mapper(encoder: Encoder) -> OcclusionMapper:
    """The occlusion mapper of a run's encoder (its prior required), loaded once per run and
    loaded again when its weights or its prior change (seen from the files' stat: no hashing
    per call)."""
    from facerep.runs import WEIGHTS_FILE
    from facerep.tasks.occlusion_prior import PRIOR_FILE

    run = getattr(encoder, "run", None)
    if run is None:
        raise ValueError(
            f"{encoder.name}: not a facerep run; ignoring occluders needs a ViT run with an "
            "occlusion prior (`facerep occlusion-prior RUN`)"
        )
    stamps = tuple(_stamp(Path(run) / name) for name in (WEIGHTS_FILE, PRIOR_FILE))
    return _cached_mapper(str(Path(run).resolve()), stamps)


def _stamp(path: Path) -> tuple[int, int]:
    """(modification time in ns, size) of a file, or (0, 0) where there is none."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return 0, 0
    return info.st_mtime_ns, info.st_size


@functools.lru_cache(maxsize=4)
def _cached_mapper(run: str, stamps: tuple) -> OcclusionMapper:
    from facerep.tasks.occlusion import OcclusionMapper

    return OcclusionMapper(run, prior=True)


def largest_face(
    image: ImageSource,
    encoder: EncoderLike = None,
    *,
    detector: DetectorName = "hog",
    upsample: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Face:
    """The largest face of a photo, embedded: the one a portrait or ID photo is about.

    Raises:
        NoFaceError: no face was found. ImageError: the photo cannot be read.
    """
    chosen = resolve_encoder(encoder)
    return photos.largest_face(
        image, chosen, detector=detector, upsample=upsample, max_pixels=max_pixels
    )


def verify(
    a: ImageSource,
    b: ImageSource,
    encoder: EncoderLike = None,
    *,
    threshold: float | None = None,
    ignore_occluded: bool = False,
) -> Verdict:
    """Whether the largest faces of two photos are the same person.

    Args:
        a, b: photos (path, bytes, array or PIL image).
        encoder: as for `embed`.
        threshold: cosine distance at or below which they are the same person; by default
            the encoder's calibrated threshold (`facerep calibrate`), or dlib's built-in one.
        ignore_occluded: as for `embed`.

    Raises:
        NoFaceError: a photo has no face. ImageError: a photo cannot be read.
        ValueError: no threshold given and the encoder has none.
    """
    chosen = resolve_encoder(encoder)
    limit = encoder_threshold(chosen, threshold)
    if ignore_occluded:
        left, right = (_largest_ignoring_occluders(photo, chosen) for photo in (a, b))
    else:
        left, right = photos.largest_face(a, chosen), photos.largest_face(b, chosen)
    return Verdict.between(left.embedding, right.embedding, limit)


def _largest_ignoring_occluders(photo: ImageSource, encoder: Encoder) -> Face:
    pixels = load_image(photo)  # decoded here: its size explains a miss
    faces = occlusion_mapper(encoder).embed_photo(encoder, pixels)
    if not faces:
        raise NoFaceError.in_image(describe_source(photo), pixels)
    return faces[0]


def cluster(
    images: str | Path | Sequence[ImageSource],
    encoder: EncoderLike = None,
    *,
    threshold: float | None = None,
    detector: DetectorName = "hog",
    on_progress: Callable[[int, int], None] | None = None,
) -> Clustering:
    """Group the faces of a photo folder (or list of photos) by person.

    Faces join a cluster while their average cosine distance stays within the verification
    threshold; a face that matches nobody is left unmatched. Returns a `Clustering`.
    """
    from facerep.tasks.cluster import cluster_photos

    chosen = resolve_encoder(encoder)
    return cluster_photos(
        images,
        chosen,
        encoder_threshold(chosen, threshold),
        detector=detector,
        on_progress=on_progress,
    )
