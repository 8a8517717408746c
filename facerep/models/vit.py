"""Vision Transformer pieces for the masked autoencoder, in plain PyTorch.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), with the fixed 2-D sin-cos
position embeddings of He et al., "Masked Autoencoders Are Scalable Vision Learners" (CVPR 2022).
Submodule and parameter names follow timm's `PatchEmbed` and `Block` (`patch_embed.proj`,
`blocks.0.attn.qkv`, `blocks.0.mlp.fc1`, ...), so MAE's released state dicts map key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# MAE's ViTs use LayerNorm with eps 1e-6 (timm's ViT default), not PyTorch's 1e-5.
LAYER_NORM_EPS = 1e-6


def to_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    """`7` -> `(7, 7)`; a pair passes through. Grids and images are `(height, width)`."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def patch_grid(img_size: tuple[int, int], patch_size: int) -> tuple[int, int]:
    """`(h, w)` patches of a `(height, width)` image, refusing sizes the patches do not tile."""
    height, width = img_size
    if height % patch_size or width % patch_size:
        raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
    return height // patch_size, width // patch_size


def check_image_size(imgs: torch.Tensor, img_size: tuple[int, int]) -> None:
    """Refuse `[N, C, H, W]` images of another size than the model's `(height, width)`."""
    if tuple(imgs.shape[-2:]) != img_size:
        raise ValueError(
            f"images are {tuple(imgs.shape[-2:])} but the model was built for {img_size}"
            "; resize them or build the model with that img_size"
        )


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """Cut images into flattened patches, row by row (MAE's order).

    Args:
        imgs: `[N, C, H, W]`, with H and W multiples of `p`.
        p: patch side in pixels.

    Returns:
        `[N, L, p*p*C]` with `L = (H/p) * (W/p)`; each patch flattened as `(p, p, C)`.
    """
    n, c, height, width = imgs.shape
    if height % p or width % p:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {p}")
    h, w = height // p, width // p
    x = imgs.reshape(n, c, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, h * w, p * p * c)


def unpatchify(
    x: torch.Tensor, p: int, channels: int = 3, grid: tuple[int, int] | None = None
) -> torch.Tensor:
    """Inverse of `patchify`: `[N, L, p*p*C]` -> `[N, C, h*p, w*p]`.

    Args:
        x: flattened patches.
        p: patch side in pixels.
        channels: C.
        grid: `(h, w)` patches; a square grid (`L` a perfect square) when omitted.
    """
    n, length, _ = x.shape
    if grid is None:
        side = round(length**0.5)
        if side * side != length:
            raise ValueError(f"{length} patches do not form a square grid; pass grid=(h, w)")
        grid = (side, side)
    h, w = grid
    x = x.reshape(n, h, w, p, p, channels)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(n, channels, h * p, w * p)


def sincos_pos_embed_1d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Transformer sin-cos codes of positions: `[M]` -> `[M, embed_dim]`, sines then cosines."""
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.reshape(-1).double()[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_pos_embed_2d(
    embed_dim: int, grid: int | tuple[int, int], cls_token: bool = True
) -> torch.Tensor:
    """MAE's `get_2d_sincos_pos_embed` in PyTorch.

    Half the channels encode the patch column, half the row (MAE's order: column first), so
    the embedding of any grid cell is fixed and needs no training.

    Args:
        embed_dim: channels D, a multiple of 4.
        grid: `(h, w)` patches (or one int for a square grid).
        cls_token: prepend an all-zero row for the class token.

    Returns:
        `[1 + h*w, D]` float32 with `cls_token`, else `[h*w, D]`; rows in `patchify` order.
    """
    if embed_dim % 4:
        raise ValueError(f"sin-cos position codes need a width divisible by 4, got {embed_dim}")
    h, w = to_pair(grid)
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    emb = torch.cat(
        [sincos_pos_embed_1d(embed_dim // 2, cols), sincos_pos_embed_1d(embed_dim // 2, rows)],
        dim=1,
    )
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()


class PatchEmbed(nn.Module):
    """Patchify and project in one strided convolution: `[N, C, H, W]` -> `[N, L, D]`."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 112,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
    ):
        super().__init__()
        self.img_size = to_pair(img_size)
        self.patch_size = patch_size
        self.grid_size = patch_grid(self.img_size, patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """`imgs: [N, C, H, W]` -> `[N, L, D]`, patches in `patchify` order."""
        check_image_size(imgs, self.img_size)
        return self.proj(imgs).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention through `scaled_dot_product_attention` (fused where available)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x: [N, T, D]` -> `[N, T, D]`."""
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    """The transformer's two-layer GELU feed-forward: `D -> hidden -> D`."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x: [..., D]` -> `[..., D]`."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: `x + attn(norm(x))`, then `x + mlp(norm(x))`."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x: [N, T, D]` -> `[N, T, D]`."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
