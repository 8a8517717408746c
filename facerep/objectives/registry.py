"""The pretraining objectives by name, torch-free so the CLI can list and check them cheaply.

Adding an objective: its own file (a `PretrainObjective`), one entry here naming the training
options it reads, those options in `facerep.train.config.TrainConfig`, and its tests.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from facerep.objectives.base import PretrainObjective


@dataclass(frozen=True)
class ObjectiveEntry:
    """A registered objective: its name, a line about it, its class and the options it reads."""

    name: str
    summary: str
    target: str  # "module:Class" (or a function returning one), built as Class(model, **options)
    options: tuple[str, ...] = ()  # the TrainConfig fields passed to it as keyword arguments


OBJECTIVES: dict[str, ObjectiveEntry] = {
    entry.name: entry
    for entry in [
        ObjectiveEntry(
            "reconstruction",
            "masked reconstruction of the pixels (MAE; the conv-AE by input masking)",
            "facerep.objectives.reconstruction:MaskedReconstruction",
            ("masking", "mask_ratio"),
        ),
        ObjectiveEntry(
            "instance",
            "instance discrimination: two views, a momentum encoder, a queue of negatives "
            "(MoCo v2)",
            "facerep.objectives.instance:InstanceDiscrimination",
            ("queue_size", "temperature", "momentum", "projection_dim"),
        ),
        ObjectiveEntry(
            "mae+id",
            "masked reconstruction plus an identity branch from the masked view to a momentum "
            "target of a second view (FSFM; use --masking face-regions)",
            "facerep.objectives.mae_id:ReconstructionWithIdentity",
            (
                "masking", "mask_ratio", "identity_weight", "queue_size", "temperature",
                "momentum", "projection_dim",
            ),
        ),
        ObjectiveEntry(
            "mimic",
            "distil a face recogniser: the student's embedding of each view regresses the "
            "teacher's (cosine, relational), plus masked reconstruction on an autoencoder "
            "(MR-MAE; --teacher dlib)",
            "facerep.objectives.mimic:mimic",
            ("teacher", "teacher_centred", "mimic_weight", "mimic_loss", "masking", "mask_ratio"),
        ),
    ]
}
DEFAULT_OBJECTIVE = "reconstruction"


def list_objectives() -> list[ObjectiveEntry]:
    """Every registered objective, by name."""
    return [OBJECTIVES[name] for name in sorted(OBJECTIVES)]


def check_objective(name: str) -> ObjectiveEntry:
    """The entry of `name`; a one-line ValueError listing the known ones otherwise."""
    if name not in OBJECTIVES:
        known = ", ".join(sorted(OBJECTIVES))
        raise ValueError(f"unknown objective {name!r}; choose one of: {known}")
    return OBJECTIVES[name]


def create_objective(name: str, model: nn.Module, options: dict[str, Any]) -> PretrainObjective:
    """Build objective `name` around `model`, passing it the options its entry names.

    Raises:
        ValueError: unknown objective, or one that cannot train this model (one line).
    """
    entry = check_objective(name)
    module, _, class_name = entry.target.partition(":")
    objective_class = getattr(importlib.import_module(module), class_name)
    return objective_class(model, **{key: options[key] for key in entry.options})
