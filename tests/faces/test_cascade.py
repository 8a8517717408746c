"""The detection cascade and the landmark check: faces under hard light, rolled heads, small
faces, pre-cropped frames, and the alignments a person would refuse."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from facerep.faces import detect
from facerep.faces.align import estimate_alignment
from facerep.faces.detect import search_faces
from facerep.faces.plausibility import implausible_reason
from facerep.images import load_image
from facerep.types import Box
from tests.conftest import turned


def dimmed(image: np.ndarray, factor: float = 0.1) -> np.ndarray:
    return np.round(image.astype(np.float32) * factor).astype(np.uint8)


def crop_pixels(landmarks: np.ndarray) -> float:
    """Source pixels -> 112-px aligned-crop pixels, for errors stated at crop scale."""
    matrix = estimate_alignment(landmarks, 112)
    return float(np.hypot(matrix[0, 0], matrix[1, 0]))


# --- the landmark check ----------------------------------------------------------------------


def test_real_faces_pass_the_check(astronaut):
    detection = detect.detect_faces(astronaut)[0]
    assert implausible_reason(detection.landmarks, detection.box, (512, 512, 3), 112, 0.25) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p: p[[2, 3, 0, 1, 4]], "nose drop"),  # eyes swapped: the face upside down
        (lambda p: np.vstack([p[:4], p[:4].mean(0, keepdims=True) - [0, 40]]), "nose drop"),
        (lambda p: np.repeat(p[:1], 5, axis=0), "collapse"),
        (lambda p: np.vstack([p[:4], p[4:] + np.array([60, 0])]), "sideways"),
    ],
    ids=["eyes-swapped", "nose-above-eyes", "one-point", "nose-beside-face"],
)
def test_broken_landmarks_are_refused_with_a_reason(astronaut_landmarks, change, reason):
    box = Box(170, 80, 270, 180)
    refused = implausible_reason(change(astronaut_landmarks.copy()), box, (512, 512, 3), 112, 0.25)
    assert refused is not None and refused.startswith("implausible landmarks: ")
    assert reason in refused


def test_a_crop_that_is_mostly_mirrored_border_is_refused(astronaut_landmarks):
    # The same face, but the photo is cut to the face's middle: most of the crop lies outside.
    shifted = astronaut_landmarks - [185, 95]
    reason = implausible_reason(shifted, Box(0, 0, 80, 80), (70, 80, 3), 112, 0.25)
    assert reason is not None and "of the crop outside the photo" in reason


def test_a_head_rolled_beyond_the_limit_is_refused(astronaut_landmarks):
    centre = astronaut_landmarks.mean(0)
    c, s = math.cos(math.radians(70)), math.sin(math.radians(70))
    rolled = (astronaut_landmarks - centre) @ np.array([[c, s], [-s, c]]) + centre
    reason = implausible_reason(rolled, Box(170, 80, 270, 180), (512, 512, 3), 112, 0.25)
    assert reason is not None and "roll" in reason


# --- the stages ------------------------------------------------------------------------------


def test_ordinary_photo_is_found_by_the_first_look_alone(astronaut, monkeypatch):
    for stage in detect.STAGES[1:]:
        monkeypatch.setitem(detect.STAGE_LOOKS, stage, lambda _: pytest.fail("later stage ran"))
    found = search_faces(astronaut)
    assert [d.stage for d in found.detections] == ["photo"]


def test_a_blank_image_goes_through_every_stage_and_has_no_face(monkeypatch):
    ran = []
    for stage, look in list(detect.STAGE_LOOKS.items()):
        monkeypatch.setitem(
            detect.STAGE_LOOKS, stage, lambda photo, s=stage, f=look: ran.append(s) or f(photo)
        )
    found = search_faces(np.full((120, 100, 3), 90, np.uint8))
    assert found.detections == [] and found.failure() == ("no_face", "no face found")
    assert ran == list(detect.STAGES[:-1])  # whole_frame only with assume_cropped
    ran.clear()
    assert search_faces(np.full((120, 100, 3), 90, np.uint8), cascade=False).detections == []
    assert ran == ["photo"]


def test_dark_faces_are_found_by_the_equalised_look_with_accurate_landmarks(orl_dir):
    # At 10% brightness HOG's first look misses many ORL faces; the CLAHE copy finds them, and
    # the landmarks land where they are on the unaltered photo.
    photos = [load_image(orl_dir / f"s{p}" / f"{n}.pgm") for p in range(1, 21) for n in (1, 6)]
    stages, errors, missed_first = [], [], 0
    for photo in photos:
        reference = search_faces(photo).detections
        dark = dimmed(photo)
        missed_first += not search_faces(dark, cascade=False).detections
        found = search_faces(dark).detections
        assert found, "a dimmed ORL face was lost by the cascade"
        stages.append(found[0].stage)
        if reference:
            error = np.linalg.norm(found[0].landmarks - reference[0].landmarks, axis=1).mean()
            errors.append(error * crop_pixels(reference[0].landmarks))
    assert missed_first >= 3 and "equalized" in stages
    assert np.mean(errors) < 1.5, f"mean landmark error {np.mean(errors):.2f} px at 112 px"


def test_a_rolled_head_is_found_and_its_landmarks_map_back(astronaut, astronaut_landmarks):
    image, forward = turned(astronaut, -45)
    assert search_faces(image, cascade=False).detections == []  # beyond HOG's own templates
    found = search_faces(image).detections
    assert found and found[0].stage == "rotated"
    expected = astronaut_landmarks @ forward[:2, :2].T + forward[:2, 2]
    assert np.abs(found[0].landmarks - expected).max() < 3.0
    box = found[0].box
    assert box.left <= expected[:, 0].min() and expected[:, 0].max() <= box.right


def test_a_small_face_in_a_large_scene_is_found_by_upsampling(astronaut, astronaut_landmarks):
    from skimage.data import coffee

    scene = np.asarray(Image.fromarray(coffee()).resize((640, 640)))
    face = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.Resampling.BOX))
    scene = scene.copy()
    scene[300:556, 100:356] = face  # the face is about 45 px wide now
    assert search_faces(scene, cascade=False).detections == []
    found = search_faces(scene).detections
    assert found and found[0].stage == "upsampled"
    expected = (astronaut_landmarks + 0.5) / 2 - 0.5 + [100, 300]
    assert np.abs(found[0].landmarks - expected).max() < 2.0


def test_assume_cropped_places_landmarks_in_the_whole_frame(orl_dir, monkeypatch):
    photo = load_image(orl_dir / "s3" / "2.pgm")
    reference = search_faces(photo).detections[0]
    for stage in detect.STAGES[:-1]:  # as if no detector fired
        monkeypatch.setitem(detect.STAGE_LOOKS, stage, lambda _: [])
    assert search_faces(photo).detections == []
    found = search_faces(photo, assume_cropped=True).detections
    assert [d.stage for d in found] == ["whole_frame"]
    assert found[0].box.width == pytest.approx(photo.shape[1], abs=1.5)
    error = np.linalg.norm(found[0].landmarks - reference.landmarks, axis=1).mean()
    assert error * crop_pixels(reference.landmarks) < 6.0
