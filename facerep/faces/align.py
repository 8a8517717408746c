"""Similarity alignment of a face to a canonical 5-point template.

The template is dlib's mean face for its 5-point model (the points `get_face_chip_details` maps
to), so a facerep crop at padding 0.25 is, up to resolution, the chip dlib's ResNet recogniser
was trained on. Points: 0-1 the eye in the image's right (outer, inner corner), 2-3 the other eye
(outer, inner), 4 the base of the nose.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from skimage.transform import SimilarityTransform, warp

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
) -> SimilarityTransform:
    """Least-squares similarity transform taking source `landmarks` `[5, 2]` onto the template."""
    transform = SimilarityTransform.from_estimate(
        np.asarray(landmarks, dtype=np.float64), alignment_template(size, padding)
    )
    if not transform:
        raise ValueError("landmarks are degenerate: no similarity transform fits them")
    return transform


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int = 112, padding: float = DEFAULT_PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """Warp `image` `[H, W, 3]` so `landmarks` land on the template.

    Returns:
        The `[size, size, 3]` uint8 crop and the landmarks `[5, 2]` in crop pixels.
    """
    transform = estimate_alignment(landmarks, size, padding)
    source, to_source = _antialiased_source(image, transform.scale)
    inverse = SimilarityTransform(matrix=to_source @ transform.inverse.params)
    # Mirror padding where the crop leaves the photo: tight portraits (ORL) and the unlabeled
    # corpus were framed the same way, and a flat border would be a trivial target for an MAE.
    crop = warp(
        source, inverse, output_shape=(size, size), order=1, mode="reflect", preserve_range=True
    )
    crop_landmarks = transform(np.asarray(landmarks, dtype=np.float64))
    return np.clip(np.round(crop), 0, 255).astype(np.uint8), crop_landmarks


def _antialiased_source(image: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Box-reduce a source much larger than the crop, so bilinear sampling does not alias.

    Returns the image to sample from and the 3x3 map from original to that image's pixels.
    """
    factor = int(1.0 / scale) if scale > 0 else 1
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
