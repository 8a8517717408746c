"""Masked autoencoder with a ViT encoder, after MAE's `models_mae.py`.

He et al., "Masked Autoencoders Are Scalable Vision Learners" (CVPR 2022). The encoder sees only
the visible patches (plus a class token); a light decoder fills in mask tokens and predicts the
pixels of every patch; the loss counts the masked patches. The mask comes from `masking.py`: the
built-in uniform random mask, or any `[N, L]` mask passed in (face-region, noise), so one
trainer drives every strategy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from facerep.models.config import ModelConfig, Pool
from facerep.models.losses import reconstruction_loss
from facerep.models.masking import PatchMask, resolve_mask
from facerep.models.vit import LAYER_NORM_EPS, Block, PatchEmbed, sincos_pos_embed_2d


@dataclass(frozen=True)
class MAEConfig(ModelConfig):
    """A ViT masked autoencoder's shape; sizes follow the ViT family (see the registry)."""

    kind = "mae"
    depth: int = 12  # encoder blocks
    num_heads: int = 12  # encoder heads; ViT keeps 64 channels per head
    decoder_embed_dim: int = 512  # the decoder is thrown away, so it can be narrow (MAE: 512)
    decoder_depth: int = 8  # MAE: 8 blocks; 1-4 suffice for linear-probe quality at small scale
    decoder_num_heads: int = 16  # decoder heads
    mlp_ratio: float = 4.0  # MLP hidden width over block width, the ViT standard
    norm_pix_loss: bool = True  # per-patch normalised reconstruction targets: MAE's better features

    def build(self) -> MaskedAutoencoder:
        """A freshly initialised `MaskedAutoencoder` with this config as `model.config`."""
        kwargs = {k: v for k, v in asdict(self).items() if k != "name"}
        model = MaskedAutoencoder(**kwargs)
        model.config = self
        return model


class MaskedAutoencoder(nn.Module):
    """ViT masked autoencoder: `forward(imgs, mask_ratio) -> (loss, pred, mask)`.

    Args:
        img_size: input side in pixels (faces are square aligned crops).
        patch_size: patch side p; `img_size` must be a multiple.
        in_chans: image channels.
        embed_dim: encoder width D (the embedding size `embed` returns).
        depth: encoder blocks.
        num_heads: encoder attention heads.
        decoder_embed_dim: decoder width.
        decoder_depth: decoder blocks.
        decoder_num_heads: decoder attention heads.
        mlp_ratio: MLP hidden width over block width.
        norm_pix_loss: reconstruct per-patch normalised pixels (MAE's default for its best
            features); False reconstructs raw pixels, easier to look at.
    """

    def __init__(
        self,
        img_size: int = 112,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_pix_loss: bool = True,
    ):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.grid_size = self.patch_embed.grid_size
        self.num_patches = self.patch_embed.num_patches
        self.embed_dim = embed_dim
        self.norm_pix_loss = norm_pix_loss

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # Fixed sin-cos codes, kept as frozen parameters (not buffers) so MAE's checkpoints load.
        self.pos_embed = nn.Parameter(
            sincos_pos_embed_2d(embed_dim, self.grid_size)[None], requires_grad=False
        )
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(
            sincos_pos_embed_2d(decoder_embed_dim, self.grid_size)[None], requires_grad=False
        )
        self.decoder_blocks = nn.ModuleList(
            [Block(decoder_embed_dim, decoder_num_heads, mlp_ratio) for _ in range(decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=LAYER_NORM_EPS)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """MAE's init: xavier-uniform linears and patch projection, N(0, 0.02) tokens."""
        # The patch projection is a linear map of flattened patches, so it gets a linear's init.
        weight = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(_init_linear_and_norm)

    def forward_encoder(
        self,
        imgs: torch.Tensor,
        mask_ratio: float = 0.75,
        mask: torch.Tensor | PatchMask | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the visible patches.

        Args:
            imgs: `[N, 3, H, W]`.
            mask_ratio: fraction hidden by a fresh uniform random mask; ignored with `mask`.
            mask: a `PatchMask` from `masking.py` (used as it is), or an `[N, L]` 0/1 tensor
                (1 = masked) made elsewhere, the same count in every row (checked).

        Returns:
            latent `[N, 1 + L_visible, D]` (class token first), mask `[N, L]` float,
            ids_restore `[N, L]`.
        """
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        n, length, dim = x.shape
        patch_mask = resolve_mask(mask, n, length, mask_ratio, device=x.device)
        ids_keep = patch_mask.ids_keep[..., None].expand(-1, -1, dim)
        latent = self.encode_tokens(torch.gather(x, 1, ids_keep))
        return latent, patch_mask.mask.to(x.dtype), patch_mask.ids_restore

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Prepend the class token and apply the blocks: `[N, T, D]` -> `[N, 1 + T, D]` normed."""
        cls_token = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls_token, x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict every patch from the visible tokens.

        Args:
            latent: `[N, 1 + L_visible, D]` from `forward_encoder`.
            ids_restore: `[N, L]` from `forward_encoder`.

        Returns:
            pred `[N, L, p*p*3]`, patches in image order.
        """
        x = self.decoder_embed(latent)
        n, length = ids_restore.shape
        mask_tokens = self.mask_token.expand(n, length + 1 - x.shape[1], -1)
        patches = torch.cat([x[:, 1:], mask_tokens], dim=1)
        index = ids_restore[..., None].expand(-1, -1, x.shape[2])
        patches = torch.gather(patches, 1, index)
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def forward_loss(
        self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean squared error over masked patches: `imgs [N, 3, H, W]`, `pred [N, L, p*p*3]`,
        `mask [N, L]` -> scalar. See `reconstruction_loss`."""
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
        """`forward`, plus the mean of the visible patch tokens `[N, D]` (the masked view's
        embedding, for objectives that also compare views) from the same pass."""
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, mask)
        pred = self.forward_decoder(latent, ids_restore)
        loss = self.forward_loss(imgs, pred, mask)
        return loss, pred, mask, latent[:, 1:].mean(dim=1)

    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """Every token of the unmasked image: `[N, 3, H, W]` -> `[N, 1 + L, D]`, class first."""
        return self.encode_tokens(self.patch_embed(imgs) + self.pos_embed[:, 1:])

    def forward_tokens(self, imgs: torch.Tensor) -> torch.Tensor:
        """Patch tokens without the class token, image order: `[N, 3, H, W]` -> `[N, L, D]`."""
        return self.forward_features(imgs)[:, 1:]

    def embed(self, imgs: torch.Tensor, pool: Pool = "mean") -> torch.Tensor:
        """One vector per image, from the whole (unmasked) image: `[N, 3, H, W]` -> `[N, D]`.

        Args:
            imgs: `[N, 3, H, W]` in the range the model was trained on.
            pool: "mean" averages the patch tokens (MAE's choice for fine-tuning and probes);
                "cls" takes the class token.
        """
        tokens = self.forward_features(imgs)
        if pool == "mean":
            return tokens[:, 1:].mean(dim=1)
        if pool == "cls":
            return tokens[:, 0]
        raise ValueError(f"unknown pool {pool!r}; choose 'mean' or 'cls'")


def _init_linear_and_norm(module: nn.Module) -> None:
    """MAE's `_init_weights`: xavier-uniform linears with zero bias, LayerNorms at identity."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
