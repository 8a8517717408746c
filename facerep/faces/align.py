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
    factor = _shrink_factor(float(np.hypot(to_crop[0, 0], to_crop[1, 0])))
    crop_to_source = _to_shrunk(factor) @ np.linalg.inv(to_crop)
    # Only the photo's pixels under the crop are shrunk, padded and sampled: the whole of a 12 MP
    # photo cost 40-68 ms per face. Cut on the shrink's block grid, the pixels come out the same.
    height, width = (-(-side // factor) for side in image.shape[:2])  # Image.reduce rounds up
    top, bottom = _window(crop_to_source, size, 1, height)
    left, right = _window(crop_to_source, size, 0, width)
    cut = image[top * factor : bottom * factor, left * factor : right * factor]
    source = _shrink(cut, factor)
    crop_to_source = translation(-left, -top) @ crop_to_source
    source, crop_to_source = _mirror_pad_to_cover(source, crop_to_source, size)
    # Pillow samples at pixel corners: shift the centre-based map by half a pixel both ways.
    half = translation(0.5, 0.5)
    coefficients = (half @ crop_to_source @ np.linalg.inv(half))[:2].reshape(-1)
    crop = Image.fromarray(source).transform(
        (size, size), Image.Transform.AFFINE, tuple(coefficients), Image.Resampling.BILINEAR
    )
    return np.asarray(crop), apply_transform(to_crop, landmarks)


# Pixels kept around the crop's footprint, beyond the two bilinear sampling needs.
_WINDOW_MARGIN = 2


def _crop_corners(crop_to_source: np.ndarray, size: int) -> np.ndarray:
    """The crop's corners, one pixel out, in source pixels: what sampling the crop can touch."""
    return apply_transform(crop_to_source, [[-1, -1], [size, -1], [-1, size], [size, size]])


def _window(crop_to_source: np.ndarray, size: int, axis: int, extent: int) -> tuple[int, int]:
    """The `[start, stop)` source pixels along `axis` (0 x, 1 y) the crop and its mirror need.

    Where the crop hangs over an edge, the pixels mirrored into the overhang are kept too, so
    padding the cut gives what padding the whole source would.
    """
    along = _crop_corners(crop_to_source, size)[:, axis]
    first = int(np.floor(along.min())) - _WINDOW_MARGIN
    last = int(np.ceil(along.max())) + _WINDOW_MARGIN
    start, stop = max(0, first), min(extent - 1, last)
    if first < 0:
        stop = max(stop, min(extent - 1, -first))
    if last > extent - 1:
        start = min(start, max(0, 2 * (extent - 1) - last))
    return start, stop + 1


def _mirror_pad_to_cover(
    image: np.ndarray, crop_to_source: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror-pad `image` just enough to cover the crop, and shift the map to match.

    Mirroring, not a flat fill: tight portraits (ORL) and the unlabeled corpus were framed the
    same way, and a flat border would be a trivial target for a masked autoencoder.
    """
    corners = _crop_corners(crop_to_source, size)
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
    return padded, translation(left, top) @ crop_to_source


def _shrink_factor(scale: float) -> int:
    """How many source pixels a box-reduce folds into one, for a crop at `scale` of the source.

    A source much larger than the crop is reduced first, so bilinear sampling does not alias.
    """
    # The epsilon keeps an exact 1/4 from flooring to 3 through float error.
    return max(1, int(1.0 / scale + 1e-6)) if scale > 0 else 1


def _shrink(image: np.ndarray, factor: int) -> np.ndarray:
    """`image` box-reduced by `factor` (a last partial block averages what it has)."""
    if factor < 2:
        return image
    return np.asarray(Image.fromarray(image).reduce(factor))


def _to_shrunk(factor: int) -> np.ndarray:
    """The 3x3 map from source pixels to `_shrink(source, factor)` pixels."""
    # Image.reduce averages factor x factor blocks: pixel centres move by (factor - 1) / 2.
    offset = -(factor - 1) / (2 * factor)
    return np.array([[1.0 / factor, 0, offset], [0, 1.0 / factor, offset], [0, 0, 1]])


def translation(dx: float, dy: float) -> np.ndarray:
    """The 3x3 matrix that moves points by (dx, dy)."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])
