"""facerep.faces.pose: yaw, pitch and roll from the 5 landmarks under weak perspective."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from facerep.faces.align import MEAN_FACE_5, alignment_template
from facerep.faces.pose import NOSE_DEPTH, estimate_pose
from facerep.types import Pose

MIRROR = [2, 3, 0, 1, 4]  # mirroring swaps which eye is on the image's right; outer stays outer


def synthetic_head(yaw: float = 0.0, pitch: float = 0.0, scale: float = 60.0) -> np.ndarray:
    """The mean face as a 3-D head (eyes at depth 0, nose base NOSE_DEPTH in front), turned and
    projected orthographically: `[5, 2]` image points, y down.

    Units are interocular distances about the eye midpoint; yaw > 0 turns the nose to the image's
    right, pitch > 0 tips it down. Pitch is applied in the head's frame, then yaw.
    """
    eyes = MEAN_FACE_5[0:2].mean(0), MEAN_FACE_5[2:4].mean(0)
    centre = (eyes[0] + eyes[1]) / 2
    interocular = np.linalg.norm(eyes[0] - eyes[1])
    points = np.c_[(MEAN_FACE_5 - centre) / interocular, np.zeros(5)]
    points[4, 2] = NOSE_DEPTH  # toward the camera
    a, b = math.radians(pitch), math.radians(yaw)
    tip = np.array([[1, 0, 0], [0, math.cos(a), math.sin(a)], [0, -math.sin(a), math.cos(a)]])
    turn = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    turned = points @ tip.T @ turn.T
    return turned[:, :2] * scale + np.array([320.0, 240.0])


def mirror(landmarks: np.ndarray, width: float = 640.0) -> np.ndarray:
    flipped = landmarks.copy()
    flipped[:, 0] = width - 1 - flipped[:, 0]
    return flipped[MIRROR]


def test_template_is_frontal():
    pose = estimate_pose(alignment_template(112))
    assert isinstance(pose, Pose)
    assert pose.yaw == pytest.approx(0.0, abs=0.5)
    assert pose.pitch == pytest.approx(0.0, abs=0.5)
    assert pose.roll == pytest.approx(0.0, abs=0.5)


def test_pose_ignores_scale_and_position():
    template = alignment_template(112)
    moved = template * 3.7 + np.array([812.0, -40.0])
    assert estimate_pose(moved).as_list() == pytest.approx(estimate_pose(template).as_list())


@pytest.mark.parametrize("degrees", [15.0, -15.0, 40.0])
def test_in_plane_rotation_is_roll(degrees):
    # In image coordinates (y down) a positive rotation turns clockwise on screen: roll > 0.
    template = alignment_template(112)
    rotate = (
        SimilarityTransform(translation=-56)
        + SimilarityTransform(rotation=math.radians(degrees))
        + SimilarityTransform(translation=56)
    )
    pose = estimate_pose(rotate(template))
    assert pose.roll == pytest.approx(degrees, abs=0.5)
    assert pose.yaw == pytest.approx(0.0, abs=0.5)
    assert pose.pitch == pytest.approx(0.0, abs=0.5)


def test_roll_sign_follows_the_eyes():
    # Clockwise tilt: the eye on the image's right drops below the other one.
    landmarks = alignment_template(112)
    landmarks[0:2, 1] += 10
    assert estimate_pose(landmarks).roll > 0


@pytest.mark.parametrize("yaw", [-45.0, -30.0, -10.0, 0.0, 5.0, 20.0, 40.0])
def test_synthetic_head_recovers_yaw(yaw):
    pose = estimate_pose(synthetic_head(yaw=yaw))
    assert pose.yaw == pytest.approx(yaw, abs=2.0)
    assert pose.pitch == pytest.approx(0.0, abs=2.0)
    assert pose.roll == pytest.approx(0.0, abs=0.5)


def test_yaw_sign_is_the_nose_direction():
    turned = synthetic_head(yaw=25.0)
    assert turned[4, 0] > turned[0:4, 0].mean()  # nose to the image's right of the eyes
    assert estimate_pose(turned).yaw > 20


@pytest.mark.parametrize("pitch", [-30.0, -15.0, 0.0, 10.0, 20.0])
def test_synthetic_head_recovers_pitch(pitch):
    pose = estimate_pose(synthetic_head(pitch=pitch))
    assert pose.pitch == pytest.approx(pitch, abs=2.0)
    assert pose.yaw == pytest.approx(0.0, abs=2.0)


@pytest.mark.parametrize("yaw", [-30.0, 15.0, 35.0])
def test_mirrored_landmarks_flip_yaw_and_roll(yaw):
    landmarks = synthetic_head(yaw=yaw)
    tilt = SimilarityTransform(rotation=math.radians(8.0))  # some roll, to check its sign too
    landmarks = tilt(landmarks)
    pose, mirrored = estimate_pose(landmarks), estimate_pose(mirror(landmarks))
    assert abs(pose.yaw) > 10
    assert mirrored.yaw == pytest.approx(-pose.yaw, abs=1e-6)
    assert mirrored.roll == pytest.approx(-pose.roll, abs=1e-6)
    assert mirrored.pitch == pytest.approx(pose.pitch, abs=1e-6)


def test_degenerate_landmarks_give_zero_pose():
    assert estimate_pose(np.full((5, 2), 30.0)) == Pose(0.0, 0.0, 0.0)


@pytest.mark.parametrize(("yaw", "pitch"), [(20.0, 10.0), (30.0, -15.0), (45.0, 20.0),
                                           (-40.0, -25.0)])
def test_synthetic_head_recovers_yaw_and_pitch_together(yaw: float, pitch: float):
    pose = estimate_pose(synthetic_head(yaw=yaw, pitch=pitch))
    assert pose.yaw == pytest.approx(yaw, abs=0.5)
    assert pose.pitch == pytest.approx(pitch, abs=0.5)
