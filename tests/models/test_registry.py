"""Model names, aliases, overrides and configs that rebuild a model alone."""

from __future__ import annotations

import json

import pytest
import torch

from facerep.models import MaskedAutoencoder, ModelConfig, create_model, list_models
from facerep.models.conv_ae import ConvAutoencoder
from facerep.models.registry import MODEL_ALIASES, build_model, model_config


def test_list_models_names_every_size_and_filters() -> None:
    names = list_models()
    assert names == sorted(names) and len(names) == 8
    assert "mae_vit_base_p16_112" in names and "conv_ae_112" in names
    assert list_models("conv_ae_*") == ["conv_ae_112", "conv_ae_64"]
    assert list_models("nothing*") == []


@pytest.mark.parametrize(("alias", "name"), list(MODEL_ALIASES.items()))
def test_aliases_resolve(alias: str, name: str) -> None:
    assert model_config(alias) == model_config(name)
    assert name in list_models()


def test_aliases_point_where_documented() -> None:
    assert model_config("vit-test").embed_dim == 32
    assert model_config("vit-tiny").name == "mae_vit_tiny_p8_64"
    assert model_config("vit-base").embed_dim == 768
    assert model_config("conv-ae").kind == "conv_ae"


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
        ModelConfig(kind="rnn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown model config keys \['colour'\]"):
        ModelConfig.from_dict({"colour": "red"})


@pytest.mark.parametrize("name", ["vit-test", "conv-ae"])
def test_config_json_round_trip_rebuilds_the_same_model(name: str) -> None:
    model = create_model(name, img_size=32, norm_pix_loss=False)
    text = json.dumps(model.config.to_dict())
    rebuilt = build_model(ModelConfig.from_dict(json.loads(text)))
    assert rebuilt.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())
    imgs = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(rebuilt.embed(imgs), model.embed(imgs))
