"""The face models a student can be distilled from, by name, torch-free for the CLI's checks.

Adding a teacher: a function from `[N, H, W, 3]` uint8 aligned faces to `[N, dim]` float32 unit
rows, and one entry here. Its fingerprint keys the cached embeddings (`facerep.train.teacher`):
change it whenever the teacher's outputs would change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TeacherEntry:
    """A teacher: its name, a line about it, its embedding size, fingerprint and function."""

    name: str
    summary: str
    dim: int
    fingerprint: str
    target: str  # "module:function", faces -> unit embeddings

    def embedder(self) -> Callable[[np.ndarray], np.ndarray]:
        """The teacher's embedding function, imported only when asked for."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


TEACHERS: dict[str, TeacherEntry] = {
    entry.name: entry
    for entry in [
        TeacherEntry(
            "dlib",
            "dlib's 128-D ResNet face recogniser (99.38% on LFW), on 150-px chips of the crops",
            128,
            "dlib_face_recognition_resnet_model_v1",
            "facerep.faces.dlib_models:unit_descriptors",
        ),
    ]
}


def check_teacher(name: str) -> TeacherEntry:
    """The entry of teacher `name`; a one-line ValueError listing the known ones otherwise."""
    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; choose one of: {', '.join(sorted(TEACHERS))}")
    return TEACHERS[name]
