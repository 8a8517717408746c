"""Pretraining data: held-out identities excluded, crops and landmarks resized together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerep.data.prepare import PrepareOptions, prepare_dataset
from facerep.data.splits import split_identities
from facerep.data.store import open_dataset
from facerep.faces.align import alignment_template
from facerep.train.data import PretrainFaces
from tests.conftest import write_face_folder


@pytest.fixture(scope="module")
def identity_dataset(tmp_path_factory: pytest.TempPathFactory, lfw_faces: np.ndarray) -> Path:
    root = tmp_path_factory.mktemp("ids")
    write_face_folder(root / "src", lfw_faces[:24], per_identity=3)
    prepare_dataset(root / "src", root / "data", PrepareOptions(size=48))
    return root / "data"


def test_only_training_identities_are_used(identity_dataset: Path) -> None:
    data = open_dataset(identity_dataset)
    train_names, _ = split_identities(data.identities, 0.5, seed=0)
    faces = PretrainFaces([str(identity_dataset)], img_size=48)
    assert len(faces) == int(np.isin(data.identities, train_names).sum()) < len(data)
    everyone = PretrainFaces([str(identity_dataset)], img_size=48, use_all_identities=True)
    assert len(everyone) == len(data)


def test_resizing_moves_landmarks_with_the_crops(identity_dataset: Path) -> None:
    faces = PretrainFaces([str(identity_dataset)], img_size=32, use_all_identities=True)
    assert faces.imgs.shape[1:] == (3, 32, 32) and faces.imgs.dtype.is_floating_point is False
    # Stored landmarks sit near the 48-px template; resized they sit near the 32-px one.
    offset = (faces.landmarks.numpy() - alignment_template(32)).mean(axis=0)
    assert np.abs(offset).max() < 1.5
    assert faces.padding == 0.25
