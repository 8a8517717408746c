"""The PyTorch view of a prepared dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from facerep.data.prepare import PrepareOptions, prepare_dataset
from facerep.data.splits import identity_split_indices
from facerep.data.store import open_dataset
from facerep.data.torch_dataset import FaceDataset
from tests.conftest import write_face_folder


def test_items_match_the_stored_crops_and_labels(tmp_path: Path, lfw_faces: np.ndarray) -> None:
    src = write_face_folder(tmp_path / "src", lfw_faces[:16], per_identity=4)
    prepare_dataset(src, tmp_path / "out", PrepareOptions(size=32))
    data = open_dataset(tmp_path / "out")
    train_rows, held_rows = identity_split_indices(data.identities, 0.5, seed=0)
    train = FaceDataset(data, train_rows)
    held_out = FaceDataset(tmp_path / "out", held_rows)
    assert len(train) + len(held_out) == len(data)
    assert not set(train.classes) & set(held_out.classes)

    item = train[0]
    assert item["imgs"].shape == (3, 32, 32) and item["imgs"].dtype == torch.float32
    assert item["imgs"].min() >= 0.0 and item["imgs"].max() <= 1.0
    row = item["index"]
    np.testing.assert_allclose(item["imgs"].permute(1, 2, 0).numpy() * 255, data.crops[row],
                               atol=1e-3)
    assert train.classes[item["label"]] == data.identities[row]
    assert item["landmarks"].shape == (5, 2)

    batch = next(iter(DataLoader(train, batch_size=4, shuffle=False)))
    assert batch["imgs"].shape == (4, 3, 32, 32) and batch["label"].shape == (4,)


def test_transform_is_applied_and_unlabelled_faces_get_minus_one(lfw_dataset: Path) -> None:
    dataset = FaceDataset(lfw_dataset, transform=lambda x: x.flip(-1))
    plain = FaceDataset(lfw_dataset)
    assert dataset.classes == [] and dataset[0]["label"] == -1
    assert len(dataset) >= 90 and (dataset.labels == -1).all()
    torch.testing.assert_close(dataset[0]["imgs"], plain[0]["imgs"].flip(-1))
