"""The friendly verbs: find faces, embed, verify, cluster; as in face_recognition, typed.

Every verb takes an `encoder`: an Encoder, a name (`dlib`, `pca`, `pixels`), a run folder, or
None for dlib's ResNet recogniser, which ships with facerep, so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from facerep.encoders.base import Encoder, embed_faces
from facerep.faces.dlib_models import DetectorName
from facerep.faces.find import NoFaceError, find_faces
from facerep.images import DEFAULT_MAX_PIXELS, ImageSource, describe_source, load_image
from facerep.types import Face, Verdict

if TYPE_CHECKING:
    from facerep.tasks.cluster import Clustering

EncoderLike = Encoder | str | Path | None
DEFAULT_ENCODER = "dlib"


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


BUILTIN_ENCODERS = ("dlib", "pca", "pixels")


def load_encoder(name_or_run: str | Path, **options: object) -> Encoder:
    """An encoder by name (`dlib`, `pca`, `pixels`) or by run directory (`facerep pretrain`).

    A run is rebuilt from its folder alone. Options go to the encoder (for a run:
    `pool="mean"|"cls"`, `batch_size`, `device`; for pca: `n_components`, `whiten`). A `pca`
    encoder comes unfitted: call `fit(faces)` on training identities first.
    """
    encoder, source = _build_encoder(str(name_or_run), options)
    encoder.source = source  # how to rebuild it: galleries record this
    return _with_calibration(encoder)


def _with_calibration(encoder: Encoder) -> Encoder:
    """The encoder with its stored calibrated threshold, when `facerep calibrate` made one."""
    from facerep.tasks.calibrate import load_calibration

    calibration = load_calibration(encoder)
    # Without one, back to the encoder's own default (dlib's built-in, or None for a run).
    default = getattr(type(encoder), "threshold", None)
    encoder.threshold = calibration.threshold if calibration is not None else default
    return encoder


def _build_encoder(name: str, options: dict) -> tuple[Encoder, str]:
    if name == "dlib":
        from facerep.encoders.dlib import DlibEncoder

        return DlibEncoder(**options), name
    if name == "pca":
        from facerep.encoders.pca import PCAEncoder

        return PCAEncoder(**options), name
    if name == "pixels":
        from facerep.encoders.pixels import PixelsEncoder

        return PixelsEncoder(**options), name
    if (Path(name) / "config.json").is_file():
        from facerep.encoders.mae import RunEncoder

        return RunEncoder(name, **options), str(Path(name).resolve())
    raise ValueError(
        f"{name}: not an encoder name ({', '.join(BUILTIN_ENCODERS)}) nor a facerep run "
        "directory (no config.json)"
    )


def resolve_encoder(encoder: EncoderLike = None) -> Encoder:
    """An Encoder as given, or loaded (once per process) from a name or run folder."""
    if encoder is None:
        encoder = DEFAULT_ENCODER
    if isinstance(encoder, str | Path):
        # The model is loaded once; the calibration is re-read, as it may have changed since.
        return _with_calibration(_cached_encoder(str(encoder)))
    return encoder


@lru_cache(maxsize=8)
def _cached_encoder(source: str) -> Encoder:
    return load_encoder(source)


def embed(
    image: ImageSource,
    encoder: EncoderLike = None,
    *,
    detector: DetectorName = "hog",
    upsample: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Face]:
    """Every face in a photo with its `embedding` set, largest first.

    Raises:
        ImageError: the photo cannot be read.
    """
    chosen = resolve_encoder(encoder)
    faces = detect(
        image, size=chosen.input_size, detector=detector, upsample=upsample, max_pixels=max_pixels
    )
    embed_faces(faces, chosen)
    return faces


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
    pixels = load_image(image, max_pixels=max_pixels)  # decoded here: its size explains a miss
    # Only the largest is aligned: enrolling, searching and verifying need no other.
    faces = find_faces(
        pixels, size=chosen.input_size, detector=detector, upsample=upsample, max_faces=1
    )
    if not faces:
        raise NoFaceError.in_image(describe_source(image), pixels)
    embed_faces(faces, chosen)
    return faces[0]


def verify(
    a: ImageSource,
    b: ImageSource,
    encoder: EncoderLike = None,
    *,
    threshold: float | None = None,
) -> Verdict:
    """Whether the largest faces of two photos are the same person.

    Args:
        a, b: photos (path, bytes, array or PIL image).
        encoder: as for `embed`.
        threshold: cosine distance at or below which they are the same person; by default
            the encoder's calibrated threshold (`facerep calibrate`), or dlib's built-in one.

    Raises:
        NoFaceError: a photo has no face. ImageError: a photo cannot be read.
        ValueError: no threshold given and the encoder has none.
    """
    chosen = resolve_encoder(encoder)
    limit = encoder_threshold(chosen, threshold)
    left, right = largest_face(a, chosen), largest_face(b, chosen)
    return Verdict.between(left.embedding, right.embedding, limit)


def encoder_threshold(encoder: Encoder, threshold: float | None = None) -> float:
    """`threshold` if given, else the encoder's calibrated one; ValueError when neither exists."""
    if threshold is not None:
        return float(threshold)
    stored = getattr(encoder, "threshold", None)
    if stored is None:
        raise ValueError(
            f"encoder {encoder.name} has no verification threshold: run "
            f"`facerep calibrate DATASET --encoder {getattr(encoder, 'source', encoder.name)}` "
            "on labelled faces, or pass a threshold"
        )
    return float(stored)


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
