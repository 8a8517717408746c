"""Helpers shared by the model tests: fixed masks and a tiny overfitting loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facerep.models import create_model
from facerep.models.masking import random_mask

# The conv baseline takes the MAE's calls, so the MAE's invariants are checked on both.
AUTOENCODERS = ["vit-test", "conv-ae"]


def tiny_model(name: str, **overrides: object) -> torch.nn.Module:
    """A seeded model at 32 px (a 4x4 grid of 8 px patches): `vit-test` or `conv-ae`."""
    torch.manual_seed(0)
    return create_model(name, img_size=32, **overrides)


def fixed_mask(n: int, length: int, ratio: float, seed: int = 0) -> torch.Tensor:
    return random_mask(n, length, ratio, generator=torch.Generator().manual_seed(seed)).mask


def overfit(model: torch.nn.Module, steps: int = 30, lr: float = 3e-3) -> list[float]:
    """Losses over `steps` AdamW steps on 4 fixed smooth 32 px images under one fixed mask."""
    torch.manual_seed(0)
    imgs = F.interpolate(torch.rand(4, 3, 4, 4), size=32, mode="bilinear", align_corners=False)
    mask = fixed_mask(4, model.num_patches, 0.5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, _, _ = model(imgs, mask=mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
