"""The convolutional autoencoder baseline: input masking, the MAE's loss, a pooled embedding."""

from __future__ import annotations

import pytest
import torch

from facerep.models import create_model
from facerep.models.conv_ae import ConvAutoencoder
from tests.models.conftest import fixed_mask, overfit


@pytest.fixture
def conv_ae() -> ConvAutoencoder:
    torch.manual_seed(0)
    return create_model("conv-ae", img_size=32)


def test_shapes_follow_the_mae(conv_ae: ConvAutoencoder) -> None:
    imgs = torch.rand(2, 3, 32, 32)
    loss, pred, mask = conv_ae(imgs, mask_ratio=0.5)
    assert conv_ae.grid_size == (4, 4)
    assert pred.shape == (2, 16, 8 * 8 * 3) and mask.shape == (2, 16)
    assert torch.all(mask.sum(dim=1) == 8) and loss.ndim == 0
    latent, _ = conv_ae.forward_encoder(imgs)
    assert latent.shape == (2, 256, 2, 2)


def test_masked_pixels_never_reach_the_encoder(conv_ae: ConvAutoencoder) -> None:
    imgs = torch.rand(2, 3, 32, 32)
    mask = fixed_mask(2, 16, 0.75)
    hidden = conv_ae.mask_pixels(mask)
    assert hidden.shape == (2, 1, 32, 32) and hidden.sum() == 2 * 12 * 64
    scribbled = torch.where(hidden.bool(), torch.rand_like(imgs), imgs)
    latent, returned = conv_ae.forward_encoder(imgs, mask=mask)
    assert torch.equal(returned, mask)
    torch.testing.assert_close(conv_ae.forward_encoder(scribbled, mask=mask)[0], latent)


def test_loss_counts_masked_patches_only(conv_ae: ConvAutoencoder) -> None:
    imgs = torch.rand(2, 3, 32, 32)
    mask = fixed_mask(2, 16, 0.5)
    pred = torch.randn(2, 16, 192)
    loss = conv_ae.forward_loss(imgs, pred, mask)
    changed = pred + 5.0 * (1 - mask)[..., None]
    assert conv_ae.forward_loss(imgs, changed, mask) == pytest.approx(loss.item())


def test_embed_pools_the_unmasked_bottleneck(conv_ae: ConvAutoencoder) -> None:
    imgs = torch.rand(3, 3, 32, 32)
    vectors = conv_ae.embed(imgs)
    assert vectors.shape == (3, 256)
    torch.testing.assert_close(vectors, conv_ae.forward_features(imgs).mean(dim=(2, 3)))
    with pytest.raises(ValueError, match="'mean' only"):
        conv_ae.embed(imgs, pool="cls")


def test_loss_falls_when_overfitting_a_tiny_batch(conv_ae: ConvAutoencoder) -> None:
    losses = overfit(conv_ae)
    assert losses[-1] < 0.3 * losses[0], losses


def test_bad_sizes_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="halved 4 times"):
        ConvAutoencoder(img_size=40, patch_size=8, depth=4)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ConvAutoencoder(img_size=64, patch_size=12)
    with pytest.raises(ValueError, match="built for"):
        ConvAutoencoder(img_size=32)(torch.rand(1, 3, 64, 64))
