"""Head pose (yaw, pitch, roll) from dlib's 5 landmarks, under a weak-perspective camera.

Five points (four eye corners and the nose base) pin down roll exactly; yaw and pitch come from
where the nose base sits relative to the eyes, using the depth of the nose base in front of the
eye line on an average adult head. Expect a few degrees of error near frontal and more at large
angles: it is meant for filtering and reporting, not for 3-D reconstruction.
"""

from __future__ import annotations

import math

import numpy as np

from facerep.faces.align import MEAN_FACE_5
from facerep.types import Pose

# Everything in units of the distance between the two eye centres (~62 mm on adults).
# The nose base (subnasale) sits ~22 mm in front of the eye-corner midpoints.
NOSE_DEPTH = 0.35
# Frontal drop from the eye line to the nose base, from dlib's mean face.
_eyes_mean = (MEAN_FACE_5[0:2].mean(0), MEAN_FACE_5[2:4].mean(0))
NOSE_DROP = float(
    (MEAN_FACE_5[4, 1] - (_eyes_mean[0][1] + _eyes_mean[1][1]) / 2)
    / np.linalg.norm(_eyes_mean[0] - _eyes_mean[1])
)
# Pitch moves the nose base on a circle of this radius about the eye line (side view), starting
# from this angle below the line of sight when frontal.
NOSE_REACH = math.hypot(NOSE_DROP, NOSE_DEPTH)
_FRONTAL_NOSE_ANGLE = math.atan2(NOSE_DEPTH, NOSE_DROP)


def estimate_pose(landmarks: np.ndarray) -> Pose:
    """Yaw, pitch, roll in degrees from `[5, 2]` dlib landmarks in any image frame.

    Signs: yaw > 0 when the nose points to the image's right, pitch > 0 when the head tips
    down (chin to chest), roll > 0 when the head tilts clockwise in the image.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    eye_right_img, eye_left_img = points[0:2].mean(0), points[2:4].mean(0)
    across = eye_right_img - eye_left_img
    roll = math.atan2(across[1], across[0])
    interocular = float(np.hypot(*across))
    if interocular < 1e-6:
        return Pose(0.0, 0.0, 0.0)
    # Undo roll about the eye midpoint, then measure the nose in interocular units.
    cos_r, sin_r = math.cos(-roll), math.sin(-roll)
    offset = points[4] - (eye_right_img + eye_left_img) / 2
    nose_x = (cos_r * offset[0] - sin_r * offset[1]) / interocular
    nose_y = (sin_r * offset[0] + cos_r * offset[1]) / interocular
    yaw, drop = _solve_yaw(nose_x, nose_y)
    # Pitch p puts the nose base drop*cos(p) + depth*sin(p) below the eye line, and
    # depth*cos(p) - drop*sin(p) in front of it; the two lie on a circle of radius NOSE_REACH.
    depth = math.sqrt(max(NOSE_REACH**2 - drop**2, 0.0))
    pitch = _FRONTAL_NOSE_ANGLE - math.atan2(depth, drop)
    return Pose(math.degrees(yaw), math.degrees(pitch), math.degrees(roll))


def _solve_yaw(u: float, v: float) -> tuple[float, float]:
    """Yaw, and the nose's true drop below the eyes, from the de-rolled nose offset (u, v).

    Pitch, then yaw, under weak perspective: the eye line shrinks to cos(yaw), so u = z*tan(yaw)
    and v = y/cos(yaw) for the nose's drop y and depth z, with y^2 + z^2 = reach^2. With
    s = cos^2(yaw) that is v^2 s^2 - (u^2 + v^2 + reach^2) s + reach^2 = 0: the smaller root.
    Beyond ~24 degrees down the nose's drop shrinks again, so larger pitches read smaller.
    """
    reach2 = NOSE_REACH**2
    b = u * u + v * v + reach2
    # The stable form of the smaller root, exact also when v = 0.
    s = 2.0 * reach2 / (b + math.sqrt(max(b * b - 4.0 * v * v * reach2, 0.0)))
    cos_yaw = math.sqrt(min(max(s, 0.0), 1.0))
    return math.copysign(math.acos(cos_yaw), u), v * cos_yaw
