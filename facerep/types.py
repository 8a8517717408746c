"""Typed results shared across facerep: boxes, landmarks, head pose and faces."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Box:
    """An axis-aligned face box in pixel coordinates of the image it was found in."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.right - self.left

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.bottom - self.top

    def as_list(self) -> list[float]:
        """`[left, top, right, bottom]`, rounded to 0.1 px, for JSON and the manifest."""
        return [round(v, 1) for v in (self.left, self.top, self.right, self.bottom)]


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees: yaw (+ nose to image right), pitch (+ down), roll (+ clockwise)."""

    yaw: float
    pitch: float
    roll: float

    def as_list(self) -> list[float]:
        """`[yaw, pitch, roll]`, rounded to 0.1 degree."""
        return [round(v, 1) for v in (self.yaw, self.pitch, self.roll)]


@dataclass
class Face:
    """One detected face: where it is, how sure the detector was, and its aligned crop.

    Attributes:
        box: the detector's box in source-image pixels.
        score: the detector's confidence (HOG: SVM margin, CNN: MMOD score; higher is surer).
        landmarks: `[5, 2]` dlib 5-point landmarks (eye corners, nose base) in source pixels.
        crop_landmarks: the same 5 points in aligned-crop pixels.
        pose: head pose estimated from the landmarks.
        crop: `[S, S, 3]` uint8 aligned face crop, or None when not requested.
        embedding: `[D]` float32 L2-normalised embedding, once an encoder has seen the face.
        stage: the detection cascade's stage that found it ("photo" on ordinary photos).
    """

    box: Box
    score: float
    landmarks: np.ndarray
    crop_landmarks: np.ndarray
    pose: Pose
    crop: np.ndarray | None = field(default=None, repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)
    stage: str = "photo"


# Cosine distance `1 - cos` of unit vectors lies in [0, 2]; float rounding puts it a hair outside
# (a face against itself gives -3.6e-09), which would print as -0.0000.
MAX_DISTANCE = 2.0


def clamp_distance(distance: float) -> float:
    """`distance` brought into [0, MAX_DISTANCE] (never -0.0)."""
    return 0.0 if distance <= 0.0 else min(float(distance), MAX_DISTANCE)


@dataclass(frozen=True)
class Verdict:
    """Whether two faces show the same person, with the distance and threshold behind the call.

    Attributes:
        distance: cosine distance `1 - cos` of the two embeddings, in [0, 2] (0 identical, 2
            opposite).
        threshold: the largest distance still called the same person.
        same: `distance <= threshold`.
    """

    distance: float
    threshold: float
    same: bool

    @classmethod
    def between(cls, a: np.ndarray, b: np.ndarray, threshold: float) -> Verdict:
        """The verdict on two `[D]` unit embeddings (float64, so ties fall the same each time)."""
        cosine = np.dot(np.asarray(a, np.float64), np.asarray(b, np.float64))
        distance = clamp_distance(float(1.0 - cosine))
        return cls(distance=distance, threshold=threshold, same=distance <= threshold)


@dataclass(frozen=True)
class Match:
    """A gallery face found by a search, nearest first.

    Attributes:
        id: the face's gallery id (stable; never reused after removal).
        label: who the gallery says it is.
        distance: cosine distance to the query face, in [0, 2].
        source: where the gallery face came from (a path, or what the caller gave).
        box: the face's box in its source photo, when known.
        same: `distance <= threshold` when the gallery's encoder has a threshold, else None.
    """

    id: int
    label: str
    distance: float
    source: str | None = None
    box: Box | None = None
    same: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "distance", clamp_distance(self.distance))

class Failure(tuple):
    """A photo that gave no result: the pair `(source, reason)`, plus whether it could not be
    read at all (corrupt, unreadable, refused: `unreadable`) rather than read and found to hold
    no face. A pair, so `for source, reason in failures` and CSV rows see just the two.
    """

    unreadable: bool

    def __new__(cls, source: str, reason: str, unreadable: bool = False) -> Failure:
        failure = super().__new__(cls, (source, reason))
        failure.unreadable = unreadable
        return failure

    def __getnewargs__(self) -> tuple[str, str, bool]:  # pickled whole, like ImageError
        return (self[0], self[1], self.unreadable)

    @classmethod
    def of(cls, source: str, error: Exception) -> Failure:
        """The failure an ImageError (unreadable) or a NoFaceError (read, no face) stands for."""
        from facerep.images import ImageError

        return cls(source, getattr(error, "reason", str(error)), isinstance(error, ImageError))


def count_unreadable(failures: list) -> int:
    """How many of `failures` could not be read at all (plain pairs count as readable)."""
    return sum(getattr(failure, "unreadable", False) for failure in failures)
