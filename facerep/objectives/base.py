"""What every pretraining objective is: a module that owns a model and turns a batch into a loss.

After timm's `TrainingTask` (a module that owns model and criterion and returns its loss terms)
and solo-learn's one-file-per-method layout: the trainer draws the views, calls the objective,
steps the optimizer and writes the run; the objective owns its masks, its extra modules (heads,
momentum encoders, queues, teachers) and what of them a checkpoint keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

MODEL_PREFIX = "model."


@dataclass
class View:
    """One augmented view of this process's faces, as the model takes them."""

    imgs: torch.Tensor  # [B, 3, S, S], normalised with the run's mean and std
    landmarks: torch.Tensor  # [B, 5, 2], pixels of the augmented crop
    # [B, D] the teacher's unit embedding of exactly these pixels (a run with --teacher)
    teacher: torch.Tensor | None = None


@dataclass
class PretrainBatch:
    """A step's input: one or more views of the same faces, and the step's randomness.

    `generator` draws the same numbers on every process (seeded by the step), so anything an
    objective draws for the whole global batch (masks) agrees across processes; it keeps its own
    rows with `mine`. `gather` rebuilds a global-batch tensor from every process's rows.
    """

    views: list[View]
    generator: torch.Generator
    global_size: int  # faces in the global batch, over all processes
    mine: slice  # this process's rows of the global batch
    gather: Callable[[torch.Tensor], torch.Tensor]


@runtime_checkable
class PretrainObjective(Protocol):
    """A pretraining method: `forward(batch)` returns named scalars, `"loss"` among them.

    Attributes:
        model: the network whose weights become the run's encoder (`RUN/model.safetensors`).
        num_views: augmented views of each face a step needs.
    """

    model: nn.Module
    num_views: int

    def forward(self, batch: PretrainBatch) -> dict[str, torch.Tensor]:
        """The loss to minimise (`"loss"`, a scalar with gradients) and detached scalars to log."""
        ...

    def after_step(self, step: int) -> None:
        """Called after each optimizer step (momentum updates, queues)."""
        ...

    def extra_state(self) -> dict[str, torch.Tensor]:
        """The objective's own tensors a checkpoint keeps, beyond the model's weights."""
        ...

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `extra_state` returned."""
        ...


@runtime_checkable
class Previews(Protocol):
    """An objective that can show what it learns as a picture (MAE's reconstruction grid)."""

    preview_name: str  # the figure's name: RUN/<name>.png and its TensorBoard tag

    def preview(
        self, imgs: torch.Tensor, landmarks: torch.Tensor, generator: torch.Generator,
        mean: torch.Tensor, std: torch.Tensor,
    ) -> np.ndarray:
        """`[n, 3, S, S]` faces in [0, 1] -> an `[H, W, 3]` uint8 picture; called in eval mode
        without gradients."""
        ...


class Objective(nn.Module):
    """The common ground of objectives: a model, one view, and nothing else to checkpoint.

    Subclasses add modules (they are saved by `extra_state`, everything but the model's own
    weights) and override `forward`, and `after_step` or `num_views` where they need to.
    """

    num_views = 1
    # Whether the run fits a PCA whitening of the embedding at the end (`whiten_components`):
    # False where the embedding is already a metric space the whitening would distort.
    fits_whitening = True

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def after_step(self, step: int) -> None:
        """Nothing to update between steps."""

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer of the objective outside its model."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(MODEL_PREFIX)}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load `extra_state`'s tensors; the model's weights are loaded on their own."""
        result = self.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(MODEL_PREFIX)]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"checkpoint of another objective: missing {missing}, "
                f"unexpected {result.unexpected_keys}"
            )
