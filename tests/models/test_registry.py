"""Model names, aliases, overrides and configs that rebuild a model alone."""

from __future__ import annotations

import json

import pytest
import torch

from facerep.models import MaskedAutoencoder, config_from_dict, create_model, list_models
from facerep.models.conv_ae import ConvAutoencoder
from facerep.models.registry import MODEL_ALIASES, build_model, model_config


def test_list_models_names_every_size_and_filters() -> None:
    names = list_models()
    assert names == sorted(names) and len(names) == 11
    assert "mae_vit_base_p16_112" in names and "conv_ae_112" in names
    assert list_models("conv_ae_*") == ["conv_ae_112", "conv_ae_64"]
    assert list_models("nothing*") == []


# What each alias is documented to build, written out: (kind, img_size, patch_size, embed_dim,
# depth).
ALIASES = {
    "vit-test": ("mae_vit_test_p8_32", ("mae", 32, 8, 32, 2)),
    "vit-tiny": ("mae_vit_tiny_p8_64", ("mae", 64, 8, 192, 12)),
    "vit-small": ("mae_vit_small_p8_64", ("mae", 64, 8, 384, 12)),
    "vit-base": ("mae_vit_base_p16_112", ("mae", 112, 16, 768, 12)),
    "conv-ae": ("conv_ae_64", ("conv_ae", 64, 8, 256, 4)),
    "resnet-tiny": ("resnet_tiny_64", ("resnet", 64, 16, 256, 4)),
    "resnet-small": ("resnet_small_64", ("resnet", 64, 16, 128, 4)),
    "resnet-medium": ("resnet_medium_64", ("resnet", 64, 16, 128, 4)),
}
# The ViT sizes a name's width word stands for (DeiT's tiny and small, ViT's base).
VIT_WIDTHS = {"test": 32, "tiny": 192, "small": 384, "base": 768}


@pytest.mark.parametrize(("alias", "name", "architecture"), [(a, *v) for a, v in ALIASES.items()])
def test_aliases_build_the_documented_architecture(
    alias: str, name: str, architecture: tuple
) -> None:
    config = model_config(alias)
    assert config.name == name and name in list_models()
    depth = config.depth if hasattr(config, "depth") else len(config.widths)  # resnet: stages
    assert (config.kind, config.img_size, config.patch_size, config.embed_dim, depth) == (
        architecture
    )


def test_resnet_medium_is_resnet_small_with_wider_late_stages() -> None:
    small, medium = model_config("resnet-small"), model_config("resnet-medium")
    assert medium.blocks == small.blocks and medium.widths == (32, 64, 192, 384)
    parameters = sum(p.numel() for p in build_model(medium).parameters())
    assert 5.5e6 < parameters < 6.5e6  # ~2.1x resnet-small's 2.8M


def test_every_alias_is_documented_and_every_name_spells_its_architecture() -> None:
    assert set(MODEL_ALIASES) == set(ALIASES)
    for name in list_models():
        config = model_config(name)
        assert config.name == name
        if config.kind == "conv_ae":
            assert name == f"conv_ae_{config.img_size}"
        elif config.kind == "resnet":
            # The size word stands for the depth: tiny one block a stage, small ResNet-18's two;
            # medium is small with its late stages wider than ResNet-18's quarter (256).
            size = {4: "tiny", 8: "small"}[sum(config.blocks)]
            size = "medium" if config.widths[-1] > 256 else size
            assert name == f"resnet_{size}_{config.img_size}"
        else:
            size = name.split("_")[2]
            assert name == f"mae_vit_{size}_p{config.patch_size}_{config.img_size}"
            assert config.embed_dim == VIT_WIDTHS[size], name


def test_overrides_apply_to_the_config_and_the_model() -> None:
    model = create_model("vit-test", img_size=48, patch_size=16, decoder_depth=2)
    assert isinstance(model, MaskedAutoencoder)
    assert model.config.img_size == 48 and model.grid_size == (3, 3)
    assert len(model.decoder_blocks) == 2
    assert isinstance(create_model("conv-ae"), ConvAutoencoder)


def test_unknown_names_and_keys_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'vit-huge'; choose one of: .*vit-tiny"):
        create_model("vit-huge")
    with pytest.raises(ValueError, match=r"has no option depht; valid: .*depth"):
        create_model("vit-test", depht=3)
    with pytest.raises(ValueError, match="conv_ae_64 has no option num_heads"):
        create_model("conv-ae", num_heads=4)
    with pytest.raises(ValueError, match="unknown model kind"):
        config_from_dict({"kind": "rnn"})
    with pytest.raises(ValueError, match=r"unknown model config keys \['colour'\]"):
        config_from_dict({"colour": "red"})


@pytest.mark.parametrize("name", ["vit-test", "conv-ae"])
def test_config_json_round_trip_rebuilds_the_same_model(name: str) -> None:
    model = create_model(name, img_size=32, norm_pix_loss=False)
    text = json.dumps(model.config.to_dict())
    rebuilt = build_model(config_from_dict(json.loads(text)))
    assert rebuilt.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())
    imgs = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(rebuilt.embed(imgs), model.embed(imgs))
