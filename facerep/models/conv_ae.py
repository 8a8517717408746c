"""A small convolutional autoencoder: the baseline the masked autoencoder has to beat.

It takes the MAE's calls (`forward(imgs, mask_ratio, mask) -> (loss, pred, mask)`, `embed`), so
one trainer and one evaluation run both. Masking is input masking, as in Pathak et al.,
"Context Encoders: Feature Learning by Inpainting" (CVPR 2016): the masked patches are zeroed
in the input, the whole image goes through the convolutions, and the loss is the MAE's
(`reconstruction_loss`): masked patches only, or every patch at ratio 0, where this is a plain
autoencoder. Same mask, same target, same loss: only the architecture differs from the MAE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn

from facerep.models.config import ModelConfig, Pool
from facerep.models.losses import reconstruction_loss
from facerep.models.masking import PatchMask, resolve_mask
from facerep.models.vit import check_image_size, patch_grid, patchify, to_pair

# GroupNorm rather than BatchNorm: zeroed patches and small batches would skew batch statistics.
MAX_NORM_GROUPS = 8


def conv_stage(in_channels: int, out_channels: int, transpose: bool = False) -> nn.Sequential:
    """One resolution step: a stride-2 4x4 (transposed) convolution, GroupNorm, GELU."""
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    return nn.Sequential(
        conv(in_channels, out_channels, kernel_size=4, stride=2, padding=1),
        nn.GroupNorm(math.gcd(MAX_NORM_GROUPS, out_channels), out_channels),
        nn.GELU(),
    )


@dataclass(frozen=True)
class ConvAEConfig(ModelConfig):
    """A convolutional autoencoder's shape: stride-2 stages down to `embed_dim` channels."""

    kind = "conv_ae"
    img_size: int = 64
    patch_size: int = 8
    embed_dim: int = 256
    depth: int = 4  # stride-2 stages: 64 px -> a 4x4 bottleneck
    norm_pix_loss: bool = True  # the MAE's per-patch normalised targets, so only the model differs

    def build(self) -> ConvAutoencoder:
        """A freshly initialised `ConvAutoencoder` with this config as `model.config`."""
        model = ConvAutoencoder(
            img_size=self.img_size,
            patch_size=self.patch_size,
            embed_dim=self.embed_dim,
            depth=self.depth,
            norm_pix_loss=self.norm_pix_loss,
        )
        model.config = self
        return model


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder with the MAE's forward signature.

    Each of `depth` stages halves the resolution and doubles the width, ending at `embed_dim`
    channels; the decoder mirrors it and a 3x3 convolution predicts the pixels.

    Args:
        img_size: input side in pixels, a multiple of `patch_size` and of `2**depth`.
        patch_size: side of the masked patches p (and of the loss's patches).
        in_chans: image channels.
        embed_dim: bottleneck channels (the embedding size `embed` returns).
        depth: downsampling stages.
        norm_pix_loss: reconstruct per-patch normalised pixels, as the MAE does by default.
    """

    def __init__(
        self,
        img_size: int = 64,
        patch_size: int = 8,
        in_chans: int = 3,
        embed_dim: int = 256,
        depth: int = 4,
        norm_pix_loss: bool = True,
    ):
        super().__init__()
        self.img_size = to_pair(img_size)
        self.grid_size = patch_grid(self.img_size, patch_size)
        if self.img_size[0] % 2**depth or self.img_size[1] % 2**depth:
            raise ValueError(f"img_size {img_size} cannot be halved {depth} times (depth)")
        if embed_dim % 2 ** (depth - 1):
            raise ValueError(f"embed_dim {embed_dim} cannot be halved {depth - 1} times")
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.embed_dim = embed_dim
        self.norm_pix_loss = norm_pix_loss

        widths = [embed_dim // 2 ** (depth - 1 - i) for i in range(depth)]
        self.encoder = nn.Sequential(
            *[conv_stage(c_in, c_out) for c_in, c_out in pairwise([in_chans, *widths])]
        )
        back = [*widths[::-1], widths[0]]  # the last stage keeps the first width, at full size
        self.decoder = nn.Sequential(
            *[conv_stage(c_in, c_out, transpose=True) for c_in, c_out in pairwise(back)]
        )
        self.decoder_pred = nn.Conv2d(back[-1], in_chans, kernel_size=3, padding=1)

    def forward_encoder(
        self,
        imgs: torch.Tensor,
        mask_ratio: float = 0.75,
        mask: torch.Tensor | PatchMask | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero the masked patches and encode the whole image.

        Args:
            imgs: `[N, 3, H, W]`.
            mask_ratio: fraction hidden by a fresh uniform random mask; ignored with `mask`.
            mask: a `PatchMask` from `masking.py` (used as it is), or an `[N, L]` 0/1 tensor
                (1 = masked) made elsewhere, the same count in every row (checked).

        Returns:
            latent `[N, D, H / 2**depth, W / 2**depth]` and mask `[N, L]` float.
        """
        check_image_size(imgs, self.img_size)
        mask = resolve_mask(mask, len(imgs), self.num_patches, mask_ratio, imgs.device).mask
        mask = mask.to(imgs.dtype)
        return self.encoder(imgs * (1 - self.mask_pixels(mask))), mask

    def mask_pixels(self, mask: torch.Tensor) -> torch.Tensor:
        """Spread a patch mask over pixels: `[N, L]` -> `[N, 1, H, W]`."""
        p = self.patch_size
        grid = mask.reshape(mask.shape[0], 1, *self.grid_size)
        return grid.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)

    def forward_decoder(self, latent: torch.Tensor) -> torch.Tensor:
        """`latent [N, D, h, w]` -> pred `[N, L, p*p*3]`, patches in image order."""
        return patchify(self.decoder_pred(self.decoder(latent)), self.patch_size)

    def forward_loss(
        self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The MAE's loss: see `reconstruction_loss`."""
        return reconstruction_loss(imgs, pred, mask, self.patch_size, self.norm_pix_loss)

    def forward(
        self,
        imgs: torch.Tensor,
        mask_ratio: float = 0.75,
        mask: torch.Tensor | PatchMask | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`imgs [N, 3, H, W]` -> loss (scalar), pred `[N, L, p*p*3]`, mask `[N, L]`."""
        loss, pred, mask, _ = self.forward_pooled(imgs, mask_ratio, mask)
        return loss, pred, mask

    def forward_pooled(
        self,
        imgs: torch.Tensor,
        mask_ratio: float = 0.75,
        mask: torch.Tensor | PatchMask | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`forward`, plus the masked input's bottleneck averaged over space `[N, D]`, from the
        same pass."""
        latent, mask = self.forward_encoder(imgs, mask_ratio, mask)
        pred = self.forward_decoder(latent)
        return self.forward_loss(imgs, pred, mask), pred, mask, latent.mean(dim=(2, 3))

    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """The unmasked image's bottleneck: `[N, 3, H, W]` -> `[N, D, h, w]`."""
        return self.encoder(imgs)

    def forward_tokens(self, imgs: torch.Tensor) -> torch.Tensor:
        """Bottleneck cells as tokens, row by row: `[N, 3, H, W]` -> `[N, h*w, D]`."""
        return self.forward_features(imgs).flatten(2).transpose(1, 2)

    def embed(self, imgs: torch.Tensor, pool: Pool = "mean") -> torch.Tensor:
        """One vector per image, the bottleneck averaged over space: `[N, 3, H, W]` -> `[N, D]`.

        `pool` is there so callers treat both models alike; only "mean" exists (no class token).
        """
        if pool != "mean":
            raise ValueError(f"a convolutional autoencoder pools by 'mean' only, got {pool!r}")
        return self.forward_features(imgs).mean(dim=(2, 3))
