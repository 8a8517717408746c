"""Training checkpoints in a run directory: safetensors weights and state, written atomically.

    RUN/config.json, RUN/model.safetensors   the run as inference reads it (`facerep.runs`)
    RUN/checkpoints/step-00000200/  model.safetensors, objective.safetensors (the objective's
                                    own modules, if any), optimizer.safetensors (+ RNG), state.json
    RUN/checkpoints/latest          the name of the newest complete checkpoint

A checkpoint is written into a hidden temporary folder, fsynced and renamed into place, and only
then named in `latest`: a crash at any moment leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from facerep.files import atomic_write, atomic_write_bytes, fsync_path
from facerep.runs import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_weights,
    save_weights,
    weights_bytes,
)
from facerep.train.observe import GRID_FILE, LOSS_CURVE_FILE, TENSORBOARD_DIR

OBJECTIVE_FILE = "objective.safetensors"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
SUMMARY_FILE = "summary.json"


@dataclass
class Checkpoint:
    """What a resumed run needs: weights, optimizer state, step and the loss history so far."""

    step: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    losses: list[float]
    torch_rng: torch.Tensor | None
    # The objective's own modules and buffers (heads, momentum encoders, queues): empty for
    # plain reconstruction, whose whole state is the model.
    objective_state: dict[str, torch.Tensor] = field(default_factory=dict)


def save_checkpoint(run: Path, checkpoint: Checkpoint, keep: int = 2) -> Path:
    """Write a complete checkpoint and point `latest` at it; keep the newest `keep`."""
    root = run / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{checkpoint.step:08d}"
    temp = root / f".{name}.tmp"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    weights = weights_bytes(checkpoint.model_state)  # serialised once, written twice
    atomic_write_bytes(temp / WEIGHTS_FILE, weights)
    tensors, layout = _flatten_optimizer(checkpoint.optimizer_state)
    if checkpoint.torch_rng is not None:
        tensors["rng.torch"] = checkpoint.torch_rng
    save_weights(temp / "optimizer.safetensors", tensors)
    if checkpoint.objective_state:
        save_weights(temp / OBJECTIVE_FILE, checkpoint.objective_state)
    state = {"step": checkpoint.step, "losses": checkpoint.losses, "optimizer": layout}
    with atomic_write(temp / "state.json", "w") as f:
        json.dump(state, f)
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(temp, final)
    fsync_path(root)
    with atomic_write(root / LATEST_FILE, "w") as f:
        f.write(name)
    atomic_write_bytes(run / WEIGHTS_FILE, weights)
    _prune(root, keep, final)
    return final


def load_checkpoint(run: str | Path) -> Checkpoint:
    """Load the checkpoint named in RUN/checkpoints/latest."""
    root = Path(run) / CHECKPOINTS_DIR
    try:
        folder = root / (root / LATEST_FILE).read_text().strip()
    except FileNotFoundError:
        raise ValueError(f"{run}: no checkpoint to resume from") from None
    try:
        state = json.loads((folder / "state.json").read_text())
        tensors = load_weights(folder / "optimizer.safetensors")
        return Checkpoint(
            step=int(state["step"]),
            model_state=load_weights(folder / WEIGHTS_FILE),
            optimizer_state=_unflatten_optimizer(tensors, state["optimizer"]),
            losses=[float(v) for v in state["losses"]],
            torch_rng=tensors.get("rng.torch"),
            objective_state=_optional_weights(folder / OBJECTIVE_FILE),
        )
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise ValueError(f"{folder}: damaged checkpoint ({type(e).__name__}: {e})") from None


def _optional_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_weights(path) if path.is_file() else {}


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state tensors by flat key, and the JSON-ready rest (param groups, scalars)."""
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], layout: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in layout["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": layout["param_groups"]}


def _prune(root: Path, keep: int, newest: Path) -> None:
    """Delete all but the `keep` newest checkpoints up to `newest`; never `newest` itself."""
    steps = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name <= newest.name)
    for old in steps[: max(0, len(steps) - max(keep, 1))]:
        shutil.rmtree(old, ignore_errors=True)


def clear_run(run: Path) -> None:
    """Remove what an earlier run left in `run` (for --overwrite), keeping unrelated files."""
    for name in (CHECKPOINTS_DIR, TENSORBOARD_DIR):
        shutil.rmtree(run / name, ignore_errors=True)
    for name in (CONFIG_FILE, WEIGHTS_FILE, SUMMARY_FILE, GRID_FILE, LOSS_CURVE_FILE):
        (run / name).unlink(missing_ok=True)
