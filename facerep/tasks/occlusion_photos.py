"""Occlusion maps and anomaly scores for folders of photos: what `facerep occlusion` and
`facerep anomaly` run, and the files they write."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facerep.data.sources import named_photos
from facerep.faces.find import NoFaceError
from facerep.files import atomic_write, atomic_write_bytes
from facerep.images import ImageError, ImageSource, load_image
from facerep.outputs import check_output, mark_output, swap_in_folder
from facerep.tasks.occlusion import FaceOcclusion, OcclusionMapper
from facerep.tasks.occlusion_images import mask_in_photo, png_bytes, tinted
from facerep.types import Failure

SUMMARY_FILE = "occlusion.json"


@dataclass
class PhotoOcclusion:
    """One photo's faces with their occlusion maps."""

    source: str
    pixels: np.ndarray = field(repr=False)
    faces: list[FaceOcclusion]


@dataclass
class Explained:
    """The photos that gave faces, and those that did not with their reasons."""

    photos: list[PhotoOcclusion]
    failures: list[Failure]

    def ranked(self) -> list[tuple[PhotoOcclusion, int]]:
        """Every (photo, face index), most anomalous first."""
        faces = [(photo, i) for photo in self.photos for i in range(len(photo.faces))]
        return sorted(faces, key=lambda pair: -pair[0].faces[pair[1]].map.score)


def explain_photos(
    images: str | Path | Sequence[ImageSource],
    mapper: OcclusionMapper,
    on_progress: Callable[[int, int], None] | None = None,
    keep_pixels: bool = True,
) -> Explained:
    """The occlusion maps of every face in a folder (walked recursively) or list of photos.

    `keep_pixels=False` keeps no photo's pixels (ranking needs none; a folder of large photos
    would otherwise be held in memory whole).
    """
    photos, failures = [], []
    listed = named_photos(images)
    for done, (name, image) in enumerate(listed, 1):
        try:
            pixels = load_image(image)
            faces = mapper.explain_photo(pixels, name)
            kept = pixels if keep_pixels else np.zeros((*pixels.shape[:2], 0), np.uint8)
            photos.append(PhotoOcclusion(name, kept, faces))
        except (ImageError, NoFaceError) as e:
            failures.append(Failure.of(name, e))
        if on_progress is not None:
            on_progress(done, len(listed))
    return Explained(photos, failures)


def face_summary(face: FaceOcclusion, index: int) -> dict:
    """What the summary and the service say of one face."""
    occlusion = face.map
    return {
        "face": index,
        "box": face.face.box.as_list(),
        "score": round(occlusion.score, 4),
        "outlier_fraction": round(occlusion.outlier_fraction, 4),
        "regions": {k: round(v, 4) for k, v in occlusion.regions.items()},
        "region_scores": {k: round(v, 4) for k, v in occlusion.region_scores.items()},
    }


def face_mask(photo: PhotoOcclusion, index: int, padding: float) -> np.ndarray:
    """The face's outlier mask in the photo's pixels, `[H, W]` in [0, 1]."""
    face = photo.faces[index]
    return mask_in_photo(face.face, face.map.mask, photo.pixels.shape, padding)


def write_occlusion(
    explained: Explained,
    out: str | Path,
    mapper: OcclusionMapper,
    sources: Sequence = (),
    overwrite: bool = False,
) -> Path:
    """Write per face a mask PNG and an overlay PNG, and OUT/occlusion.json; returns OUT.

    The folder appears whole or not at all; an earlier one is replaced only with `overwrite`.

    Raises:
        OutputError: `out` is an input, holds files facerep did not write, or is not empty and
            `overwrite` is False.
    """
    out = check_output(out, sources, kind="occlusion", overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        mark_output(staging, "occlusion")
        photos = [
            _write_photo(staging, n, photo, mapper) for n, photo in enumerate(explained.photos, 1)
        ]
        summary = {
            "encoder": str(mapper.run),
            "prior": mapper.prior is not None,
            "photos": photos,
            "failures": [{"source": s, "reason": r} for s, r in explained.failures],
        }
        with atomic_write(staging / SUMMARY_FILE, "w") as f:
            json.dump(summary, f, indent=2)
        swap_in_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _write_photo(folder: Path, number: int, photo: PhotoOcclusion, mapper: OcclusionMapper) -> dict:
    """One photo's mask and overlay PNGs in `folder`; its entry in the summary."""
    faces = []
    for index in range(len(photo.faces)):
        mask = face_mask(photo, index, mapper.padding)
        stem = f"{number:04d}-{_safe_stem(photo.source)}-face{index}"
        atomic_write_bytes(folder / f"{stem}-mask.png", png_bytes(mask))
        atomic_write_bytes(folder / f"{stem}-overlay.png", png_bytes(tinted(photo.pixels, [mask])))
        summary = face_summary(photo.faces[index], index)
        faces.append({**summary, "mask": f"{stem}-mask.png", "overlay": f"{stem}-overlay.png"})
    return {"source": photo.source, "faces": faces}


def _safe_stem(source: str) -> str:
    """A file-name-safe short form of a photo's name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source).stem)[:60] or "photo"
