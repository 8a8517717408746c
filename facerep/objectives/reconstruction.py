"""Masked reconstruction: hide patches, predict their pixels (He et al., MAE, CVPR 2022).

The model is an autoencoder with MAE's calls (`forward(imgs, mask=...) -> (loss, pred, mask)`):
the ViT MAE encodes only the visible patches, the conv-AE zeroes the hidden ones in its input
(Pathak et al., Context Encoders, 2016). The masks are this objective's: `random` (MAE),
`face-regions` (a whole eye, the nose or the mouth, from the landmarks; FSFM's CRFR-P) or
`noise` (band-pass noise blobs; ColorMAE), drawn for the whole global batch from the step's
generator, so every process and every resumed run sees the same masks.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import nn

from facerep.models.losses import patch_norm_stats
from facerep.models.masking import PatchMask, make_mask
from facerep.models.strategies import MASKING_STRATEGIES, MaskingStrategy
from facerep.models.vit import patchify, unpatchify
from facerep.objectives.base import Objective, PretrainBatch, View


class MaskedViews:
    """Masks for reconstructing objectives, and their preview (a mixin, with no state of its own).

    Drawn for the whole global batch from the step's generator, then cut to this process's
    rows. The objective sets `self.model` (an autoencoder), `self.masking`, `self.mask_ratio`.
    """

    preview_name = "reconstructions"
    model: nn.Module
    masking: MaskingStrategy
    mask_ratio: float

    def masks(
        self, batch_size: int, landmarks: torch.Tensor | None, generator: torch.Generator
    ) -> PatchMask:
        """Masks by this objective's strategy and ratio for `batch_size` faces (their landmarks)."""
        return make_mask(
            self.masking,
            batch_size,
            self.model.grid_size,
            self.mask_ratio,
            patch_size=self.model.patch_size,
            landmarks=landmarks,
            generator=generator,
        )

    def batch_mask(self, batch: PretrainBatch, view: View) -> PatchMask:
        """The masks of this process's rows of `view`, drawn for the whole global batch."""
        landmarks = batch.gather(view.landmarks).cpu() if self.masking == "face-regions" else None
        mask = self.masks(batch.global_size, landmarks, batch.generator).rows(batch.mine)
        return mask.to(view.imgs.device)

    def preview(
        self,
        imgs: torch.Tensor,
        landmarks: torch.Tensor,
        generator: torch.Generator,
        mean: torch.Tensor,
        std: torch.Tensor,
    ) -> np.ndarray:
        """Original | masked | reconstruction rows for `[n, 3, S, S]` faces in [0, 1]."""
        mask = self.masks(len(imgs), landmarks, generator).mask.to(imgs.device)
        return reconstruction_grid(self.model, imgs, mask, mean, std)


def check_masking(objective: str, model: nn.Module, masking: MaskingStrategy) -> None:
    """A one-line ValueError unless `model` is an autoencoder and `masking` a known strategy."""
    if not hasattr(model, "forward_decoder"):
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise ValueError(
            f"objective {objective} needs an autoencoder (a model with a decoder); "
            f"{name} has none"
        )
    if masking not in MASKING_STRATEGIES:
        raise ValueError(f"unknown masking {masking!r}; choose one of {MASKING_STRATEGIES}")


class MaskedReconstruction(MaskedViews, Objective):
    """MAE's objective on any registered autoencoder.

    Args:
        model: an autoencoder (`forward_decoder`, `patch_size`, `grid_size`).
        masking: which patches to hide: "random", "face-regions" or "noise".
        mask_ratio: share of patches hidden, in [0, 1); 0 is a plain autoencoder.
    """

    def __init__(
        self, model: nn.Module, masking: MaskingStrategy = "random", mask_ratio: float = 0.75
    ):
        check_masking("reconstruction", model, masking)
        super().__init__(model)
        self.masking, self.mask_ratio = masking, mask_ratio

    def forward(self, batch: PretrainBatch) -> dict[str, torch.Tensor]:
        """The masked-patch reconstruction loss of this process's rows."""
        view = batch.views[0]
        # Passed as a PatchMask: its indices come along, so the model neither re-sorts nor checks.
        loss, _, _ = self.model(view.imgs, mask=self.batch_mask(batch, view))
        return {"loss": loss}


def reconstruction_grid(
    model: torch.nn.Module,
    imgs: torch.Tensor,
    mask: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> np.ndarray:
    """Rows of original | masked | reconstruction for `imgs` `[n, 3, H, W]` in [0, 1].

    As in MAE's figures: the original, what the encoder saw (masked patches greyed out), and
    the reconstruction with the visible patches pasted back. The model's `patch_size`,
    `in_chans` and `grid_size` lay its predicted patches out. Returns an `[n*H, 3*W, 3]` uint8
    image. Drawn under `torch.no_grad()` with the model as it is: the trainer puts it in eval
    mode for every objective's preview.
    """
    inputs = (imgs - mean) / std
    with torch.no_grad():
        _, pred, mask = model(inputs, mask=mask)
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
