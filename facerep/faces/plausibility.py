"""Is a set of 5 landmarks a face a person would call aligned? Geometry checks, with reasons.

dlib's 5-point model always returns five points, even for a box around a lamp or half a face in
deep shadow, and the similarity fit warps whatever it is given. The checks below refuse the
alignments that no frontal-ish face produces, before a crop is stored. Every measure is in units
of the distance between the two eye centres, after undoing the roll, so it does not depend on the
photo's resolution.

The limits are loose on purpose: on ORL, cs131_faces, the unlabeled corpus and the LFW sample
(dlib's HOG boxes) the measures sit well inside them (see `bench/ingest_cascade.py`); they refuse
what is broken, not what is unusual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facerep.faces.align import apply_transform, estimate_alignment
from facerep.types import Box

# The eye distance against the detector box's width: HOG boxes give about 0.4, MMOD's tighter
# boxes about 0.5, a whole-frame box around a tight portrait 0.3. Far outside, the points are
# not on the face the box holds.
EYES_PER_BOX = (0.15, 0.9)
# The nose base's drop below the eye line: 0.9 on dlib's mean face; pitch shrinks it, but a
# nose level with the eyes or a face's length below them is not a nose.
NOSE_DROP = (0.3, 1.6)
# Sideways offset of the nose base from the eyes' midpoint: the eye centres are at +-0.5, and
# even a three-quarter view keeps the nose base near them.
NOSE_SIDEWAYS = 0.8
# Each eye's corner-to-corner width: about 0.42 on the mean face; yaw narrows one eye.
EYE_WIDTH = (0.12, 0.8)
# Head roll, in degrees: the cascade's rotated copies (+-30) find heads rolled past 50.
MAX_ROLL = 60.0
# The share of the aligned crop that may fall outside the photo (filled by mirroring).
MAX_PADDING = 0.5


@dataclass(frozen=True)
class Geometry:
    """The measures the checks use, for reporting and tuning."""

    eyes_per_box: float
    nose_drop: float
    nose_sideways: float
    eye_widths: tuple[float, float]
    roll: float
    padding: float


def measure(
    landmarks: np.ndarray, box: Box, image_shape: tuple[int, ...], size: int, padding: float
) -> Geometry:
    """The geometry of `[5, 2]` source landmarks, their box, and the crop they give.

    Raises:
        ValueError: the points are degenerate (the eyes coincide; no similarity fits them).
    """
    points = np.asarray(landmarks, dtype=np.float64)
    eye_a, eye_b = points[0:2].mean(0), points[2:4].mean(0)  # image's right eye, then left
    across = eye_a - eye_b
    interocular = float(np.hypot(*across))
    if interocular < 1e-6:
        raise ValueError("landmarks are degenerate: the two eyes are at one place")
    roll = math.atan2(across[1], across[0])
    unroll = np.array([[math.cos(roll), math.sin(roll)], [-math.sin(roll), math.cos(roll)]])
    nose = unroll @ (points[4] - (eye_a + eye_b) / 2) / interocular
    widths = (
        float(np.linalg.norm(points[0] - points[1])) / interocular,
        float(np.linalg.norm(points[2] - points[3])) / interocular,
    )
    return Geometry(
        eyes_per_box=interocular / max(box.width, 1e-6),
        nose_drop=float(nose[1]),
        nose_sideways=float(nose[0]),
        eye_widths=widths,
        roll=math.degrees(roll),
        padding=padding_share(points, image_shape, size, padding),
    )


def padding_share(
    landmarks: np.ndarray, image_shape: tuple[int, ...], size: int, padding: float
) -> float:
    """The share of the aligned crop's pixels that lie outside the photo."""
    to_crop = estimate_alignment(landmarks, size, padding)
    grid = (np.arange(8) + 0.5) * size / 8 - 0.5  # an 8x8 sample of the crop is exact enough
    xs, ys = np.meshgrid(grid, grid)
    source = apply_transform(np.linalg.inv(to_crop), np.stack([xs.ravel(), ys.ravel()], 1))
    height, width = image_shape[:2]
    inside = (
        (source[:, 0] >= -0.5)
        & (source[:, 0] <= width - 0.5)
        & (source[:, 1] >= -0.5)
        & (source[:, 1] <= height - 0.5)
    )
    return float(1.0 - inside.mean())


def implausible_reason(
    landmarks: np.ndarray, box: Box, image_shape: tuple[int, ...], size: int, padding: float
) -> str | None:
    """Why these landmarks are not an aligned face (one line), or None when they are."""
    try:
        g = measure(landmarks, box, image_shape, size, padding)
    except ValueError:  # degenerate points: no similarity fits them
        return "implausible landmarks: the points collapse to one place"
    problems = [
        _outside("eye distance against the box", g.eyes_per_box, EYES_PER_BOX),
        _outside("nose drop below the eyes", g.nose_drop, NOSE_DROP),
        _outside("right eye width", g.eye_widths[0], EYE_WIDTH),
        _outside("left eye width", g.eye_widths[1], EYE_WIDTH),
    ]
    if abs(g.nose_sideways) > NOSE_SIDEWAYS:
        problems.append(f"nose {g.nose_sideways:+.2f} eye distances sideways of the eyes")
    if abs(g.roll) > MAX_ROLL:
        problems.append(f"roll {g.roll:+.0f} degrees")
    if g.padding > MAX_PADDING:
        problems.append(f"{g.padding:.0%} of the crop outside the photo")
    problems = [p for p in problems if p]
    return f"implausible landmarks: {problems[0]}" if problems else None


def _outside(what: str, value: float, limits: tuple[float, float]) -> str | None:
    low, high = limits
    if low <= value <= high:
        return None
    return f"{what} {value:.2f} (expected {low}-{high})"
