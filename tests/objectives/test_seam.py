"""The objective seam: a new objective is its own file and one registration, nothing else.

`TwoViewAgreement` below stands for the next method (a joint-embedding objective): it needs two
augmented views per face, owns a projection head, and logs a scalar of its own. Registered by
one entry, it trains, checkpoints its head, resumes exactly, and leaves no figure, without a
line of the trainer changed for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facerep.objectives.base import Objective, PretrainBatch
from facerep.objectives.registry import OBJECTIVES, ObjectiveEntry
from facerep.train.checkpoint import load_checkpoint
from facerep.train.config import TrainConfig
from facerep.train.loop import pretrain, resume_config


class TwoViewAgreement(Objective):
    """Pull the projected embeddings of two views of each face together (a toy SimSiam)."""

    num_views = 2

    def __init__(self, model: nn.Module, mask_ratio: float):
        super().__init__(model)
        self.head = nn.Linear(model.embed_dim, 16)
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))
        self.mask_ratio = mask_ratio  # read from TrainConfig through the entry's options

    def forward(self, batch: PretrainBatch) -> dict[str, torch.Tensor]:
        a, b = (F.normalize(self.head(self.model.embed(v.imgs)), dim=1) for v in batch.views)
        agreement = (a * b.detach()).sum(dim=1).mean()
        return {"loss": 1.0 - agreement, "agreement": agreement.detach()}

    def after_step(self, step: int) -> None:
        self.steps_seen += 1


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> str:
    entry = ObjectiveEntry(
        "agreement", "two views agree", f"{__name__}:TwoViewAgreement", ("mask_ratio",)
    )
    monkeypatch.setitem(OBJECTIVES, entry.name, entry)
    return entry.name


def config(data: Path, out: Path, objective: str, **changes: object) -> TrainConfig:
    base = dict(datasets=(str(data),), out=str(out), model="vit-test", epochs=2, batch_size=16,
                warmup_epochs=1.0, lr=2e-3, checkpoint_every=3, threads=1, objective=objective)
    return TrainConfig(**{**base, **changes})


def test_a_registered_objective_trains_checkpoints_and_resumes_exactly(
    registered: str, lfw_dataset: Path, tmp_path: Path
) -> None:
    whole = pretrain(config(lfw_dataset, tmp_path / "whole", registered))
    assert whole.steps == 10 and whole.figure is None  # no preview: none drawn, none named
    assert not (tmp_path / "whole" / "reconstructions.png").exists()
    saved = load_checkpoint(tmp_path / "whole").objective_state
    assert set(saved) == {"head.weight", "head.bias", "steps_seen"}
    assert int(saved["steps_seen"]) == 10

    pretrain(config(lfw_dataset, tmp_path / "broken", registered), stop_after=4)
    rest = pretrain(resume_config(tmp_path / "broken"), resume=True)
    np.testing.assert_allclose(rest.losses, whole.losses, atol=1e-5, rtol=0)
    resumed = load_checkpoint(tmp_path / "broken").objective_state
    torch.testing.assert_close(resumed["head.weight"], saved["head.weight"])
    assert int(resumed["steps_seen"]) == 10


def test_resuming_a_run_with_another_objective_is_refused(
    registered: str, lfw_dataset: Path, tmp_path: Path
) -> None:
    pretrain(config(lfw_dataset, tmp_path / "run", "reconstruction"), stop_after=3)
    other = config(lfw_dataset, tmp_path / "run", registered)
    with pytest.raises(ValueError, match=r"trained with objective reconstruction.*refused"):
        pretrain(other, resume=True)


class Collapsing(TwoViewAgreement):
    """Reports every face at one point, as a collapsed joint-embedding run would."""

    def forward(self, batch: PretrainBatch) -> dict[str, torch.Tensor]:
        terms = super().forward(batch)
        return {**terms, "embedding_spread": torch.tensor(0.0)}


def test_a_collapse_seen_in_the_logged_spread_is_reported(
    monkeypatch: pytest.MonkeyPatch, lfw_dataset: Path, tmp_path: Path
) -> None:
    import json

    entry = ObjectiveEntry("collapsing", "collapses", f"{__name__}:Collapsing", ("mask_ratio",))
    monkeypatch.setitem(OBJECTIVES, entry.name, entry)
    result = pretrain(config(lfw_dataset, tmp_path / "run", "collapsing", epochs=1))
    assert result.collapse is not None and "embeddings collapsed" in result.collapse
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["collapse"] == result.collapse and summary["last_embedding_spread"] == 0.0
    healthy = pretrain(config(lfw_dataset, tmp_path / "ok", "reconstruction", epochs=1))
    assert healthy.collapse is None
