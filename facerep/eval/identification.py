"""Closed-set face identification: find a probe's identity among one enrolled face per person.

Rank-k accuracy (the cumulative match characteristic of Phillips et al., "The FERET evaluation
methodology", 2000) is the share of probes whose own identity is among the k gallery faces most
similar to them. The gallery face of each identity is drawn at random, several times over, so
the number does not hang on one lucky or unlucky enrolment photo. Given each face's source
path, every encoder evaluated on the same faces enrols the same photos, so two encoders are
compared on identical galleries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Probes scored per matrix product: bounds memory at this many x (identities) similarities.
PROBE_CHUNK = 4096


def evaluate_identification(
    embeddings: np.ndarray,
    identities: np.ndarray | Sequence[str | None],
    ranks: Sequence[int] = (1, 5),
    n_trials: int = 10,
    seed: int = 0,
    keys: Sequence[str] | None = None,
) -> dict[str, float]:
    """Closed-set rank-k accuracy, mean and std over `n_trials` seeded gallery draws.

    Each trial enrols one random face of every identity with at least two faces; every other
    face of those identities is a probe. Identities with one face (and faces with no identity)
    take no part. A rank k at or above the number of identities scores 1.0.

    Args:
        embeddings: `[N, D]` L2-normalised rows; similarity is their dot product.
        identities: `[N]` identity names, None for unlabelled faces.
        keys: `[N]` names that fix each face's place in the seeded draw (its source path).
            Without them the embedding's bytes do, and a change in the last float bit (an
            ONNX export, another CPU) can reorder faces and so enrol other photos.

    Returns:
        `{"rank1": mean, "rank1_std": std, ...}` for each k in `ranks`.
    """
    if min(ranks, default=1) < 1 or n_trials < 1:
        raise ValueError(f"ranks and n_trials start at 1, got {list(ranks)} and {n_trials}")
    if keys is not None and len(keys) != len(identities):
        raise ValueError(f"{len(keys)} keys for {len(identities)} faces: give one key a face")
    names = [""] * len(identities) if keys is None else [str(key) for key in keys]
    emb, codes = _canonical_order(
        np.asarray(embeddings), np.asarray(identities, dtype=object), names
    )
    if len(codes) == 0:
        raise ValueError("identification needs at least one identity with two or more faces")
    rng = np.random.default_rng(seed)
    per_trial = np.array(
        [_trial_hit_rates(emb, codes, ranks, rng) for _ in range(n_trials)]
    ).reshape(n_trials, len(ranks))
    metrics: dict[str, float] = {}
    for column, k in enumerate(ranks):
        metrics[f"rank{k}"] = float(per_trial[:, column].mean())
        metrics[f"rank{k}_std"] = float(per_trial[:, column].std())
    return metrics


def _canonical_order(
    embeddings: np.ndarray, identities: np.ndarray, keys: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Faces of identities with 2+ faces, sorted by (identity, key, embedding bytes), and codes.

    A fixed order makes the seeded gallery draw pick the same faces however the rows came,
    so shuffling the input never changes the result. The bytes only break ties between keys
    (several faces of one photo, or every face when no keys were given).
    """
    labelled = np.flatnonzero([name is not None for name in identities])
    _, codes, counts = np.unique(
        identities[labelled].astype(str), return_inverse=True, return_counts=True
    )
    several = counts[codes] >= 2
    rows, codes = labelled[several], codes[several]
    order = sorted(
        range(len(rows)), key=lambda k: (codes[k], keys[rows[k]], embeddings[rows[k]].tobytes())
    )
    # Renumber 0..G-1 now that single-face identities are gone.
    _, codes = np.unique(codes[order], return_inverse=True)
    return embeddings[rows[order]], codes.reshape(-1)


def _trial_hit_rates(
    embeddings: np.ndarray, codes: np.ndarray, ranks: Sequence[int], rng: np.random.Generator
) -> list[float]:
    """One gallery draw: the share of probes identified within each rank."""
    gallery = _draw_gallery(codes, rng)
    is_probe = np.ones(len(codes), dtype=bool)
    is_probe[gallery] = False
    probe_rows = np.flatnonzero(is_probe)
    chunks = [probe_rows[i : i + PROBE_CHUNK] for i in range(0, len(probe_rows), PROBE_CHUNK)]
    true_ranks = np.concatenate(
        [_true_identity_ranks(embeddings, codes, gallery, chunk) for chunk in chunks]
    )
    return [float(np.mean(true_ranks <= k)) for k in ranks]


def _draw_gallery(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random row per identity code, in code order (so gallery column c is identity c)."""
    n_identities = int(codes.max()) + 1
    # Rows are grouped by code; a random offset into each group picks its gallery face.
    starts = np.searchsorted(codes, np.arange(n_identities))
    sizes = np.bincount(codes, minlength=n_identities)
    return starts + (rng.random(n_identities) * sizes).astype(np.int64)


def _true_identity_ranks(
    embeddings: np.ndarray, codes: np.ndarray, gallery: np.ndarray, probes: np.ndarray
) -> np.ndarray:
    """Each probe's 1-based rank of its own identity among the gallery, ties ranked against it.

    Counting ties as losses scores a degenerate encoder (every face the same vector) at zero
    rather than perfect.
    """
    similarity = embeddings[probes] @ embeddings[gallery].T  # [P, G]
    own = similarity[np.arange(len(probes)), codes[probes]]
    return (similarity >= own[:, None]).sum(axis=1)
