"""Verification thresholds chosen at a target false-accept rate, stored with the encoder.

A threshold is a cosine distance (`1 - cos`): two faces are the same person when their distance
is at most it. `calibrate` picks the largest threshold whose false-accept rate on every
impostor pair of a labelled dataset stays within the target, as deployed systems are tuned
(a FAR is what an operator can promise; accuracy depends on how many pairs are impostors).

The result is stored with the encoder (`facerep.encoders.calibration`): in a run's folder, or
under `$FACEREP_HOME` for a built-in encoder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facerep.encoders.base import Encoder, RunBacked, encoder_identity
from facerep.encoders.calibration import Calibration, save_calibration
from facerep.runs import read_run_config
from facerep.types import MAX_DISTANCE

# Crops of a prepared dataset embedded per call: small enough for a progress bar that moves.
EMBED_CHUNK = 256
# Above this many faces, a seeded sample keeps the all-pairs distance matrix in memory
# (4,000 faces: 8 million pairs, 64 MB).
MAX_CALIBRATION_FACES = 4000


def calibrate_threshold(
    embeddings: np.ndarray,
    identities: np.ndarray,
    far: float,
    *,
    max_faces: int = MAX_CALIBRATION_FACES,
    seed: int = 0,
) -> dict[str, float | int]:
    """The largest cosine-distance threshold whose false-accept rate is at most `far`.

    Every pair of faces is scored (a seeded sample of `max_faces` faces for bigger sets).

    Returns:
        threshold, far (measured), tar (share of genuine pairs accepted), genuine_pairs,
        impostor_pairs, faces, identities.

    Raises:
        ValueError: `far` outside (0, 1), no genuine pairs, or fewer than 1/far impostor pairs
            (then no threshold could show a false-accept rate that small).
    """
    if not 0 < far < 1:
        raise ValueError(f"--far must be between 0 and 1, got {far}")
    embeddings, identities = _sample(
        np.asarray(embeddings), np.asarray(identities), max_faces, seed
    )
    genuine, impostor = _pair_distances(embeddings, identities)
    if len(genuine) == 0:
        raise ValueError("calibration needs an identity with two or more faces")
    if len(impostor) * far < 1:
        raise ValueError(
            f"a false-accept rate of {far:g} needs at least {int(np.ceil(1 / far))} impostor "
            f"pairs; this data has {len(impostor)}: use more identities or a larger --far"
        )
    impostor.sort()
    allowed = int(np.floor(far * len(impostor)))  # false accepts the target permits
    # Accept just below the first impostor that would exceed the target.
    threshold = float(np.nextafter(impostor[allowed], -np.inf))
    return {
        "threshold": threshold,
        "far": float(np.mean(impostor <= threshold)),
        "tar": float(np.mean(genuine <= threshold)),
        "genuine_pairs": len(genuine),
        "impostor_pairs": len(impostor),
        "faces": len(embeddings),
        "identities": len(np.unique(identities)),
    }


def _sample(
    embeddings: np.ndarray, identities: np.ndarray, max_faces: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    if len(embeddings) <= max_faces:
        return embeddings, identities
    keep = np.sort(np.random.default_rng(seed).choice(len(embeddings), max_faces, replace=False))
    return embeddings[keep], identities[keep]


def _pair_distances(
    embeddings: np.ndarray, identities: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances of all genuine and all impostor pairs (each unordered pair once)."""
    vectors = embeddings.astype(np.float64)
    distances = np.clip(1.0 - vectors @ vectors.T, 0.0, MAX_DISTANCE)  # as verify measures
    left, right = np.triu_indices(len(vectors), k=1)
    same = identities[left] == identities[right]
    pairs = distances[left, right]
    return pairs[same], pairs[~same]


def pretraining_split(encoder: Encoder) -> tuple[float, int]:
    """(train fraction, seed) of the identity split a run was pretrained with; (0.5, 0) else."""
    if not isinstance(encoder, RunBacked):
        return 0.5, 0
    return read_run_config(encoder.run).identity_split


def calibration_faces(
    dataset: str | Path,
    encoder: Encoder,
    held_out_only: bool = True,
    split_seed: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Embeddings and identities to calibrate on, plus photos that gave no face.

    `dataset` is a prepared dataset (its aligned crops are embedded) or a folder of photos
    with one subfolder per person (detected and aligned as `verify` does). With
    `held_out_only`, only the held-out identities are used: for a run, those of the split it
    was pretrained with (its holdout fraction and seed, unless `split_seed` is given), so its
    threshold is not set on faces it has seen; else the held-out half of a seed-0 split.
    """
    from facerep.data.splits import identity_split_indices
    from facerep.data.store import MANIFEST_FILE, open_dataset
    from facerep.tasks.enrol import embed_photos, labelled_photos

    fraction, seed = pretraining_split(encoder)
    seed = seed if split_seed is None else split_seed
    if (Path(dataset) / MANIFEST_FILE).is_file():
        data = open_dataset(dataset)
        rows = np.flatnonzero([name is not None for name in data.identities])
        if held_out_only and len(rows):
            rows = identity_split_indices(data.identities, fraction, seed)[1]
        return _embed_rows(encoder, data.crops, rows, on_progress), data.identities[rows], []
    photos = labelled_photos(dataset)
    if held_out_only:
        rows = identity_split_indices([label for _, label in photos], fraction, seed)[1]
        photos = [photos[row] for row in rows]
    return embed_photos(photos, encoder, on_progress)


def _embed_rows(encoder: Encoder, crops: np.ndarray, rows: np.ndarray, on_progress) -> np.ndarray:
    """`encoder.embed` of the crops at `rows`, a chunk at a time, so progress can be shown."""
    chunks = []
    for start in range(0, len(rows), EMBED_CHUNK):
        chunks.append(encoder.embed(np.asarray(crops[rows[start : start + EMBED_CHUNK]])))
        if on_progress is not None:
            on_progress(min(start + EMBED_CHUNK, len(rows)), len(rows))
    return np.concatenate(chunks) if chunks else encoder.embed(np.asarray(crops[rows]))


def calibrate(
    encoder: Encoder,
    embeddings: np.ndarray,
    identities: np.ndarray,
    far: float,
    dataset: str,
) -> Calibration:
    """Calibrate `encoder` on labelled embeddings and store the result with it."""
    measured = calibrate_threshold(embeddings, identities, far)
    calibration = Calibration(
        encoder=encoder.name,
        fingerprint=encoder_identity(encoder).fingerprint,
        target_far=far,
        dataset=dataset,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **measured,
    )
    save_calibration(encoder, calibration)
    return calibration
