"""The masked autoencoder: every registered model builds and trains; MAE's invariants hold."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facerep.models import MaskedAutoencoder, create_model, list_models
from facerep.models.masking import num_masked, random_mask
from facerep.models.vit import patchify
from tests.models.conftest import AUTOENCODERS, fixed_mask, overfit, tiny_model

# Encoder sizes in millions of parameters (class token and patch embedding included, fixed
# position codes not): ViT-Ti 5.7M and ViT-S 22M with their 1000-class heads (DeiT), ViT-B 86M
# (the ViT paper, Table 1); ours have no head, and an 8 px patch embedding is smaller than 16 px.
ENCODER_PARAMS_M = {
    "mae_vit_tiny_p8_64": (5.2, 5.7),
    "mae_vit_tiny_p16_112": (5.2, 5.7),
    "mae_vit_small_p8_64": (21.0, 22.0),
    "mae_vit_small_p16_112": (21.0, 22.0),
    "mae_vit_base_p16_112": (85.0, 87.0),
}
# Forward + backward of ViT-B's 112M parameters costs seconds on 2 CPU cores: built and counted,
# its forward checked without gradients.
NO_BACKWARD = {"mae_vit_base_p16_112"}


def encoder_params(model: torch.nn.Module) -> int:
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if p.requires_grad and not name.startswith(("decoder", "mask_token"))
    )


@pytest.mark.parametrize("name", [*list_models("mae_*"), *list_models("conv_ae_*")])
def test_every_registered_model_builds_runs_and_backpropagates(name: str) -> None:
    # The same layers at 32 px (4 to 16 patches) run fast on CPU and count the same parameters:
    # only the fixed position codes depend on the image size.
    torch.manual_seed(0)
    model = create_model(name, img_size=32)
    if name in ENCODER_PARAMS_M:
        low, high = ENCODER_PARAMS_M[name]
        assert low <= encoder_params(model) / 1e6 <= high
    imgs = torch.rand(2, 3, 32, 32)
    p, length = model.patch_size, model.num_patches
    with torch.set_grad_enabled(name not in NO_BACKWARD):
        loss, pred, mask = model(imgs, mask_ratio=0.75)
    assert pred.shape == (2, length, p * p * 3) and mask.shape == (2, length)
    assert torch.all(mask.sum(dim=1) == num_masked(length, 0.75))
    assert loss.ndim == 0 and torch.isfinite(loss)
    if name not in NO_BACKWARD:
        loss.backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with torch.no_grad():
        assert model.embed(imgs).shape == (2, model.embed_dim)


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_loss_counts_masked_patches_only(name: str) -> None:
    model = tiny_model(name)
    imgs = torch.rand(2, 3, 32, 32)
    mask = fixed_mask(2, 16, 0.5)
    pred = torch.randn(2, 16, 192)
    loss = model.forward_loss(imgs, pred, mask)
    visible_changed = pred + 5.0 * (1 - mask)[..., None]
    masked_changed = pred + 5.0 * mask[..., None]
    assert model.forward_loss(imgs, visible_changed, mask) == pytest.approx(loss.item())
    assert model.forward_loss(imgs, masked_changed, mask) > loss + 1.0


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_masked_pixels_never_reach_the_encoder(name: str) -> None:
    model = tiny_model(name)
    imgs = torch.rand(2, 3, 32, 32)
    mask = fixed_mask(2, 16, 0.75)
    hidden = mask.reshape(2, 1, 4, 4).repeat_interleave(8, 2).repeat_interleave(8, 3).bool()
    latent, returned = model.forward_encoder(imgs, mask=mask)[:2]
    assert torch.equal(returned, mask)
    masked_scribbled = torch.where(hidden, torch.rand_like(imgs), imgs)
    torch.testing.assert_close(model.forward_encoder(masked_scribbled, mask=mask)[0], latent)
    visible_scribbled = torch.where(hidden, imgs, torch.rand_like(imgs))
    assert not torch.allclose(model.forward_encoder(visible_scribbled, mask=mask)[0], latent)


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_a_patch_mask_gives_what_its_tensor_gives(name: str) -> None:
    # The trainer passes its strategies' PatchMask (indices included, shuffled order); an
    # external tensor is re-indexed in image order. The visible set, and so the result, agree.
    model = tiny_model(name)
    imgs = torch.rand(3, 3, 32, 32)
    patch_mask = random_mask(3, 16, 0.5, generator=torch.Generator().manual_seed(0))
    loss, pred, mask = model(imgs, mask=patch_mask)
    loss_tensor, pred_tensor, mask_tensor = model(imgs, mask=patch_mask.mask)
    assert torch.equal(mask, mask_tensor) and torch.equal(mask, patch_mask.mask)
    torch.testing.assert_close(pred, pred_tensor)
    torch.testing.assert_close(loss, loss_tensor)


# Raw pixels fall fast (mean colours first); normalised patches start near 1.0, the loss of
# predicting each patch's mean, and must learn shapes, so 30 steps move a ViT's less.
@pytest.mark.parametrize(
    ("name", "norm_pix_loss", "factor"),
    [("vit-test", False, 0.3), ("vit-test", True, 0.8), ("conv-ae", True, 0.3)],
)
def test_loss_falls_when_overfitting_a_tiny_batch(
    name: str, norm_pix_loss: bool, factor: float
) -> None:
    losses = overfit(tiny_model(name, norm_pix_loss=norm_pix_loss))
    assert losses[-1] < factor * losses[0], losses


@pytest.fixture
def vit_test() -> MaskedAutoencoder:
    torch.manual_seed(0)
    return create_model("vit-test")


def test_position_embeddings_are_fixed(vit_test: MaskedAutoencoder) -> None:
    assert vit_test.pos_embed.shape == (1, 1 + 16, 32)
    assert not vit_test.pos_embed.requires_grad
    assert not vit_test.decoder_pos_embed.requires_grad
    loss, _, _ = vit_test(torch.rand(2, 3, 32, 32))
    loss.backward()
    assert vit_test.pos_embed.grad is None


def test_raw_pixel_loss_is_the_mean_squared_error_of_masked_patches() -> None:
    model = create_model("vit-test", norm_pix_loss=False)
    imgs = torch.rand(2, 3, 32, 32)
    mask = fixed_mask(2, 16, 0.25)
    pred = torch.rand(2, 16, 192)
    per_patch = ((pred - patchify(imgs, 8)) ** 2).mean(dim=-1)
    expected = per_patch[mask.bool()].mean()
    torch.testing.assert_close(model.forward_loss(imgs, pred, mask), expected)
    all_visible = torch.zeros(2, 16)  # ratio 0: a plain autoencoder, every patch counts
    torch.testing.assert_close(model.forward_loss(imgs, pred, all_visible), per_patch.mean())


def test_external_mask_is_honoured(vit_test: MaskedAutoencoder) -> None:
    imgs = torch.rand(3, 3, 32, 32)
    mask = fixed_mask(3, 16, 0.625)
    latent, returned, ids_restore = vit_test.forward_encoder(imgs, mask_ratio=0.1, mask=mask)
    assert latent.shape == (3, 1 + 16 - 10, 32)
    assert torch.equal(returned, mask) and ids_restore.shape == (3, 16)
    _, pred, returned = vit_test(imgs, mask=mask.bool())
    assert torch.equal(returned, mask) and pred.shape == (3, 16, 192)
    with pytest.raises(ValueError, match="this batch needs"):
        vit_test(imgs, mask=mask[:, :8])


def test_decoder_puts_predictions_back_in_image_order() -> None:
    # Reduce the decoder to the unshuffle alone: identity layers, no blocks, zero position codes.
    # Visible token i then carries its patch index ids_keep[i] and must land on that patch.
    model = create_model("vit-test")  # decoder width 32 = encoder width
    model.decoder_embed, model.decoder_norm, model.decoder_pred = (nn.Identity(),) * 3
    model.decoder_blocks = nn.ModuleList()
    with torch.no_grad():
        model.decoder_pos_embed.zero_()
        model.mask_token.fill_(-1.0)
    # Random masking's encoder order is shuffled, not image order.
    patch_mask = random_mask(3, 16, 0.5, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(patch_mask.ids_keep, patch_mask.ids_keep.sort(dim=1).values)
    cls = torch.full((3, 1), -2.0)
    latent = torch.cat([cls, patch_mask.ids_keep.float()], dim=1)[..., None].expand(-1, -1, 32)
    pred = model.forward_decoder(latent, patch_mask.ids_restore)
    expected = torch.where(patch_mask.mask.bool(), -1.0, torch.arange(16.0).expand(3, -1))
    torch.testing.assert_close(pred, expected[..., None].expand(-1, -1, 32))


def test_embed_is_mask_free_and_pools_as_asked(vit_test: MaskedAutoencoder) -> None:
    vit_test.eval()
    imgs = torch.rand(4, 3, 32, 32)
    torch.manual_seed(1)
    first = vit_test.embed(imgs)
    torch.manual_seed(2)
    assert torch.equal(vit_test.embed(imgs), first)
    tokens = vit_test.forward_features(imgs)
    assert tokens.shape == (4, 1 + 16, 32) and first.shape == (4, 32)
    torch.testing.assert_close(first, tokens[:, 1:].mean(dim=1))
    torch.testing.assert_close(vit_test.embed(imgs, pool="cls"), tokens[:, 0])
    with pytest.raises(ValueError, match="unknown pool"):
        vit_test.embed(imgs, pool="max")  # type: ignore[arg-type]


def test_init_follows_mae(vit_test: MaskedAutoencoder) -> None:
    assert 0.005 < vit_test.cls_token.std() < 0.05
    assert torch.all(vit_test.blocks[0].attn.qkv.bias == 0)
    assert torch.all(vit_test.norm.weight == 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda_under_bf16_autocast() -> None:
    model = create_model("vit-test").cuda()
    imgs = torch.rand(4, 3, 32, 32, device="cuda")
    mask = fixed_mask(4, 16, 0.75)  # made on the CPU, as a data loader would
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, pred, returned = model(imgs, mask=mask)
    loss.backward()
    assert torch.isfinite(loss) and pred.shape == (4, 16, 192) and returned.is_cuda
    assert model.embed(imgs).shape == (4, 32)
