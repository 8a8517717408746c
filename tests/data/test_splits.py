"""Seeded identity-disjoint splits."""

from __future__ import annotations

import numpy as np
import pytest

from facerep.data.splits import identity_split_indices, split_identities

NAMES = [f"s{i}" for i in range(1, 41)]


def test_split_is_disjoint_complete_and_half() -> None:
    train, held_out = split_identities(NAMES, 0.5, seed=0)
    assert len(train) == len(held_out) == 20
    assert not set(train) & set(held_out)
    assert set(train) | set(held_out) == set(NAMES)


def test_split_depends_on_seed_not_on_input_order() -> None:
    assert split_identities(NAMES, seed=0) == split_identities(NAMES[::-1] * 3, seed=0)
    assert split_identities(NAMES, seed=0) != split_identities(NAMES, seed=1)


def test_split_indices_never_share_an_identity() -> None:
    identities = [None, "a", "b", "a", "c", "d", None, "b"]
    train, held_out = identity_split_indices(identities, 0.5, seed=0)
    ids = np.array(identities, dtype=object)
    assert not set(ids[train]) & set(ids[held_out])
    assert sorted([*train, *held_out]) == [1, 2, 3, 4, 5, 7]  # unlabelled rows on neither side


def test_split_needs_two_identities() -> None:
    with pytest.raises(ValueError, match="at least 2 identities"):
        split_identities(["a", "a", None])
