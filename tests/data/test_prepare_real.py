"""Ingest of the real face sets in ../shared/data: the alignment rates the project promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerep.data.prepare import PrepareOptions, prepare_dataset
from facerep.data.splits import identity_split_indices
from facerep.data.store import open_dataset


def test_orl_tight_portraits_align(shared_data: Path, tmp_path: Path) -> None:
    summary = prepare_dataset(
        shared_data / "orl", tmp_path / "orl", PrepareOptions(size=64), workers=2
    )
    data = open_dataset(tmp_path / "orl")
    assert summary.outcomes["ok"] >= 390, summary.outcomes
    assert len(set(data.identities)) == 40
    assert summary.outcomes["ignored"] == 2  # the two README files, reported not dropped
    train, held_out = identity_split_indices(data.identities, 0.5, seed=0)
    assert len({*data.identities[train]}) == len({*data.identities[held_out]}) == 20


def test_cs131_small_colour_faces_align(shared_data: Path, tmp_path: Path) -> None:
    summary = prepare_dataset(
        shared_data / "cs131_faces", tmp_path / "cs131", PrepareOptions(size=64), workers=2
    )
    data = open_dataset(tmp_path / "cs131")
    assert summary.outcomes["ok"] >= 940, summary.outcomes
    assert len(set(data.identities)) == 16
    assert set(data.splits) == {"train", "test"}
    # Colour survives: the crops are not grey.
    crops = np.asarray(data.crops[:50], dtype=np.float32)
    assert np.abs(crops[..., 0] - crops[..., 2]).mean() > 5


@pytest.mark.slow
def test_unlabeled_corpus_aligns_at_least_90_percent(shared_data: Path, tmp_path: Path) -> None:
    summary = prepare_dataset(
        shared_data / "faces_unlabeled", tmp_path / "unlabeled", PrepareOptions(size=64), workers=2
    )
    assert summary.found > 14_000
    assert summary.outcomes["ok"] >= 0.9 * summary.found, summary.outcomes
    data = open_dataset(tmp_path / "unlabeled")
    assert set(data.identities) == {None}  # two big folders of strangers, not two identities
    assert len(data) >= summary.outcomes["ok"]  # flat folders keep every face of an image
