"""Seeded identity-disjoint splits: train identities vs held-out identities, never both."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def split_identities(
    identities: Sequence[str | None], train_fraction: float = 0.5, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Shuffle the distinct identities with `seed` and cut them into (train, held_out).

    The same identities, seed and fraction always give the same split, whatever the order of
    the input. Faces with no identity (None) belong to neither side.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be between 0 and 1, got {train_fraction}")
    names = sorted({name for name in identities if name is not None})
    if len(names) < 2:
        raise ValueError(f"an identity split needs at least 2 identities, found {len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    cut = min(max(1, round(len(names) * train_fraction)), len(names) - 1)
    train = sorted(names[i] for i in order[:cut])
    held_out = sorted(names[i] for i in order[cut:])
    return train, held_out


def identity_split_indices(
    identities: Sequence[str | None], train_fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the faces whose identity falls in the train and in the held-out half."""
    train, _ = split_identities(identities, train_fraction, seed)
    labelled = np.array([name is not None for name in identities], dtype=bool)
    in_train = np.isin(np.asarray(identities, dtype=object), train) & labelled
    return np.flatnonzero(in_train), np.flatnonzero(labelled & ~in_train)
