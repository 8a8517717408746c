"""Face detection and 5-point landmarks with dlib: a cascade that works harder only when it must.

dlib's HOG detector scans an 80x80 window, so a face that fills a 64x64 thumbnail is invisible to
it as is, and a portrait cropped at the hairline fails because the face touches the border.
Small images are therefore upsampled and large photos shrunk to a working size, and every look
is tried once more with a margin around the image when it finds nothing.

On an ordinary photo the first look (HOG on the photo) finds the face and nothing else runs. The
later stages cost more and run only on the photos every earlier one failed:

- `equalized`: HOG on a contrast-limited equalised copy of the luminance (CLAHE), for faces in
  deep shadow, lit from one side or nearly black. Only the search uses the copy: the crop is
  cut from the photo's own pixels.
- `rotated`: HOG on equalised copies turned by +-30 degrees, for heads rolled beyond what
  HOG's frontal model sees.
- `upsampled`: HOG with one 2x upsampling of the working image, for faces under 80 px in
  photos up to 800 px, and for small faces inside thumbnails (a face a third of an 89x109 crop).
- `cnn`: dlib's MMOD CNN on the photo (stretched where it is dark or flat, as for landmarks):
  it finds what HOG's templates do not (tight crops, some profiles, heads turned down), at
  about 10x HOG's cost, so it comes last, and only where an earlier HOG look saw a near miss (a
  window scoring above `CNN_GATE`, below HOG's own threshold 0). On the unlabeled corpus's last
  175 misses, 15 of the 18 faces the CNN found had one, and 99 of the 157 photos it found
  nothing in had none: the gate spares the CNN where there is nothing face-like to look at.
- `whole_frame` (only with `assume_cropped`): the frame itself is the face box, for datasets of
  pre-cropped faces that no detector fires on.

Landmarks are fitted on the image the detector searched; where the face is so dark or flat that
its luminance spans under a quarter of the range, on a copy stretched to the full range first
(dlib's 5-point model compares pixel differences against fixed thresholds: at 10% brightness its
points moved by about 5 px of a 112-px crop, stretched by 0.4). Every detection's landmarks pass
`implausible_reason` before it counts; a stage whose every detection is implausible does not stop
the cascade. Boxes and landmarks are mapped back to the photo's pixels, and each detection names
the stage that found it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image

from facerep.faces.align import DEFAULT_PADDING, apply_transform, translation
from facerep.faces.dlib_models import DetectorName, face_detector, shape_predictor_5
from facerep.faces.plausibility import implausible_reason
from facerep.types import Box

# Smaller images (face crops, thumbnails) are upsampled to this longer side, so a face that fills
# them spans more than HOG's 80-px window. 170 found as many faces as 200 on ORL, cs131_faces,
# the unlabeled corpus and the LFW sample, 1.2-1.7x faster; 150 began to lose some.
SMALL_SIDE = 170
# Larger photos are shrunk to this longer side: HOG's cost grows with area, faces stay > 80 px.
MAX_SIDE = 1600
# Margin of the second look, as a fraction of the working image's longer side: it gives tight
# portraits (ORL) the border HOG needs around a face.
RETRY_PADDING = 0.25
# The CNN stage shrinks larger working images to this side: MMOD costs ~10x HOG per pixel, and
# a face HOG missed in a big photo is rarely a small one (that is the upsampled stage's job).
CNN_SIDE = 640
# Roll of the rotated copies, in degrees: HOG sees about +-20 around each, so together they
# cover heads rolled up to about 50 degrees.
ROTATIONS = (30.0, -30.0)
# The upsampled stage runs on working images up to this side, so its 2x copy stays within
# MAX_SIDE; a smaller face in a bigger photo needs an explicit `upsample`.
UPSAMPLE_SIDE = MAX_SIDE // 2
# HOG windows scoring at least this (below HOG's own threshold, 0) count as near misses, and
# only a photo with one is searched by the CNN (see the module docstring).
CNN_GATE = -0.6
# CLAHE's clip limit: 0.02 lifts faces at 10% brightness and in one-sided shadow without
# turning smooth skin into noise for HOG.
CLAHE_CLIP = 0.02
# A face box whose luminance (1st to 99th percentile) spans fewer levels than this is stretched
# before its landmarks are fitted. Faces in ordinary photos span 95 or more (ORL, cs131_faces,
# the unlabeled corpus, the LFW sample), so their landmarks are unchanged.
LOW_CONTRAST = 64


@dataclass(frozen=True)
class Detection:
    """A face box, the detector's score and the `[5, 2]` landmarks, all in source pixels.

    `stage` names the cascade stage that found it (see the module docstring).
    """

    box: Box
    score: float
    landmarks: np.ndarray
    stage: str = "photo"


@dataclass
class FaceSearch:
    """What the cascade found: plausible detections (largest first) and the refused ones.

    `seconds` holds the time each stage that ran took, in the order they ran.
    """

    detections: list[Detection] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # one reason per implausible detection
    seconds: dict[str, float] = field(default_factory=dict)

    def failure(self) -> tuple[str, str]:
        """(status, reason) for a search that found no plausible face."""
        if self.refused:
            return "implausible_landmarks", self.refused[0]
        return "no_face", "no face found"


def detect_faces(
    image: np.ndarray,
    detector: DetectorName = "hog",
    upsample: int = 0,
    min_face: float = 0.0,
    **search: Any,
) -> list[Detection]:
    """Find faces in an `[H, W, 3]` uint8 RGB image, largest first.

    The plausible detections of `search_faces`, which takes the same arguments.
    """
    return search_faces(image, detector, upsample, min_face, **search).detections


def search_faces(
    image: np.ndarray,
    detector: DetectorName = "hog",
    upsample: int = 0,
    min_face: float = 0.0,
    *,
    cascade: bool = True,
    assume_cropped: bool = False,
    size: int = 112,
    padding: float = DEFAULT_PADDING,
) -> FaceSearch:
    """Run the detection cascade on an `[H, W, 3]` uint8 RGB image until a stage finds a face.

    Args:
        image: the photo.
        detector: the first stage's detector: "hog" (dlib's HOG+SVM, fast on CPU) or "cnn"
            (dlib's MMOD CNN, better at profile and small faces, ~10x slower on CPU).
        upsample: extra 2x upsamplings for small faces in large photos (as face_recognition's
            `number_of_times_to_upsample`).
        min_face: boxes narrower than this many source pixels are dropped.
        cascade: run the later stages when the first finds nothing; False is the first stage
            alone.
        assume_cropped: as a last stage, take the whole frame as the face box.
        size, padding: the crop the landmarks are checked against (its share of padding).
    """
    photo = _Photo(image, detector, upsample)
    search = FaceSearch()
    for stage in _stages(detector, cascade, assume_cropped):
        start = time.perf_counter()
        found = [d for d in STAGE_LOOKS[stage](photo) if d.box.width >= min_face]
        search.seconds[stage] = time.perf_counter() - start
        for detection in found:
            reason = implausible_reason(
                detection.landmarks, detection.box, image.shape, size, padding
            )
            if reason:
                search.refused.append(reason)
            else:
                search.detections.append(detection)
        if search.detections:
            break
    search.detections.sort(key=lambda d: d.box.width * d.box.height, reverse=True)
    return search


def _stages(detector: DetectorName, cascade: bool, assume_cropped: bool) -> list[str]:
    stages = list(STAGES[:-1]) if cascade else ["photo"]
    if detector == "cnn" and "cnn" in stages:
        stages.remove("cnn")  # the photo stage already ran the CNN
    return [*stages, "whole_frame"] if assume_cropped else stages


class _Photo:
    """The photo and the copies the stages search, each built once and only when needed."""

    def __init__(self, image: np.ndarray, detector: DetectorName, upsample: int):
        self.image, self.detector, self.upsample = image, detector, upsample
        self.working, scale = _working_image(image)
        self.to_source = _unscale(scale)
        self.near_miss = -np.inf  # the best HOG score under 0 any look has seen

    @cached_property
    def equalized(self) -> np.ndarray:
        """The working image's luminance, CLAHE-equalised, as grey RGB."""
        return equalize_luminance(self.working)


def equalize_luminance(image: np.ndarray) -> np.ndarray:
    """A contrast-limited adaptive histogram equalisation (CLAHE) of the luminance, grey RGB."""
    from skimage.exposure import equalize_adapthist

    luminance = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    equalized = equalize_adapthist(luminance, clip_limit=CLAHE_CLIP)
    grey = np.round(equalized * 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _look_at_photo(photo: _Photo) -> list[Detection]:
    return _look(photo.working, photo.to_source, photo.detector, photo.upsample, "photo", photo)


def _look_equalized(photo: _Photo) -> list[Detection]:
    return _look(
        photo.equalized, photo.to_source, photo.detector, photo.upsample, "equalized", photo
    )


def _look_with_cnn(photo: _Photo) -> list[Detection]:
    if photo.near_miss < CNN_GATE:
        return []
    # The photo, not its CLAHE copy: on the unlabeled corpus's and the LFW sample's misses the
    # CNN found 18 of 175 and 8 of 8 faces in colour, 1 and 5 in the equalised grey.
    image, to_working = _shrunk(_stretched_if_flat(photo.working, photo.working), CNN_SIDE)
    # No margin retry: MMOD finds faces that touch the border, and a retry doubled its cost.
    return _detect_once(image, photo.to_source @ to_working, "cnn", photo.upsample, "cnn")


def _look_rotated(photo: _Photo) -> list[Detection]:
    for angle in ROTATIONS:
        rotated, to_working = _rotated(photo.equalized, angle)
        # No margin retry: the turned canvas already has a border around the face.
        found = _detect_once(
            rotated, photo.to_source @ to_working, photo.detector, photo.upsample, "rotated", photo
        )
        if found:
            return found
    return []


def _look_upsampled(photo: _Photo) -> list[Detection]:
    if max(photo.working.shape[:2]) > UPSAMPLE_SIDE:
        return []
    upsample = photo.upsample + 1
    return _look(photo.working, photo.to_source, photo.detector, upsample, "upsampled", photo)


# A frame whose luminance varies less than this (standard deviation, levels) holds no face to
# align: the 5-point model would put its mean shape on it, which passes every check.
FLAT_FRAME = 4.0


def _look_at_whole_frame(photo: _Photo) -> list[Detection]:
    if photo.working.mean(axis=2).std() < FLAT_FRAME:
        return []
    height, width = photo.working.shape[:2]
    rect = _rectangle(0, 0, width - 1, height - 1)
    return [_landmarked(photo.working, rect, 0.0, photo.to_source, "whole_frame")]


STAGE_LOOKS: dict[str, Callable[[_Photo], list[Detection]]] = {
    "photo": _look_at_photo,
    "equalized": _look_equalized,
    "rotated": _look_rotated,
    "upsampled": _look_upsampled,
    "cnn": _look_with_cnn,
    "whole_frame": _look_at_whole_frame,
}
# In the order they run; whole_frame only with `assume_cropped`.
STAGES = tuple(STAGE_LOOKS)


def _look(
    image: np.ndarray,
    to_source: np.ndarray,
    detector: DetectorName,
    upsample: int,
    stage: str,
    photo: _Photo | None = None,
) -> list[Detection]:
    """Detect on `image`, and once more with a mirrored margin when that finds nothing."""
    found = _detect_once(image, to_source, detector, upsample, stage, photo)
    if found:
        return found
    margin = round(RETRY_PADDING * max(image.shape[:2]))
    padded = np.pad(image, ((margin, margin), (margin, margin), (0, 0)), mode="edge")
    return _detect_once(
        padded, to_source @ translation(-margin, -margin), detector, upsample, stage, photo
    )


def _detect_once(
    image: np.ndarray,
    to_source: np.ndarray,
    detector: DetectorName,
    upsample: int,
    stage: str,
    photo: _Photo | None = None,
) -> list[Detection]:
    """Run the detector and landmarks on `image`; `to_source` maps its pixels to the photo's.

    HOG's near misses (scores in [`CNN_GATE`, 0)) raise `photo.near_miss` when a photo is given.
    """
    shape_predictor_5()  # built with the detector, so a warm-up on a blank photo builds both
    rects, scores, near_miss = _run_detector(image, detector, upsample)
    if photo is not None:
        photo.near_miss = max(photo.near_miss, near_miss)
    return [
        _landmarked(image, rect, float(score), to_source, stage)
        for rect, score in zip(rects, scores, strict=True)
    ]


def _landmarked(
    image: np.ndarray, rect, score: float, to_source: np.ndarray, stage: str
) -> Detection:
    """The detection of `rect` in `image`, with its landmarks, in source pixels."""
    shape = shape_predictor_5()(_contrast_for_landmarks(image, rect), rect)
    points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    corners = np.array(
        [
            [rect.left(), rect.top()],
            [rect.right(), rect.top()],
            [rect.left(), rect.bottom()],
            [rect.right(), rect.bottom()],
        ],
        float,
    )
    # A rotated search maps the box to a tilted square: its upright hull is the box.
    mapped = apply_transform(to_source, corners)
    (left, top), (right, bottom) = mapped.min(0), mapped.max(0)
    box = Box(float(left), float(top), float(right), float(bottom))
    return Detection(box, score, apply_transform(to_source, points), stage)


def _contrast_for_landmarks(image: np.ndarray, rect) -> np.ndarray:
    """`image`, or where the face in `rect` is dark or flat, `image` stretched to full range."""
    height, width = image.shape[:2]
    top, bottom = max(0, rect.top()), min(height, rect.bottom() + 1)
    left, right = max(0, rect.left()), min(width, rect.right() + 1)
    if bottom <= top or right <= left:
        return image
    return _stretched_if_flat(image, image[top:bottom, left:right])


def _stretched_if_flat(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """`image`, or where `region`'s luminance spans under `LOW_CONTRAST` levels, `image`
    stretched linearly so that region's 1st to 99th percentiles fill the range."""
    low, high = np.percentile(region.mean(axis=2), [1, 99])
    if high - low >= LOW_CONTRAST or high - low < 1:
        return image
    stretched = (image.astype(np.float32) - low) * (255.0 / (high - low))
    return np.clip(np.round(stretched), 0, 255).astype(np.uint8)


def _working_image(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image at the detector's working size, and its (x, y) scale from the source."""
    longest = max(image.shape[:2])
    if longest < SMALL_SIDE:
        scale = SMALL_SIDE / longest
    elif longest > MAX_SIDE:
        scale = MAX_SIDE / longest
    else:
        return np.ascontiguousarray(image), np.ones(2)
    return _resized(image, scale)


def _resized(image: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX
    resized = np.asarray(Image.fromarray(image).resize(size, resample))
    # The exact scales of the rounded size, per axis, so mapped-back points stay exact.
    return resized, np.array([size[0] / width, size[1] / height])


def _shrunk(image: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """`image` shrunk to at most `side` on its longer side, and the map back to its pixels."""
    longest = max(image.shape[:2])
    if longest <= side:
        return image, np.eye(3)
    shrunk, scale = _resized(image, side / longest)
    return shrunk, _unscale(scale)


def _unscale(scale: np.ndarray) -> np.ndarray:
    """The 3x3 map from an image resized by (x, y) `scale` back to the original's pixels.

    A resize by s maps the source's pixel edges, not centres, so x_resized = (x + 0.5) s - 0.5.
    """
    sx, sy = scale
    return np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5], [0, 0, 1]])


def _rotated(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """`image` turned by `degrees` on a canvas that holds all of it.

    Returns the turned image and the 3x3 map from its pixels back to `image`'s.
    """
    height, width = image.shape[:2]
    theta = math.radians(degrees)
    cos, sin = abs(math.cos(theta)), abs(math.sin(theta))
    out_w, out_h = math.ceil(width * cos + height * sin), math.ceil(width * sin + height * cos)
    c, s = math.cos(theta), math.sin(theta)
    # Canvas pixel -> image pixel, a turn about both centres.
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    back = (
        translation((width - 1) / 2, (height - 1) / 2)
        @ turn
        @ translation(-(out_w - 1) / 2, -(out_h - 1) / 2)
    )
    # Pillow samples at pixel corners: shift the centre-based map by half a pixel both ways.
    half = translation(0.5, 0.5)
    coefficients = tuple((half @ back @ np.linalg.inv(half))[:2].reshape(-1))
    fill = tuple(int(v) for v in image.reshape(-1, 3).mean(0))  # no hard edge for HOG to see
    turned = Image.fromarray(image).transform(
        (out_w, out_h),
        Image.Transform.AFFINE,
        coefficients,
        Image.Resampling.BILINEAR,
        fillcolor=fill,
    )
    return np.asarray(turned), back


def _run_detector(
    image: np.ndarray, detector: DetectorName, upsample: int
) -> tuple[list, list, float]:
    """Boxes and scores at the detector's own threshold, and HOG's best near miss under it."""
    model = face_detector(detector)
    if detector == "cnn":
        found = model(image, upsample)
        return [d.rect for d in found], [d.confidence for d in found], -np.inf
    # One scan down to the gate: windows at 0 or above are the detections HOG's threshold gives
    # (non-maximum suppression keeps the strongest first, so weaker windows never remove them).
    rects, scores, _ = model.run(image, upsample, CNN_GATE)
    kept = [(r, sc) for r, sc in zip(rects, scores, strict=True) if sc >= 0.0]
    near = max((sc for sc in scores if sc < 0.0), default=-np.inf)
    return [r for r, _ in kept], [sc for _, sc in kept], float(near)


def _rectangle(left: int, top: int, right: int, bottom: int):
    import dlib

    return dlib.rectangle(left, top, right, bottom)
