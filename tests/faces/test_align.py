"""facerep.faces.align: the 5-point template and the similarity warp onto it."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import SimilarityTransform, warp

from facerep.faces.align import (
    DEFAULT_PADDING,
    MEAN_FACE_5,
    align_face,
    alignment_template,
    apply_transform,
    estimate_alignment,
)
from facerep.faces.detect import detect_faces


def similarity(rotation_deg: float, scale: float, centre, shift) -> SimilarityTransform:
    """Rotate and scale about `centre`, then move by `shift` (all in x, y pixels)."""
    centre = np.asarray(centre, dtype=float)
    return (
        SimilarityTransform(translation=-centre)
        + SimilarityTransform(scale=scale, rotation=np.deg2rad(rotation_deg))
        + SimilarityTransform(translation=centre + np.asarray(shift, dtype=float))
    )


def warp_photo(image: np.ndarray, forward: SimilarityTransform, side: int) -> np.ndarray:
    """`image` moved by `forward` (source -> new pixels) onto a `side` x `side` canvas."""
    moved = warp(image, forward.inverse, output_shape=(side, side), order=1, preserve_range=True)
    return np.clip(np.round(moved), 0, 255).astype(np.uint8)


# --- template ----------------------------------------------------------------------------------


def test_template_is_the_mean_face_in_crop_pixels():
    template = alignment_template(112)
    assert template.shape == (5, 2)
    np.testing.assert_allclose(alignment_template(1, 0.0), MEAN_FACE_5)
    # Points 0-1 are the eye on the image's right, 2-3 the other eye, 4 the nose below both.
    assert (template[0:2, 0] > 56).all()
    assert (template[2:4, 0] < 56).all()
    assert template[0, 0] > template[1, 0]  # outer corner further right than the inner one
    assert template[2, 0] < template[3, 0]
    assert (template[4, 1] > template[0:4, 1]).all()
    assert ((template > 0) & (template < 112)).all()


@pytest.mark.parametrize("padding", [0.0, DEFAULT_PADDING, 0.5])
def test_template_scales_linearly_with_size(padding):
    base = alignment_template(100, padding)
    for size in (50, 112, 224, 300):
        np.testing.assert_allclose(alignment_template(size, padding), base * size / 100)


def test_padding_shrinks_the_face_about_the_centre():
    tight, padded = alignment_template(112, 0.0), alignment_template(112, 0.25)
    centre = np.array([56.0, 56.0])
    np.testing.assert_allclose(padded - centre, (tight - centre) / 1.5)


# --- transform -----------------------------------------------------------------------------------


def test_identity_when_landmarks_equal_the_template(astronaut):
    template = alignment_template(112)
    np.testing.assert_allclose(estimate_alignment(template), np.eye(3), atol=1e-9)
    photo = np.ascontiguousarray(astronaut[100:212, 150:262])
    crop, crop_landmarks = align_face(photo, template, 112)
    assert np.abs(crop.astype(int) - photo).max() <= 1  # Pillow's fixed-point bilinear
    np.testing.assert_allclose(crop_landmarks, template, atol=1e-9)


def test_estimate_alignment_recovers_a_known_similarity():
    template = alignment_template(112)
    forward = similarity(-35.0, 2.7, (56, 56), (400, -20))
    landmarks = forward(template)  # the template, moved: alignment must move it back
    matrix = estimate_alignment(landmarks, 112)
    reference = SimilarityTransform(matrix=matrix)  # scikit-image reads the matrix back
    assert reference.scale == pytest.approx(1 / 2.7)
    assert np.rad2deg(reference.rotation) == pytest.approx(35.0)
    np.testing.assert_allclose(apply_transform(matrix, landmarks), template, atol=1e-9)


def test_degenerate_landmarks_raise():
    with pytest.raises(ValueError, match="degenerate"):
        estimate_alignment(np.full((5, 2), 40.0))


@pytest.mark.parametrize(("size", "padding"), [(112, DEFAULT_PADDING), (64, 0.0), (160, 0.4)])
def test_crop_shape_and_dtype(astronaut, astronaut_landmarks, size, padding):
    crop, crop_landmarks = align_face(astronaut, astronaut_landmarks, size, padding)
    assert crop.shape == (size, size, 3)
    assert crop.dtype == np.uint8
    assert crop_landmarks.shape == (5, 2)
    np.testing.assert_allclose(
        crop_landmarks,
        apply_transform(
            estimate_alignment(astronaut_landmarks, size, padding), astronaut_landmarks
        ),
    )
    assert crop.std() > 20  # a face, not a flat fill


def test_a_large_source_is_smoothed_not_aliased():
    # A one-pixel checkerboard shrunk 4x must come out mid-grey; point sampling gives 0s and 255s.
    board = (np.indices((448, 448)).sum(0) % 2 * 255).astype(np.uint8)
    photo = np.repeat(board[:, :, None], 3, axis=2)
    crop, crop_landmarks = align_face(photo, alignment_template(112) * 4, 112)
    np.testing.assert_allclose(crop_landmarks, alignment_template(112), atol=1e-9)
    assert np.abs(crop.astype(int) - 128).max() <= 1


# --- geometry on a real face ---------------------------------------------------------------------

WARPS = [
    # rotation (deg), scale, canvas side: 1.3x and 0.7x sample the photo directly; 3x is big
    # enough relative to the crop that align_face box-reduces it first.
    (20.0, 1.3, 512),
    (-20.0, 0.7, 512),
    (15.0, 3.0, 1536),
]


@pytest.mark.parametrize(
    ("rotation", "scale", "side"), WARPS, ids=["rot20-x1.3", "rot-20-x0.7", "rot15-x3"]
)
def test_alignment_undoes_a_known_similarity(astronaut, astronaut_landmarks, rotation, scale, side):
    size = 112
    template = alignment_template(size)
    forward = similarity(rotation, scale, (256, 256), (side / 2 - 256 - 30, side / 2 - 256 + 20))
    moved = warp_photo(astronaut, forward, side)
    moved_landmarks = forward(astronaut_landmarks)

    crop, crop_landmarks = align_face(moved, moved_landmarks, size)

    # The landmarks land on the template up to the least-squares residual of a 5-point fit
    # (measured 0.85 px at 112), the same wherever the face was: alignment is equivariant.
    assert np.linalg.norm(crop_landmarks - template, axis=1).max() < 2.0
    _, direct_landmarks = align_face(astronaut, astronaut_landmarks, size)
    np.testing.assert_allclose(crop_landmarks, direct_landmarks, atol=1e-6)

    # The pixels agree with aligning the unwarped photo (two resamplings apart).
    direct_crop, _ = align_face(astronaut, astronaut_landmarks, size)
    assert np.abs(crop.astype(int) - direct_crop).mean() < 4

    # dlib, run again on the crop, finds the face's landmarks on the template: the image was
    # warped where the landmarks say. Measured: mean 0.8 px, worst point 1.4 px.
    found = detect_faces(crop)
    assert len(found) == 1
    errors = np.linalg.norm(found[0].landmarks - template, axis=1)
    assert errors.mean() < 2.0
    assert errors.max() < 3.0
