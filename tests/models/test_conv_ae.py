"""The convolutional autoencoder baseline: input masking, the MAE's loss, a pooled embedding.

The invariants it shares with the MAE (loss over masked patches only, masked pixels never reach
the encoder, the loss falls when overfitting) are tested on both models in test_mae.py.
"""

from __future__ import annotations

import pytest
import torch

from facerep.models.conv_ae import ConvAutoencoder
from facerep.models.vit import patchify
from tests.models.conftest import fixed_mask, tiny_model


@pytest.fixture
def conv_ae() -> ConvAutoencoder:
    return tiny_model("conv-ae")


def test_shapes_follow_the_mae(conv_ae: ConvAutoencoder) -> None:
    imgs = torch.rand(2, 3, 32, 32)
    loss, pred, mask = conv_ae(imgs, mask_ratio=0.5)
    assert conv_ae.grid_size == (4, 4)
    assert pred.shape == (2, 16, 8 * 8 * 3) and mask.shape == (2, 16)
    assert torch.all(mask.sum(dim=1) == 8) and loss.ndim == 0
    latent, _ = conv_ae.forward_encoder(imgs)
    assert latent.shape == (2, 256, 2, 2)


def test_mask_pixels_covers_exactly_the_masked_patches(conv_ae: ConvAutoencoder) -> None:
    mask = fixed_mask(2, 16, 0.75)
    hidden = conv_ae.mask_pixels(mask)
    assert hidden.shape == (2, 1, 32, 32) and hidden.sum() == 2 * 12 * 64
    patches = patchify(hidden, 8)  # [2, 16, 64]: every pixel of a patch shares its mask value
    assert torch.equal(patches, mask[..., None].expand(-1, -1, 64))


def test_embed_pools_the_unmasked_bottleneck(conv_ae: ConvAutoencoder) -> None:
    imgs = torch.rand(3, 3, 32, 32)
    vectors = conv_ae.embed(imgs)
    assert vectors.shape == (3, 256)
    torch.testing.assert_close(vectors, conv_ae.forward_features(imgs).mean(dim=(2, 3)))
    with pytest.raises(ValueError, match="'mean' only"):
        conv_ae.embed(imgs, pool="cls")


def test_bad_sizes_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="halved 4 times"):
        ConvAutoencoder(img_size=40, patch_size=8, depth=4)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ConvAutoencoder(img_size=64, patch_size=12)
    with pytest.raises(ValueError, match="built for"):
        ConvAutoencoder(img_size=32)(torch.rand(1, 3, 64, 64))
