"""The reconstruction grid: its de-normalisation of norm-pix predictions is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from facerep.models.losses import patch_norm_stats
from facerep.models.masking import random_mask
from facerep.models.vit import patchify
from facerep.objectives.reconstruction import reconstruction_grid


class PerfectModel(nn.Module):
    """Predicts every patch exactly, in the target space its loss would use."""

    patch_size, in_chans = 8, 3

    def __init__(self, norm_pix_loss: bool, grid_size: tuple[int, int]):
        super().__init__()
        self.norm_pix_loss, self.grid_size = norm_pix_loss, grid_size

    def forward(self, imgs: torch.Tensor, mask: torch.Tensor):
        target = patchify(imgs, self.patch_size)
        if self.norm_pix_loss:
            mean, std = patch_norm_stats(target)
            target = (target - mean) / std
        return torch.zeros(()), target, mask


@pytest.mark.parametrize(("norm_pix_loss", "height"), [(False, 32), (True, 32), (True, 16)])
def test_a_perfect_prediction_reconstructs_the_original(norm_pix_loss: bool, height: int) -> None:
    grid_size = (height // 8, 4)  # 16 px high: a 2x4 grid, not square
    length = grid_size[0] * grid_size[1]
    imgs = torch.rand(2, 3, height, 32)
    mask = random_mask(2, length, 0.75, generator=torch.Generator().manual_seed(0)).mask
    mean = torch.tensor([0.5, 0.4, 0.3])[None, :, None, None]
    std = torch.tensor([0.2, 0.25, 0.3])[None, :, None, None]
    model = PerfectModel(norm_pix_loss, grid_size)
    grid = reconstruction_grid(model, imgs, mask, mean, std)
    assert grid.shape == (2 * height, 3 * 32, 3) and grid.dtype == np.uint8
    rows = grid.reshape(2, height, 3, 32, 3).astype(int)  # face, y, column, x, channel
    original, masked, recon = rows[:, :, 0], rows[:, :, 1], rows[:, :, 2]
    assert np.abs(recon - original).max() <= 1  # uint8 rounding only
    hidden = mask.reshape(2, *grid_size).repeat_interleave(8, 1).repeat_interleave(8, 2)
    hidden = hidden.bool().numpy()
    assert np.all(masked[hidden] == 128) and np.all(masked[~hidden] == original[~hidden])


def test_a_grey_face_predicted_perfectly_comes_back_grey() -> None:
    # ImageNet's per-channel statistics make a grey input's channels differ in the model's
    # space; the display must undo that exactly, so any tint shown is the model's own error.
    grey = torch.rand(2, 1, 32, 32).repeat(1, 3, 1, 1)
    mask = random_mask(2, 16, 0.75, generator=torch.Generator().manual_seed(0)).mask
    mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
    grid = reconstruction_grid(PerfectModel(True, (4, 4)), grey, mask, mean, std).astype(int)
    recon = grid[:, 64:]
    assert np.abs(recon[..., 0] - recon[..., 2]).max() <= 1
    assert np.abs(recon[..., 1] - recon[..., 2]).max() <= 1
