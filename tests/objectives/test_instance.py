"""Instance discrimination (MoCo v2): it learns who is who, and resumes exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import facerep
from facerep.data.store import open_dataset
from facerep.train.augment import augment, sample_augment
from facerep.train.checkpoint import load_checkpoint
from facerep.train.config import TrainConfig
from facerep.train.loop import pretrain, resume_config


def config(data: Path, out: Path, **changes: object) -> TrainConfig:
    base = dict(datasets=(str(data),), out=str(out), model="resnet-tiny",
                model_overrides={"img_size": 32}, objective="instance", epochs=2, batch_size=16,
                warmup_epochs=0.5, lr=1e-3, queue_size=48, checkpoint_every=3, threads=1,
                scale_jitter=0.2, color_jitter=0.4, greyscale=0.2, blur=0.2, erase=0.2,
                rotation_jitter=10.0)  # fmt: skip
    return TrainConfig(**{**base, **changes})


def view_margin(run: Path, data: Path) -> float:
    """Mean similarity of a face to another view of it, less its mean similarity to other
    faces' views, on embeddings centred over the set (ReLU features share a large mean)."""
    crops = np.array(open_dataset(data).crops[:40])
    imgs = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    params = sample_augment(40, torch.Generator().manual_seed(1), scale_jitter=0.1,
                            color_jitter=0.3)  # fmt: skip
    views, _ = augment(imgs, torch.zeros(40, 5, 2), params)
    encoder = facerep.load_encoder(run, whiten=False)  # what the objective learned, unwhitened
    a = encoder.embed(crops)
    b = encoder.embed((views.permute(0, 2, 3, 1) * 255).round().byte().numpy())
    centre = np.concatenate([a, b]).mean(axis=0)
    a, b = (x - centre for x in (a, b))
    a, b = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
    similarity = a @ b.T
    return float(np.diag(similarity).mean() - similarity[~np.eye(40, dtype=bool)].mean())


def test_two_views_of_a_face_end_closer_than_two_faces(lfw_dataset: Path, tmp_path: Path) -> None:
    pretrain(config(lfw_dataset, tmp_path / "start", epochs=8), stop_after=1)
    result = pretrain(config(lfw_dataset, tmp_path / "run", epochs=8))
    assert np.isfinite(result.losses).all() and result.figure is None
    before, after = view_margin(tmp_path / "start", lfw_dataset), view_margin(
        tmp_path / "run", lfw_dataset
    )
    assert after > before + 0.15 and after > 0.4, (before, after)


def test_the_momentum_encoder_and_queue_are_checkpointed_and_resume_exactly(
    lfw_dataset: Path, tmp_path: Path
) -> None:
    whole = pretrain(config(lfw_dataset, tmp_path / "whole"))
    state = load_checkpoint(tmp_path / "whole").objective_state
    assert {"queue", "queue_next"} <= set(state)
    assert any(key.startswith("momentum_model.") for key in state)
    assert any(key.startswith("head.") for key in state)
    pretrain(config(lfw_dataset, tmp_path / "broken"), stop_after=4)
    rest = pretrain(resume_config(tmp_path / "broken"), resume=True)
    np.testing.assert_allclose(rest.losses, whole.losses, atol=1e-5, rtol=0)
    resumed = load_checkpoint(tmp_path / "broken").objective_state
    for key in ("queue", "queue_next", "momentum_model.stem.0.weight"):
        torch.testing.assert_close(resumed[key], state[key])


def test_instance_needs_an_embedding_model() -> None:
    from torch import nn

    from facerep.objectives.registry import create_objective

    options = {"queue_size": 8, "temperature": 0.2, "momentum": 0.9, "projection_dim": 4}
    with pytest.raises(ValueError, match="needs a model with embed"):
        create_objective("instance", nn.Linear(2, 2), options)
