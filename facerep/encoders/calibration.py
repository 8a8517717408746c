"""Where an encoder's verification threshold is stored, and which threshold it has now.

A run's calibration lives in the run folder (`calibration.json`), so it travels with the
weights; a built-in encoder's lives under `$FACEREP_HOME/calibration/` (default `~/.facerep`),
since the package folder is not the user's to write. `facerep calibrate`
(`facerep.tasks.calibrate`) measures one; everything else reads it here, fresh each time, so a
long-lived process (the server) sees a new calibration without reloading the encoder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from facerep.encoders.base import (
    DefaultThreshold,
    Encoder,
    Identified,
    RunBacked,
    encoder_identity,
    is_whitened,
)
from facerep.files import atomic_write
from facerep.runs import CALIBRATION_FILE
from facerep.settings import facerep_home


@dataclass(frozen=True)
class Calibration:
    """A threshold and the measurements behind it."""

    encoder: str
    threshold: float
    target_far: float
    far: float
    tar: float
    genuine_pairs: int
    impostor_pairs: int
    faces: int
    identities: int
    dataset: str
    created: str
    # Which vectors the threshold was measured on: a run refitted or whitened since, or its
    # `:raw` variant, has other distances and is not calibrated by it ("" before 2026-12).
    fingerprint: str = ""


def calibration_path(encoder: Encoder) -> Path:
    """Where an encoder's calibration is stored: in its run folder, or under facerep_home()."""
    if isinstance(encoder, RunBacked):
        return Path(encoder.run) / CALIBRATION_FILE
    return facerep_home() / "calibration" / f"{encoder.name}.json"


def save_calibration(encoder: Encoder, calibration: Calibration) -> Path:
    """Write the calibration where `load_calibration` finds it; returns the path."""
    path = calibration_path(encoder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(asdict(calibration), f, indent=2)
    return path


def load_calibration(encoder: Encoder) -> Calibration | None:
    """The stored calibration of `encoder`, or None when it has none (or one measured on other
    vectors: other weights, or the run before or without its whitening).

    Raises:
        ValueError: a calibration file is there but unreadable.
    """
    path = calibration_path(encoder)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    # Every verify and search asks (the server, per request): parse a file once per version.
    version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    cached = _READ.get(path)
    if cached is not None and cached[0] == version:
        calibration = cached[1]
    else:
        try:
            calibration = Calibration(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise ValueError(
                f"{path}: unreadable calibration ({e}); run facerep calibrate again"
            ) from None
        _READ[path] = (version, calibration)
    return calibration if _measured_on(encoder, calibration) else None


def _measured_on(encoder: Encoder, calibration: Calibration) -> bool:
    """Whether the calibration was measured on this encoder's vectors."""
    if not calibration.fingerprint:  # written before fingerprints: never on whitened vectors
        return not is_whitened(encoder)
    return calibration.fingerprint == encoder_identity(encoder).fingerprint


# Calibrations read so far, by path, with the file version they were read from.
_READ: dict[Path, tuple[tuple[int, int, int], Calibration]] = {}


def current_threshold(encoder: Encoder) -> float | None:
    """The encoder's calibrated threshold, else its own default (dlib's), else None."""
    calibration = load_calibration(encoder)
    if calibration is not None:
        return calibration.threshold
    return float(encoder.default_threshold) if isinstance(encoder, DefaultThreshold) else None


def encoder_threshold(encoder: Encoder, threshold: float | None = None) -> float:
    """`threshold` if given, else the encoder's current one; ValueError when neither exists."""
    if threshold is not None:
        return float(threshold)
    current = current_threshold(encoder)
    if current is None:
        source = encoder.source if isinstance(encoder, Identified) else encoder.name
        raise ValueError(
            f"encoder {encoder.name} has no verification threshold: run "
            f"`facerep calibrate DATASET --encoder {source}` on labelled faces, or pass a threshold"
        )
    return current
