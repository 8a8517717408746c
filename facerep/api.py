"""The friendly verbs: load a photo and find its faces, as in face_recognition, typed."""

from __future__ import annotations

from pathlib import Path

from facerep.encoders.base import Encoder
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


BUILTIN_ENCODERS = ("dlib", "pca", "pixels")


def load_encoder(name_or_run: str | Path, **options: object) -> Encoder:
    """An encoder by name (`dlib`, `pca`, `pixels`) or by run directory (`facerep pretrain`).

    A run is rebuilt from its folder alone. Options go to the encoder (for a run:
    `pool="mean"|"cls"`, `batch_size`, `device`; for pca: `n_components`, `whiten`). A `pca`
    encoder comes unfitted: call `fit(faces)` on training identities first.
    """
    name = str(name_or_run)
    if name == "dlib":
        from facerep.encoders.dlib import DlibEncoder

        return DlibEncoder(**options)
    if name == "pca":
        from facerep.encoders.pca import PCAEncoder

        return PCAEncoder(**options)
    if name == "pixels":
        from facerep.encoders.pixels import PixelsEncoder

        return PixelsEncoder(**options)
    if (Path(name) / "config.json").is_file():
        from facerep.encoders.mae import RunEncoder

        return RunEncoder(name, **options)
    raise ValueError(
        f"{name}: not an encoder name ({', '.join(BUILTIN_ENCODERS)}) nor a facerep run "
        "directory (no config.json)"
    )
