"""The pretraining loop: learning, run directories, exact resume, divergence, every strategy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import facerep
from facerep.data.store import open_dataset
from facerep.models import create_model
from facerep.runs import load_weights, weights_digest
from facerep.train import loop
from facerep.train.checkpoint import load_checkpoint
from facerep.train.config import TrainConfig
from facerep.train.loop import (
    TrainingDiverged,
    lr_at,
    pretrain,
    resume_config,
    weight_decay_groups,
)
from facerep.whitening import load_whitening


def tiny_config(data: Path, out: Path, **changes: object) -> TrainConfig:
    base = dict(datasets=(str(data),), out=str(out), model="vit-test", epochs=2, batch_size=16,
                warmup_epochs=1.0, lr=2e-3, checkpoint_every=3, threads=1)
    return TrainConfig(**{**base, **changes})


def test_loss_falls_and_the_run_directory_describes_itself(lfw_dataset, tmp_path):
    result = pretrain(tiny_config(lfw_dataset, tmp_path / "run", epochs=12))
    epochs = result.epoch_losses
    assert len(epochs) == 12 and epochs[-1] < 0.9 * epochs[0]
    run = tmp_path / "run"
    for name in ("config.json", "model.safetensors", "reconstructions.png", "loss_curve.png",
                 "summary.json", "whitening.safetensors"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == result.steps == 12 * 5
    assert summary["faces"] == len(open_dataset(lfw_dataset)) > 90

    encoder = facerep.load_encoder(run)  # rebuilt from the folder alone
    faces = (np.random.default_rng(0).random((5, 40, 40, 3)) * 255).astype(np.uint8)
    embeddings = encoder.embed(faces)
    # Whitened as shipped: one component per 4 training faces at most (32-D raw).
    assert encoder.whitened and encoder.dim == min(32, summary["faces"] // 4)
    assert embeddings.shape == (5, encoder.dim) and encoder.input_size == 32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


def test_resumed_run_reproduces_the_unbroken_one(lfw_dataset, tmp_path):
    whole = pretrain(tiny_config(lfw_dataset, tmp_path / "whole"))
    first = pretrain(tiny_config(lfw_dataset, tmp_path / "broken"), stop_after=4)
    assert first.steps == 4 and load_checkpoint(tmp_path / "broken").step == 4
    rest = pretrain(resume_config(tmp_path / "broken"), resume=True)
    assert rest.steps == whole.steps == 10
    np.testing.assert_allclose(rest.losses, whole.losses, atol=1e-5, rtol=0)
    a, b = (load_weights(tmp_path / r / "model.safetensors") for r in ("whole", "broken"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)
    # The whitening fitted when the run stopped was replaced by one for the final weights.
    whole_white, broken_white = (load_whitening(tmp_path / r) for r in ("whole", "broken"))
    assert broken_white.weights == weights_digest(tmp_path / "broken")
    np.testing.assert_allclose(broken_white.mean, whole_white.mean, atol=1e-4)


def test_a_run_can_ship_raw_embeddings(lfw_dataset, tmp_path):
    pretrain(tiny_config(lfw_dataset, tmp_path / "run", epochs=1, whiten_components=0))
    assert load_whitening(tmp_path / "run") is None
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["whitening"] is None
    assert not facerep.load_encoder(tmp_path / "run").whitened


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(lfw_dataset, tmp_path, monkeypatch):
    real = loop.mean_across
    calls = []

    def poisoned(value, world):
        calls.append(1)
        return torch.tensor(float("nan")) if len(calls) == 5 else real(value, world)

    monkeypatch.setattr(loop, "mean_across", poisoned)
    with pytest.raises(TrainingDiverged, match="loss became nan at step 4"):
        pretrain(tiny_config(lfw_dataset, tmp_path / "run"))
    assert load_checkpoint(tmp_path / "run").step == 3
    assert (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("model", "masking", "precision"),
    [("vit-test", "face-regions", "fp32"), ("vit-test", "noise", "fp32"),
     ("vit-test", "random", "bf16"), ("conv-ae", "random", "fp32")],
)
def test_every_strategy_model_and_precision_trains(lfw_dataset, tmp_path, model, masking,
                                                   precision):
    overrides = {"img_size": 32, "embed_dim": 32, "depth": 2} if model == "conv-ae" else {}
    result = pretrain(tiny_config(lfw_dataset, tmp_path / "run", model=model, masking=masking,
                                  precision=precision, model_overrides=overrides),
                      stop_after=3)
    assert result.steps == 3 and all(np.isfinite(result.losses))


def test_batch_larger_than_the_data_is_a_clear_error(lfw_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"batch size 128 exceeds the 9\d faces"):
        pretrain(tiny_config(lfw_dataset, tmp_path / "run", batch_size=128))


@pytest.mark.parametrize("name", ["vit-test", "conv-ae"])
def test_weight_decay_falls_on_weight_matrices_only(name: str) -> None:
    model = create_model(name, img_size=32)
    decay, no_decay = weight_decay_groups(model, 0.05)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    spared = {names[id(p)] for p in no_decay["params"]}
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decayed | spared == trained and not decayed & spared  # fixed pos embeds in neither
    assert all(p.ndim > 1 and not names[id(p)].endswith("token") for p in decay["params"])
    assert all(p.ndim == 1 or names[id(p)].endswith("token") for p in no_decay["params"])
    if name == "vit-test":
        assert {"cls_token", "mask_token", "norm.weight", "blocks.0.attn.qkv.bias"} <= spared
        assert "pos_embed" not in trained | spared


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    assert lr_at(0, 100, 10, 1.0, 0.1) == 0.0
    assert lr_at(5, 100, 10, 1.0, 0.1) == pytest.approx(0.5)
    assert lr_at(10, 100, 10, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0, 0.1) == pytest.approx(0.55)
    assert lr_at(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)


def test_overwriting_a_longer_run_then_resuming_works(lfw_dataset, tmp_path):
    pretrain(tiny_config(lfw_dataset, tmp_path / "run", epochs=4))  # checkpoints up to step 20
    short = tiny_config(lfw_dataset, tmp_path / "run", checkpoint_every=2)
    pretrain(short, overwrite=True, stop_after=4)
    assert load_checkpoint(tmp_path / "run").step == 4  # not pruned by the old run's steps
    assert pretrain(resume_config(tmp_path / "run"), resume=True).steps == 10


def test_resume_at_an_epoch_boundary_with_more_epochs(lfw_dataset, tmp_path):
    whole = pretrain(tiny_config(lfw_dataset, tmp_path / "whole", epochs=3))
    pretrain(tiny_config(lfw_dataset, tmp_path / "split", epochs=3), stop_after=5)
    resumed = pretrain(resume_config(tmp_path / "split"), resume=True)
    np.testing.assert_allclose(resumed.losses, whole.losses, atol=1e-5, rtol=0)
    longer = pretrain(resume_config(tmp_path / "split", epochs=4), resume=True)
    assert longer.steps == 20 and len(longer.epoch_losses) == 4


def test_the_reconstruction_grid_is_drawn_once_per_epoch_and_at_a_mid_epoch_end(
    lfw_dataset, tmp_path, monkeypatch
):
    from facerep.objectives import reconstruction

    calls = []
    real = reconstruction.reconstruction_grid

    def counted(model, *args):
        calls.append(1)
        return real(model, *args)

    monkeypatch.setattr(reconstruction, "reconstruction_grid", counted)
    pretrain(tiny_config(lfw_dataset, tmp_path / "run"))  # 2 epochs: the last grid is reused
    assert len(calls) == 2 and (tmp_path / "run" / "reconstructions.png").is_file()
    calls.clear()
    pretrain(tiny_config(lfw_dataset, tmp_path / "cut"), stop_after=3)  # no epoch ended
    assert len(calls) == 1 and (tmp_path / "cut" / "reconstructions.png").is_file()


def test_sgd_is_there_for_the_recipes_that_use_it(lfw_dataset, tmp_path, monkeypatch):
    made = []
    real = loop.make_optimizer

    def recorded(config, groups):
        made.append(real(config, groups))
        return made[-1]

    monkeypatch.setattr(loop, "make_optimizer", recorded)
    result = pretrain(tiny_config(lfw_dataset, tmp_path / "run", optimizer="sgd", lr=0.05))
    assert isinstance(made[0], torch.optim.SGD) and made[0].defaults["momentum"] == 0.9
    assert np.isfinite(result.losses).all() and result.epoch_losses[-1] < result.epoch_losses[0]
    with pytest.raises(ValueError, match="optimizer must be one of 'adamw', 'sgd'"):
        TrainConfig(optimizer="lamb")


def test_a_run_can_start_from_another_runs_weights(lfw_dataset, tmp_path):
    first = pretrain(tiny_config(lfw_dataset, tmp_path / "first", epochs=6, whiten_components=0))
    fresh = pretrain(tiny_config(lfw_dataset, tmp_path / "fresh", whiten_components=0),
                     stop_after=1)  # fmt: skip
    later = pretrain(tiny_config(lfw_dataset, tmp_path / "later", whiten_components=0,
                                 init_from=str(tmp_path / "first")), stop_after=1)  # fmt: skip
    # Its first step is where the first run ended, not where a random start is.
    assert abs(later.losses[0] - first.losses[-1]) < abs(fresh.losses[0] - first.losses[-1]) / 3
    saved = json.loads((tmp_path / "later" / "config.json").read_text())["train"]
    assert saved["init_from"] == str(tmp_path / "first")
    rest = pretrain(resume_config(tmp_path / "later"), resume=True)  # resumes its own weights
    assert rest.steps == 10

    other = tiny_config(lfw_dataset, tmp_path / "other", model="resnet-tiny",
                        init_from=str(tmp_path / "first"))  # fmt: skip
    refused = r"--init-from .*first: its model is mae_vit_test_p8_32, this run trains resnet_tiny"
    with pytest.raises(ValueError, match=refused):
        pretrain(other)
    assert not (tmp_path / "other").exists()  # refused before anything is written
    with pytest.raises(ValueError, match=r"absent: not a facerep run directory"):
        pretrain(tiny_config(lfw_dataset, tmp_path / "x", init_from=str(tmp_path / "absent")))
