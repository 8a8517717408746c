"""Checkpoints: round trip, pruning, `latest`, damage, clearing a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facerep.runs import WEIGHTS_FILE
from facerep.train.checkpoint import (
    CHECKPOINTS_DIR,
    Checkpoint,
    clear_run,
    load_checkpoint,
    save_checkpoint,
)


def checkpoint(step: int) -> Checkpoint:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return Checkpoint(step, model.state_dict(), optimizer.state_dict(), [1.0] * step,
                      torch.get_rng_state())


def test_round_trip_restores_model_optimizer_and_rng(tmp_path: Path) -> None:
    saved = checkpoint(3)
    folder = save_checkpoint(tmp_path, saved)
    # RUN/model.safetensors (what encoders load) is the checkpoint's weights, byte for byte.
    run_weights = (tmp_path / WEIGHTS_FILE).read_bytes()
    assert run_weights == (folder / WEIGHTS_FILE).read_bytes()
    loaded = load_checkpoint(tmp_path)
    assert loaded.step == 3 and loaded.losses == [1.0] * 3
    for key, value in saved.model_state.items():
        torch.testing.assert_close(loaded.model_state[key], value)
    optimizer = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters())
    optimizer.load_state_dict(loaded.optimizer_state)  # accepted as a real state dict
    state = optimizer.state_dict()["state"][0]
    torch.testing.assert_close(state["exp_avg"], saved.optimizer_state["state"][0]["exp_avg"])
    assert torch.equal(loaded.torch_rng, saved.torch_rng)


def test_only_the_newest_are_kept_and_the_one_just_written_survives(tmp_path: Path) -> None:
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, checkpoint(step), keep=2)
    names = sorted(p.name for p in (tmp_path / CHECKPOINTS_DIR).glob("step-*"))
    assert names == ["step-00000020", "step-00000030"]
    # A restarted run writing a smaller step must not lose it to the older, larger ones.
    save_checkpoint(tmp_path, checkpoint(5), keep=2)
    assert load_checkpoint(tmp_path).step == 5


def test_damaged_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    folder = save_checkpoint(tmp_path, checkpoint(2))
    (folder / "optimizer.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="no checkpoint to resume from"):
        load_checkpoint(tmp_path / "elsewhere")


def test_clear_run_removes_the_run_and_keeps_other_files(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, checkpoint(2))
    # What the rest of a run leaves, by the names the trainer writes.
    for name in ("config.json", "summary.json", "reconstructions.png", "loss_curve.png"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.out.tfevents.1").write_text("")
    (tmp_path / "notes.txt").write_text("mine")
    clear_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
