"""Similarity alignment of a face to a canonical 5-point template.

The template is dlib's mean face for its 5-point model (the points `get_face_chip_details` maps
to), so a facerep crop at padding 0.25 is, up to resolution, the chip dlib's ResNet recogniser
was trained on. Points: 0-1 the eye in the image's right (outer, inner corner), 2-3 the other eye
(outer, inner), 4 the base of the nose.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# dlib's mean 5-point face in a unit square with no padding (dlib/image_transforms/interpolation.h).
MEAN_FACE_5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)

# A quarter of the face width around the template keeps chin, brows and some hair in the crop,
# as dlib's recogniser expects.
DEFAULT_PADDING = 0.25


def alignment_template(size: int = 112, padding: float = DEFAULT_PADDING) -> np.ndarray:
    """The 5 canonical landmark positions, `[5, 2]` (x, y), in a `size` x `size` crop."""
    return (MEAN_FACE_5 + padding) / (1.0 + 2.0 * padding) * size


def estimate_alignment(
    landmarks: np.ndarray, size: int = 112, padding: float = DEFAULT_PADDING
) -> np.ndarray:
    """Least-squares similarity taking source `landmarks` `[5, 2]` onto the template.

    Returns the 3x3 matrix mapping source pixels to crop pixels (pixel centres at integers).
    """
    source = np.asarray(landmarks, dtype=np.float64)
    if np.ptp(source, axis=0).max() < 1e-6:
        raise ValueError("landmarks are degenerate: no similarity transform fits them")
    target = alignment_template(size, padding)
    # x' = a x - b y + tx, y' = b x + a y + ty is linear in (a, b, tx, ty).
    x, y = source[:, 0], source[:, 1]
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    design = np.concatenate([np.stack([x, -y, ones, zeros], 1), np.stack([y, x, zeros, ones], 1)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, target.T.reshape(-1), rcond=None)
    if a * a + b * b < 1e-12 or not np.isfinite([a, b, tx, ty]).all():
        raise ValueError("landmarks are degenerate: no similarity transform fits them")
    return np.array([[a, -b, tx], [b, a, ty], [0.0, 0.0, 1.0]])


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map `[K, 2]` points through a 3x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int = 112, padding: float = DEFAULT_PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """Warp `image` `[H, W, 3]` so `landmarks` land on the template.

    Returns:
        The `[size, size, 3]` uint8 crop and the landmarks `[5, 2]` in crop pixels.
    """
    to_crop = estimate_alignment(landmarks, size, padding)
    scale = float(np.hypot(to_crop[0, 0], to_crop[1, 0]))
    source, to_source = _antialiased_source(image, scale)
    crop_to_source = to_source @ np.linalg.inv(to_crop)
    source, crop_to_source = _mirror_pad_to_cover(source, crop_to_source, size)
    # Pillow samples at pixel corners: shift the centre-based map by half a pixel both ways.
    half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    coefficients = (half @ crop_to_source @ np.linalg.inv(half))[:2].reshape(-1)
    crop = Image.fromarray(source).transform(
        (size, size), Image.Transform.AFFINE, tuple(coefficients), Image.Resampling.BILINEAR
    )
    return np.asarray(crop), apply_transform(to_crop, landmarks)


def _mirror_pad_to_cover(
    image: np.ndarray, crop_to_source: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror-pad `image` just enough to cover the crop, and shift the map to match.

    Mirroring, not a flat fill: tight portraits (ORL) and the unlabeled corpus were framed the
    same way, and a flat border would be a trivial target for a masked autoencoder.
    """
    corners = apply_transform(crop_to_source, [[-1, -1], [size, -1], [-1, size], [size, size]])
    height, width = image.shape[:2]
    left = max(0, int(np.ceil(-corners[:, 0].min())))
    top = max(0, int(np.ceil(-corners[:, 1].min())))
    right = max(0, int(np.ceil(corners[:, 0].max() - (width - 1))))
    bottom = max(0, int(np.ceil(corners[:, 1].max() - (height - 1))))
    if not (left or top or right or bottom):
        return image, crop_to_source
    # numpy's "reflect" does not repeat the edge pixel: OpenCV's BORDER_REFLECT_101, as the
    # unlabeled corpus was padded.
    padded = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    shift = np.array([[1.0, 0.0, left], [0.0, 1.0, top], [0.0, 0.0, 1.0]])
    return padded, shift @ crop_to_source


def _antialiased_source(image: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Box-reduce a source much larger than the crop, so bilinear sampling does not alias.

    Returns the image to sample from and the 3x3 map from original to that image's pixels.
    """
    # The epsilon keeps an exact 1/4 from flooring to 3 through float error.
    factor = int(1.0 / scale + 1e-6) if scale > 0 else 1
    if factor < 2:
        return image, np.eye(3)
    reduced = np.asarray(Image.fromarray(image).reduce(factor))
    # Image.reduce averages factor x factor blocks: pixel centres move by (factor - 1) / 2.
    to_reduced = np.array(
        [
            [1.0 / factor, 0, -(factor - 1) / (2 * factor)],
            [0, 1.0 / factor, -(factor - 1) / (2 * factor)],
            [0, 0, 1],
        ]
    )
    return reduced, to_reduced
