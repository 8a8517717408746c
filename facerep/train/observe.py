"""Watching a run: TensorBoard scalars and reconstruction grids, and the figures left in RUN.

The reconstruction grid shows, per face, the original, what the encoder saw (masked patches
greyed out) and the reconstruction with the visible patches pasted back, as in MAE's figures.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facerep.files import atomic_write
from facerep.models.losses import patch_norm_stats
from facerep.models.vit import patchify, unpatchify

GRID_FILE = "reconstructions.png"
LOSS_CURVE_FILE = "loss_curve.png"
TENSORBOARD_DIR = "tb"


def reconstruction_grid(
    model: torch.nn.Module,
    imgs: torch.Tensor,
    mask: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> np.ndarray:
    """Rows of original | masked | reconstruction for `imgs` `[n, 3, H, W]` in [0, 1].

    The model's `patch_size`, `in_chans` and `grid_size` lay its predicted patches out.
    Returns an `[n*H, 3*W, 3]` uint8 image.
    """
    inputs = (imgs - mean) / std
    model.eval()
    with torch.no_grad():
        _, pred, mask = model(inputs, mask=mask)
    model.train()
    p = model.patch_size
    to_images = partial(unpatchify, p=p, channels=model.in_chans, grid=model.grid_size)
    pred = pred.float()
    if getattr(model, "norm_pix_loss", False):
        # The target was each input patch normalised: give the prediction its mean and spread back.
        # This inverts the target exactly (a perfect prediction gives the photo back, a grey one
        # grey). The tint an early run shows on grey faces is the model's: the target is taken
        # in ImageNet-normalised space, where a grey patch's channels differ by offsets divided
        # by the patch's own spread, which the decoder cannot see for a hidden patch.
        patch_mean, patch_std = patch_norm_stats(patchify(inputs, p))
        pred = pred * patch_std + patch_mean
    predicted = to_images(pred) * std + mean  # back from the model's input space to [0, 1]
    visible = mask[..., None] == 0
    target = patchify(imgs, p)
    recon = to_images(torch.where(visible, target, patchify(predicted, p)))
    masked = to_images(torch.where(visible, target, torch.full_like(target, 0.5)))
    rows = torch.cat([imgs, masked, recon.clamp(0, 1)], dim=3)  # [n, 3, S, 3S]
    grid = rows.permute(0, 2, 3, 1).reshape(-1, rows.shape[3], 3)
    return (grid.cpu().numpy() * 255).round().astype(np.uint8)


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
