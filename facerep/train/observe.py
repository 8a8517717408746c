"""Watching a run: TensorBoard scalars and images, and the figures left in RUN.

The objective draws its own figure (`facerep.objectives.base.Previews`: MAE's reconstruction
grid); this module saves and logs it, and plots the loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from facerep.files import atomic_write

GRID_FILE = "reconstructions.png"  # reconstruction's figure, which --overwrite clears
LOSS_CURVE_FILE = "loss_curve.png"
TENSORBOARD_DIR = "tb"


def save_png(path: Path, image: np.ndarray) -> None:
    """Save an RGB uint8 array as PNG, atomically."""
    with atomic_write(path, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")


def epoch_means(losses: list[float], steps_per_epoch: int) -> list[float]:
    """Mean loss of each completed epoch; a partial last epoch is left out."""
    size = max(steps_per_epoch, 1)
    epochs = len(losses) // size
    if epochs == 0:
        return []
    return np.asarray(losses[: epochs * size]).reshape(epochs, size).mean(1).tolist()


def save_loss_curve(path: Path, losses: list[float], steps_per_epoch: int) -> None:
    """Plot the per-step loss (light) and its per-epoch mean (bold) against epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, len(losses) + 1) / max(steps_per_epoch, 1)
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=120)
    axis.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="step")
    per_epoch = epoch_means(losses, steps_per_epoch)
    if per_epoch:
        epochs = np.arange(1, len(per_epoch) + 1)
        axis.plot(epochs, per_epoch, color="tab:blue", linewidth=2, label="epoch mean")
    axis.set_xlabel("epoch")
    axis.set_ylabel("masked reconstruction loss")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png")
    plt.close(figure)


class TensorBoardLog:
    """Scalars and images for TensorBoard under RUN/tb (main process only)."""

    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))

    def scalars(self, step: int, **values: float) -> None:
        """Log named scalars at `step`, under `train/`."""
        for name, value in values.items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        """Log an `[H, W, 3]` uint8 image."""
        self.writer.add_image(name, image, step, dataformats="HWC")

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
