"""ViT pieces: patchify round trips, MAE's sin-cos position codes, patch embedding, blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerep.models.vit import (
    Attention,
    Block,
    PatchEmbed,
    patchify,
    sincos_pos_embed_2d,
    unpatchify,
)


def mae_reference_pos_embed(embed_dim: int, grid_size: int) -> np.ndarray:
    """MAE's `get_2d_sincos_pos_embed(..., cls_token=True)` (`util/pos_embed.py`), in numpy."""

    def one_d(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])
    emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    return np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)


@pytest.mark.parametrize(("size", "p"), [((32, 32), 8), ((112, 112), 16), ((16, 24), 4)])
def test_unpatchify_inverts_patchify(size: tuple[int, int], p: int) -> None:
    imgs = torch.rand(2, 3, *size)
    x = patchify(imgs, p)
    h, w = size[0] // p, size[1] // p
    assert x.shape == (2, h * w, p * p * 3)
    assert torch.equal(unpatchify(x, p, grid=(h, w)), imgs)


def test_patchify_goes_row_by_row_with_channels_last() -> None:
    imgs = torch.rand(1, 3, 16, 16)
    x = patchify(imgs, 8)
    assert torch.equal(x[0, 1], imgs[0, :, :8, 8:].permute(1, 2, 0).reshape(-1))
    assert torch.equal(x[0, 2], imgs[0, :, 8:, :8].permute(1, 2, 0).reshape(-1))


def test_patchify_and_unpatchify_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        patchify(torch.rand(1, 3, 30, 32), 8)
    with pytest.raises(ValueError, match="square grid"):
        unpatchify(torch.rand(1, 6, 48), 4)


@pytest.mark.parametrize(("dim", "grid"), [(32, 4), (192, 8), (768, 7)])
def test_sincos_pos_embed_matches_mae(dim: int, grid: int) -> None:
    emb = sincos_pos_embed_2d(dim, grid, cls_token=True)
    assert emb.shape == (1 + grid * grid, dim) and emb.dtype == torch.float32
    np.testing.assert_allclose(emb.numpy(), mae_reference_pos_embed(dim, grid), atol=1e-6)
    assert sincos_pos_embed_2d(dim, grid, cls_token=False).shape == (grid * grid, dim)


def test_sincos_pos_embed_rectangular_grid_and_width_check() -> None:
    emb = sincos_pos_embed_2d(16, (2, 3), cls_token=False)
    assert emb.shape == (6, 16)
    assert len({tuple(row) for row in emb.tolist()}) == 6  # every cell coded differently
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed_2d(30, 4)


def test_patch_embed_shapes_and_size_check() -> None:
    embed = PatchEmbed(img_size=32, patch_size=8, embed_dim=24)
    assert embed.grid_size == (4, 4) and embed.num_patches == 16
    assert embed(torch.rand(2, 3, 32, 32)).shape == (2, 16, 24)
    with pytest.raises(ValueError, match="built for"):
        embed(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="not a multiple"):
        PatchEmbed(img_size=30, patch_size=8)


def test_attention_matches_explicit_softmax_attention() -> None:
    torch.manual_seed(0)
    attn = Attention(dim=8, num_heads=2)
    x = torch.randn(2, 5, 8)
    q, k, v = attn.qkv(x).reshape(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(attn(x), expected)
    with pytest.raises(ValueError, match="num_heads"):
        Attention(dim=10, num_heads=3)


def test_block_keeps_shape_and_uses_timm_names() -> None:
    block = Block(dim=16, num_heads=2)
    assert block(torch.randn(3, 7, 16)).shape == (3, 7, 16)
    names = set(dict(block.named_parameters()))
    assert {"norm1.weight", "attn.qkv.weight", "attn.proj.bias", "mlp.fc1.weight"} <= names
    assert block.mlp.fc1.out_features == 64 and block.norm1.eps == 1e-6
