"""facerep.faces.align: the 5-point template and the similarity warp onto it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
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
from facerep.images import load_image


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
    # On the template, up to the least-squares residual of a 5-point fit (measured 0.7-1.0 px).
    template = alignment_template(size, padding)
    assert np.linalg.norm(crop_landmarks - template, axis=1).max() < 2.0
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
    direct_crop, direct_landmarks = align_face(astronaut, astronaut_landmarks, size)
    np.testing.assert_allclose(crop_landmarks, direct_landmarks, atol=1e-6)

    # The pixels agree with aligning the unwarped photo (two resamplings apart).
    assert np.abs(crop.astype(int) - direct_crop).mean() < 4

    # dlib, run again on the crop, finds the face's landmarks on the template: the image was
    # warped where the landmarks say. Measured: mean 0.8 px, worst point 1.4 px.
    found = detect_faces(crop)
    assert len(found) == 1
    errors = np.linalg.norm(found[0].landmarks - template, axis=1)
    assert errors.mean() < 2.0
    assert errors.max() < 3.0


# --- only the crop's footprint is read -----------------------------------------------------------


def align_whole_photo(image: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """The crop as align_face made it before it cut the photo: reduce and mirror-pad it whole."""
    to_crop = estimate_alignment(landmarks, size)
    factor = max(1, int(1 / np.hypot(to_crop[0, 0], to_crop[1, 0]) + 1e-6))
    offset = -(factor - 1) / (2 * factor)
    crop_to_source = np.array([[1 / factor, 0, offset], [0, 1 / factor, offset], [0, 0, 1]])
    crop_to_source = crop_to_source @ np.linalg.inv(to_crop)
    source = np.asarray(Image.fromarray(image).reduce(factor)) if factor > 1 else image
    corners = apply_transform(crop_to_source, [[-1, -1], [size, -1], [-1, size], [size, size]])
    height, width = source.shape[:2]
    before = np.maximum(0, np.ceil(-corners.min(0))).astype(int)
    after = np.maximum(0, np.ceil(corners.max(0) - [width - 1, height - 1])).astype(int)
    pads = ((before[1], after[1]), (before[0], after[0]), (0, 0))
    source = np.pad(source, pads, mode="reflect")
    crop_to_source[:2, 2] += before
    half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    coefficients = (half @ crop_to_source @ np.linalg.inv(half))[:2].reshape(-1)
    crop = Image.fromarray(source).transform(
        (size, size), Image.Transform.AFFINE, tuple(coefficients), Image.Resampling.BILINEAR
    )
    return np.asarray(crop)


def assert_same_as_whole_photo(image: np.ndarray, landmarks: np.ndarray) -> None:
    for size in (112, 64, 32):
        crop, _ = align_face(image, landmarks, size)
        np.testing.assert_array_equal(crop, align_whole_photo(image, landmarks, size))


def test_cut_photo_gives_the_whole_photos_crop_near_borders(astronaut, astronaut_landmarks):
    # Upscaled 8x (a reduce by 3-8) with the face against each border (mirror padding).
    for top, left in ((95, 190), (60, 150)):
        part = astronaut[top : top + 160, left : left + 130]
        big = np.asarray(Image.fromarray(part).resize((130 * 8, 160 * 8), Image.Resampling.BICUBIC))
        landmarks = (astronaut_landmarks - [left, top] + 0.5) * 8 - 0.5
        assert_same_as_whole_photo(big, landmarks)
        flipped = np.ascontiguousarray(big[::-1, ::-1])
        mirrored = np.array([big.shape[1] - 1, big.shape[0] - 1]) - landmarks
        assert_same_as_whole_photo(flipped, mirrored[[2, 3, 0, 1, 4]])


def test_cut_photo_gives_the_whole_photos_crop_anywhere():
    # The template moved anywhere, at any scale, often partly (or wholly) off a random photo.
    rng = np.random.default_rng(0)
    for _ in range(150):
        height, width = rng.integers(8, 600, size=2)
        photo = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        scale, angle = np.exp(rng.uniform(np.log(0.1), np.log(10))), rng.uniform(-np.pi, np.pi)
        cos, sin = scale * np.cos(angle), scale * np.sin(angle)
        rotation = np.array([[cos, -sin], [sin, cos]])
        centre = rng.uniform([-0.3 * width, -0.3 * height], [1.3 * width, 1.3 * height])
        landmarks = (alignment_template(112) - 56) @ rotation.T + centre
        assert_same_as_whole_photo(photo, landmarks + rng.normal(0, 0.5 * scale, (5, 2)))


def test_cut_photo_gives_the_whole_photos_crop_on_real_faces(orl_dir, cs131_dir):
    paths = [orl_dir / f"s{p}" / "1.pgm" for p in range(1, 6)]
    paths += sorted((cs131_dir / "train").glob("*/1.jpg"))[:5]
    for path in paths:
        photo = load_image(path)
        for detection in detect_faces(photo):
            assert_same_as_whole_photo(photo, detection.landmarks)
