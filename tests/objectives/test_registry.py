"""Objectives by name: the built-in one, unknown names, and models an objective cannot train."""

from __future__ import annotations

import pytest
from torch import nn

from facerep.models import create_model
from facerep.objectives.reconstruction import MaskedReconstruction
from facerep.objectives.registry import DEFAULT_OBJECTIVE, create_objective, list_objectives


def test_reconstruction_is_the_default_and_reads_its_masking_options() -> None:
    assert DEFAULT_OBJECTIVE == "reconstruction"
    assert [entry.name for entry in list_objectives()] == [
        "instance", "mae+id", "mimic", "reconstruction"
    ]
    objective = create_objective(
        "reconstruction", create_model("vit-test"), {"masking": "noise", "mask_ratio": 0.5}
    )
    assert isinstance(objective, MaskedReconstruction)
    assert (objective.masking, objective.mask_ratio, objective.num_views) == ("noise", 0.5, 1)
    assert objective.extra_state() == {}  # the model is all it has


def test_unknown_objectives_and_unfit_models_are_one_line_errors() -> None:
    known = r"instance, mae\+id, mimic, reconstruction"
    with pytest.raises(ValueError, match=f"unknown objective 'jigsaw'; choose one of: {known}"):
        create_objective("jigsaw", create_model("vit-test"), {})
    options = {"masking": "random", "mask_ratio": 0.5}
    with pytest.raises(ValueError, match=r"reconstruction needs an autoencoder .*Linear has none"):
        create_objective("reconstruction", nn.Linear(2, 2), options)
