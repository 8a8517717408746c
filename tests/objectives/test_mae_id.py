"""mae+id (FSFM): reconstruction plus an identity branch; learns, resumes, needs a decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facerep.train.checkpoint import load_checkpoint
from facerep.train.config import TrainConfig
from facerep.train.loop import pretrain, resume_config
from tests.objectives.test_instance import view_margin


def config(data: Path, out: Path, **changes: object) -> TrainConfig:
    base = dict(datasets=(str(data),), out=str(out), model="vit-test", objective="mae+id",
                masking="face-regions", epochs=2, batch_size=16, warmup_epochs=0.5, lr=2e-3,
                queue_size=48,
                checkpoint_every=3, threads=1, scale_jitter=0.2, color_jitter=0.4,
                greyscale=0.2, blur=0.2, erase=0.2, rotation_jitter=10.0)  # fmt: skip
    return TrainConfig(**{**base, **changes})


def test_both_terms_fall_and_two_views_of_a_face_end_closer(lfw_dataset: Path, tmp_path: Path):
    pretrain(config(lfw_dataset, tmp_path / "start", epochs=10), stop_after=1)
    result = pretrain(config(lfw_dataset, tmp_path / "run", epochs=10, identity_weight=0.5))
    epochs = result.epoch_losses
    assert np.isfinite(result.losses).all() and epochs[-1] < 0.98 * epochs[0]
    assert result.figure is not None and result.figure.name == "reconstructions.png"
    before, after = (view_margin(tmp_path / r, lfw_dataset) for r in ("start", "run"))
    # Reconstruction alone leaves the margin where it started after 10 epochs (0.42 -> 0.42);
    # the identity branch moves it (to about 0.50).
    assert after > before + 0.04, (before, after)


def test_the_target_network_is_checkpointed_and_resumes_exactly(
    lfw_dataset: Path, tmp_path: Path
) -> None:
    whole = pretrain(config(lfw_dataset, tmp_path / "whole"))
    state = load_checkpoint(tmp_path / "whole").objective_state
    for part in ("momentum_model.", "momentum_head.", "head.", "queue"):
        assert any(key.startswith(part) for key in state), part
    pretrain(config(lfw_dataset, tmp_path / "broken"), stop_after=4)
    rest = pretrain(resume_config(tmp_path / "broken"), resume=True)
    np.testing.assert_allclose(rest.losses, whole.losses, atol=1e-5, rtol=0)
    resumed = load_checkpoint(tmp_path / "broken").objective_state
    for key in state:
        torch.testing.assert_close(resumed[key], state[key], atol=1e-5, rtol=0)


def test_mae_id_needs_an_autoencoder(lfw_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"mae\+id needs an autoencoder.*resnet_tiny_\d+ has none"):
        pretrain(config(lfw_dataset, tmp_path / "cnn", model="resnet-tiny",
                        model_overrides={"img_size": 32}))  # fmt: skip
