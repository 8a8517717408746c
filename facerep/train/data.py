"""Pretraining data: several prepared datasets held in memory at the model's input size.

Face crops are small (15,000 faces at 64x64 are 184 MB as uint8), so they are read once from the
memory maps, resized to the model's input size, and kept as one uint8 tensor; batches are then
plain indexing, with no decode or worker processes in the loop. Identity datasets contribute
only their training identities, so the held-out half stays unseen for `facerep eval`. A run
with a teacher also holds the teacher's cached embeddings and view parameters of every face
(`facerep.train.teacher`), in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from facerep.data.splits import identity_split_indices
from facerep.data.store import open_dataset
from facerep.train.teacher import TeacherTargets, load_teacher_targets


@dataclass
class DatasetPart:
    """How many faces one prepared dataset gave to the pretraining set, and why."""

    path: str
    faces: int
    used: int
    note: str
    padding: float  # the crop margin it was prepared with (all parts must agree)


class PretrainFaces(Dataset):
    """Aligned faces as uint8 `[3, S, S]` tensors with landmarks `[5, 2]` in the same pixels.

    Args:
        paths: prepared dataset folders.
        img_size: the model's input side; crops of another size are resized (antialiased).
        holdout_fraction: share of identities held out of identity datasets.
        split_seed: seed of the identity split (the one `facerep eval` uses).
        use_all_identities: keep every identity (no held-out evaluation possible).
        teacher: load this teacher's cached embeddings of each face's fixed views (`teacher`,
            `facerep.train.teacher`), for distillation; "" for none.
        teacher_views: how many of the cached views to use.
        teacher_centred: take the mean of the teacher's embeddings (of these faces) away from
            every target (`TeacherTargets.centred`).
    """

    def __init__(
        self,
        paths: list[str] | tuple[str, ...],
        img_size: int,
        holdout_fraction: float = 0.5,
        split_seed: int = 0,
        use_all_identities: bool = False,
        teacher: str = "",
        teacher_views: int = 4,
        teacher_centred: bool = False,
    ):
        if not paths:
            raise ValueError("no dataset given: pass one or more folders made by `facerep prepare`")
        images, landmarks, targets, self.parts = [], [], [], []
        for path in paths:
            rows, crops, points, part = _load_part(
                Path(path), img_size, holdout_fraction, split_seed, use_all_identities
            )
            images.append(crops)
            landmarks.append(points)
            self.parts.append(part)
            if teacher:
                targets.append(load_teacher_targets(path, teacher, teacher_views, rows))
        paddings = {part.padding for part in self.parts}
        if len(paddings) > 1:
            raise ValueError(
                f"datasets were cropped with different paddings {sorted(paddings)}: "
                "prepare them alike"
            )
        self.padding = paddings.pop()
        self.imgs = torch.cat(images)
        self.landmarks = torch.cat(landmarks)
        # The teacher's embeddings and view parameters of every face, in the same order.
        self.teacher: TeacherTargets | None = TeacherTargets.concat(targets) if targets else None
        if self.teacher is not None and teacher_centred:
            self.teacher = self.teacher.centred()
        if len(self.imgs) == 0:
            raise ValueError(f"no faces to train on in {', '.join(map(str, paths))}")

    def __len__(self) -> int:
        return len(self.imgs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """A face, its landmarks, and its index (which picks its teacher targets)."""
        return self.imgs[index], self.landmarks[index], index


def _load_part(
    path: Path, img_size: int, holdout_fraction: float, split_seed: int, use_all: bool
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, DatasetPart]:
    data = open_dataset(path)
    rows, note = np.arange(len(data)), "no identities: all faces"
    if len(set(data.identities) - {None}) >= 2 and not use_all:
        rows, _ = identity_split_indices(data.identities, 1.0 - holdout_fraction, split_seed)
        note = (
            f"training identities only (split seed {split_seed}, {holdout_fraction:.0%} held out)"
        )
    crops = torch.from_numpy(np.asarray(data.crops[rows])).permute(0, 3, 1, 2)
    points = torch.from_numpy(data.landmarks[rows].copy())
    if data.size != img_size:
        crops = _resize_uint8(crops, img_size)
        # Pixel centres at integers: a point x maps to (x + 0.5) * s - 0.5.
        scale = img_size / data.size
        points = (points + 0.5) * scale - 0.5
    part = DatasetPart(str(path), len(data), len(rows), note, float(data.meta["padding"]))
    return rows, crops.contiguous(), points, part


def _resize_uint8(crops: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    out = []
    for start in range(0, len(crops), chunk):
        batch = crops[start : start + chunk].float()
        resized = F.interpolate(
            batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out.append(resized.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out) if out else crops
