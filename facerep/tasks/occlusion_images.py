"""Occlusion masks drawn on the photo: a mask PNG per face, the photo with its outliers tinted."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from facerep.faces.align import estimate_alignment, translation
from facerep.types import Face

# The tint of outlier regions in overlays, and how much of it covers the photo's pixels there.
TINT = np.array([255.0, 40.0, 160.0])
TINT_STRENGTH = 0.55


def mask_in_photo(
    face: Face, mask: np.ndarray, photo_shape: tuple[int, ...], padding: float
) -> np.ndarray:
    """The face's `[S, S]` crop-space mask warped into the photo: `[H, W]` float in [0, 1].

    The crop was aligned at `S` pixels with `padding` (the run's), so the same similarity maps
    photo pixels to mask pixels; pixels outside the crop are 0.
    """
    size = mask.shape[0]
    to_crop = estimate_alignment(face.landmarks, size, padding)
    # Pillow samples at pixel corners: shift the centre-based map by half a pixel both ways.
    half = translation(0.5, 0.5)
    coefficients = tuple((half @ to_crop @ np.linalg.inv(half))[:2].reshape(-1))
    height, width = photo_shape[:2]
    layer = Image.fromarray((mask > 0).astype(np.uint8) * 255)
    warped = layer.transform(
        (width, height), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR
    )
    return np.asarray(warped, dtype=np.float32) / 255.0


def tinted(photo: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """`[H, W, 3]` uint8 photo with the union of `[H, W]` masks in [0, 1] tinted."""
    cover = np.max(masks, axis=0) if masks else np.zeros(photo.shape[:2], np.float32)
    alpha = (TINT_STRENGTH * cover)[..., None]
    return np.round(photo * (1.0 - alpha) + TINT * alpha).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    """`[H, W]` float mask in [0, 1] (grey) or `[H, W, 3]` uint8 image as PNG bytes."""
    if pixels.dtype != np.uint8:
        pixels = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
