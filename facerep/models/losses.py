"""Masked reconstruction losses, shared by every autoencoder (ViT MAE and the conv baseline).

He et al., "Masked Autoencoders Are Scalable Vision Learners" (CVPR 2022): mean squared error on
the masked patches, against each patch normalised to zero mean and unit variance
(`norm_pix_loss`), MAE's setting for its best features.
"""

from __future__ import annotations

import torch

from facerep.models.vit import patchify

# MAE's per-patch normalisation adds this to the variance so flat patches (a uniform background)
# do not divide by zero.
NORM_PIX_EPS = 1e-6


def patch_norm_stats(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each patch's mean and spread for MAE's per-patch normalisation (`norm_pix_loss`).

    Args:
        patches: `[N, L, K]` flattened patches (`patchify`).

    Returns:
        mean `[N, L, 1]` and std `[N, L, 1]`: the target is `(patches - mean) / std`, and a
        prediction maps back to pixels as `pred * std + mean`.
    """
    mean = patches.mean(dim=-1, keepdim=True)
    std = (patches.var(dim=-1, keepdim=True) + NORM_PIX_EPS) ** 0.5
    return mean, std


def reconstruction_loss(
    imgs: torch.Tensor,
    pred: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int,
    norm_pix_loss: bool = True,
) -> torch.Tensor:
    """Mean squared error per patch, averaged over the masked patches.

    With nothing masked (ratio 0) every patch counts, so the same loss serves a plain
    autoencoder.

    Args:
        imgs: `[N, 3, H, W]` targets.
        pred: `[N, L, p*p*3]` predicted patches.
        mask: `[N, L]`, 1 = masked.
        patch_size: p.
        norm_pix_loss: compare against each patch normalised to zero mean and unit variance
            (MAE's better-representation setting); else raw pixels.

    Returns:
        A scalar.
    """
    target = patchify(imgs, patch_size)
    if norm_pix_loss:
        mean, std = patch_norm_stats(target)
        target = (target - mean) / std
    loss = ((pred - target) ** 2).mean(dim=-1)
    weights = torch.where(mask.sum() > 0, mask, torch.ones_like(mask))
    return (loss * weights).sum() / weights.sum()
