"""A PyTorch `Dataset` over a prepared dataset's memory-mapped crops."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from facerep.data.store import PreparedDataset, open_dataset


class FaceDataset(Dataset):
    """Aligned faces as `[3, S, S]` float tensors in [0, 1], with identity label and landmarks.

    Each item is a dict: `imgs` `[3, S, S]`, `label` (index into `classes`, -1 without identity),
    `landmarks` `[5, 2]` in crop pixels, and `index` (the row in the prepared dataset).

    Args:
        root: a prepared dataset folder (or an open `PreparedDataset`).
        indices: rows to expose, e.g. one side of `identity_split_indices`; all rows by default.
        transform: applied to the `imgs` tensor (augmentation).
    """

    def __init__(
        self,
        root: str | Path | PreparedDataset,
        indices: Sequence[int] | np.ndarray | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.data = root if isinstance(root, PreparedDataset) else open_dataset(root)
        self.indices = np.arange(len(self.data)) if indices is None else np.asarray(indices)
        self.transform = transform
        identities = self.data.identities[self.indices]
        self.classes = sorted({name for name in identities if name})
        lookup = {name: i for i, name in enumerate(self.classes)}
        self.labels = np.array([lookup.get(name, -1) for name in identities], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        row = int(self.indices[i])
        imgs = torch.from_numpy(np.array(self.data.crops[row])).permute(2, 0, 1).float() / 255.0
        if self.transform is not None:
            imgs = self.transform(imgs)
        return {
            "imgs": imgs,
            "label": int(self.labels[i]),
            "landmarks": torch.from_numpy(self.data.landmarks[row]),
            "index": row,
        }
