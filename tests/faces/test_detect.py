"""facerep.faces.detect and facerep.faces.find: dlib detection on photos, thumbnails and crops."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facerep.faces import find
from facerep.faces.align import align_face, alignment_template
from facerep.faces.detect import Detection, FaceSearch, _detect_once, detect_faces, search_faces
from facerep.faces.find import MIN_IMAGE_SIDE, find_faces, too_small_reason
from facerep.images import load_image
from facerep.types import Face, Pose


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    resample = Image.Resampling.BICUBIC if width > image.shape[1] else Image.Resampling.BOX
    return np.asarray(Image.fromarray(image).resize((width, height), resample))


def assert_plausible_landmarks(detection: Detection) -> None:
    """Eyes above the nose, the image-right eye on the right, all inside the (grown) box."""
    box, points = detection.box, detection.landmarks
    assert points.shape == (5, 2)
    assert points[0:2, 0].min() > points[2:4, 0].max()
    assert points[0, 0] > points[1, 0]  # outer corner of the image-right eye is further right
    assert points[2, 0] < points[3, 0]
    assert points[4, 1] > points[0:4, 1].max()
    grow = 0.2 * box.width
    assert (points[:, 0] > box.left - grow).all() and (points[:, 0] < box.right + grow).all()
    assert (points[:, 1] > box.top - grow).all() and (points[:, 1] < box.bottom + grow).all()


# --- detect_faces --------------------------------------------------------------------------------


def test_astronaut_has_one_face(astronaut):
    detections = detect_faces(astronaut)
    assert len(detections) == 1
    face = detections[0]
    assert isinstance(face, Detection)
    # Eileen Collins' face sits at about x 180-265, y 85-170 of the 512x512 photo.
    assert 150 < face.box.left < 210 and 240 < face.box.right < 300
    assert 50 < face.box.top < 110 and 140 < face.box.bottom < 200
    assert 0.8 < face.box.width / face.box.height < 1.25
    assert face.score > 0.5
    assert_plausible_landmarks(face)


def test_detections_map_back_from_a_shrunk_large_photo(astronaut, astronaut_landmarks):
    # 2048 px is over MAX_SIDE: detection runs on a shrunk copy, results come back in 2048 pixels.
    big = resize(astronaut, 2048, 2048)
    detections = detect_faces(big)
    assert detections, "no face in the 4x astronaut"
    face = detections[0]  # largest first; low-score false positives may follow at this scale
    assert 4 * 150 < face.box.left < 4 * 210 and 4 * 50 < face.box.top < 4 * 110
    # Pixel centres: x_big = 4 * x + 1.5. Landmarks agree within half a source pixel.
    expected = astronaut_landmarks * 4 + 1.5
    assert np.abs(face.landmarks - expected).max() < 4 * 0.75


def test_detections_map_back_from_a_thumbnail(astronaut, astronaut_landmarks):
    # An 80x80 face thumbnail is upsampled for detection, then mapped back.
    thumbnail = resize(astronaut[60:220, 140:300], 80, 80)
    detections = detect_faces(thumbnail)
    assert len(detections) == 1
    expected = (astronaut_landmarks - [140, 60]) / 2 - 0.5
    assert np.abs(detections[0].landmarks - expected).max() < 2.0
    assert_plausible_landmarks(detections[0])


def test_tight_large_portrait_is_found_with_a_margin(astronaut, astronaut_landmarks):
    # Cropped inside the face box and enlarged past the small-image size: the face touches the
    # border, so the first pass misses it and the padded retry must find it.
    top, bottom, left, right = 93, 170, 189, 256
    tight = resize(astronaut[top:bottom, left:right], 500, 500)
    assert _detect_once(tight, np.eye(3), "hog", 0, "photo") == []  # the case the retry is for
    # At the default padding 69% of the crop would be mirrored border: refused as implausible.
    refused = search_faces(tight)
    assert refused.detections == [] and "of the crop outside the photo" in refused.refused[0]
    detections = detect_faces(tight, padding=0.1)
    assert len(detections) == 1 and detections[0].stage == "photo"
    scale = np.array([500 / (right - left), 500 / (bottom - top)])
    expected = (astronaut_landmarks - [left, top] + 0.5) * scale - 0.5
    assert np.abs(detections[0].landmarks - expected).max() < 10  # ~1.3 source pixels


@pytest.mark.parametrize("shape", [(64, 64), (480, 640)], ids=["thumbnail", "photo"])
def test_blank_image_has_no_faces(shape):
    grey = np.full((*shape, 3), 128, np.uint8)
    assert detect_faces(grey) == []
    assert find_faces(grey) == []


def test_min_face_drops_small_boxes(astronaut):
    assert len(detect_faces(astronaut, min_face=50)) == 1
    assert detect_faces(astronaut, min_face=150) == []


def test_faces_come_largest_first(astronaut):
    left = astronaut[20:300, 120:340]
    smaller = resize(np.ascontiguousarray(left[:, ::-1]), 154, 196)
    smaller = np.pad(smaller, ((0, left.shape[0] - 196), (0, 0), (0, 0)), mode="edge")
    photo = np.ascontiguousarray(np.concatenate([left, smaller], axis=1))
    detections = detect_faces(photo)
    assert len(detections) == 2
    assert detections[0].box.width > detections[1].box.width
    assert detections[0].box.right < left.shape[1] < detections[1].box.left
    assert len(find_faces(photo)) == 2
    assert len(find_faces(photo, max_faces=1)) == 1


def test_cnn_detector_on_a_small_crop(astronaut):
    # dlib's MMOD CNN is slow on CPU: one 200x180 crop only.
    crop = np.ascontiguousarray(astronaut[30:230, 130:310])
    detections = detect_faces(crop, detector="cnn")
    assert len(detections) == 1
    box = detections[0].box
    hog = detect_faces(crop)[0].box
    centre = np.array([(box.left + box.right) / 2, (box.top + box.bottom) / 2])
    hog_centre = np.array([(hog.left + hog.right) / 2, (hog.top + hog.bottom) / 2])
    assert np.linalg.norm(centre - hog_centre) < 0.2 * hog.width
    assert 0.7 < box.width / hog.width < 1.4
    assert_plausible_landmarks(detections[0])


def test_unknown_detector_raises(astronaut):
    with pytest.raises(ValueError, match="unknown detector"):
        detect_faces(astronaut, detector="mtcnn")


# --- find_faces ----------------------------------------------------------------------------------


def test_find_faces_returns_aligned_faces(astronaut, astronaut_landmarks):
    faces = find_faces(astronaut, size=96)
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, Face)
    assert face.crop.shape == (96, 96, 3)
    assert face.crop.dtype == np.uint8
    assert face.embedding is None
    np.testing.assert_allclose(face.landmarks, astronaut_landmarks)
    assert np.linalg.norm(face.crop_landmarks - alignment_template(96), axis=1).max() < 2.0
    crop, crop_landmarks = align_face(astronaut, astronaut_landmarks, 96)
    np.testing.assert_array_equal(face.crop, crop)
    np.testing.assert_allclose(face.crop_landmarks, crop_landmarks)
    # A near-frontal portrait with a slight tilt.
    assert isinstance(face.pose, Pose)
    assert abs(face.pose.yaw) < 15 and abs(face.pose.pitch) < 15 and abs(face.pose.roll) < 10


@pytest.mark.parametrize(("size", "padding"), [(112, 0.25), (64, 0.0), (160, 0.4)])
def test_find_faces_crop_has_the_requested_size(astronaut, size, padding):
    (face,) = find_faces(astronaut, size=size, padding=padding)
    assert face.crop.shape == (size, size, 3)
    template = alignment_template(size, padding)
    assert np.linalg.norm(face.crop_landmarks - template, axis=1).max() < 2.0 * size / 112


@pytest.mark.parametrize("shape", [(8, 8), (MIN_IMAGE_SIDE - 1, 200), (300, MIN_IMAGE_SIDE - 1)])
def test_too_small_image_has_no_face_and_is_not_searched(shape, monkeypatch):
    monkeypatch.setattr(find, "search_faces", lambda *_, **__: pytest.fail("detector ran"))
    image = np.zeros((*shape, 3), np.uint8)
    assert find_faces(image) == []
    reason = f"image too small to hold a face ({shape[1]}x{shape[0]} px)"
    assert too_small_reason(image) == reason


def test_smallest_allowed_image_is_searched(monkeypatch):
    searched = []
    monkeypatch.setattr(
        find, "search_faces", lambda image, *_, **__: searched.append(image) or FaceSearch()
    )
    image = np.zeros((MIN_IMAGE_SIDE, MIN_IMAGE_SIDE, 3), np.uint8)
    assert too_small_reason(image) is None
    assert find_faces(image) == [] and len(searched) == 1
    monkeypatch.undo()
    assert find_faces(image) == []  # dlib copes with it


# --- real data: ORL's tight 92x112 greyscale portraits --------------------------------------------


def test_orl_tight_crops(orl_dir):
    paths = [orl_dir / f"s{subject}" / f"{n}.pgm" for subject in (1, 2) for n in range(1, 11)]
    found = 0
    for path in paths:
        image = load_image(path)
        assert image.shape == (112, 92, 3)
        faces = find_faces(image)
        if faces:
            found += 1
            assert faces[0].crop.shape == (112, 112, 3)
            assert abs(faces[0].pose.yaw) < 45
    assert found >= 19, f"faces found in {found} of {len(paths)} ORL images"


def test_working_image_points_map_back_exactly():
    # A bright pixel at a known source position, found in the resized image, maps back to it.
    from facerep.faces.align import apply_transform, translation
    from facerep.faces.detect import _unscale, _working_image

    source = np.zeros((45, 60, 3), np.uint8)
    source[30, 12] = 255
    working, scale = _working_image(source)
    assert working.shape[1] == 170 and scale[0] != scale[1]  # rounding differs per axis
    weights = working[..., 0].astype(float)
    ys, xs = np.indices(weights.shape)
    centre = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
    back = apply_transform(_unscale(scale), centre[None])[0]
    np.testing.assert_allclose(back, [12, 30], atol=0.05)
    with_margin = _unscale(np.ones(2)) @ translation(-4, -4)
    np.testing.assert_allclose(apply_transform(with_margin, [[7.0, 9.0]]), [[3.0, 5.0]])


def test_threads_detect_exactly_what_one_thread_does(orl_dir) -> None:
    # dlib's models keep scratch state while they run: shared across threads they gave wrong
    # boxes (or a crash) before each thread got its own.
    from concurrent.futures import ThreadPoolExecutor

    photos = [load_image(orl_dir / f"s{p}" / f"{n}.pgm") for p in range(1, 11) for n in (1, 5)]

    def boxes(image: np.ndarray) -> list[list[float]]:
        return [
            face.box.as_list() + face.crop_landmarks.round(2).ravel().tolist()
            for face in find_faces(image, size=64)
        ]

    alone = [boxes(photo) for photo in photos]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(boxes, photos)) == alone
