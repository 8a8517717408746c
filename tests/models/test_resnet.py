"""The residual CNN backbone: shapes, its config round trip, and what it cannot be asked."""

from __future__ import annotations

import json

import pytest
import torch

from facerep.models import config_from_dict, create_model
from facerep.models.resnet import ResNetConfig
from facerep.objectives.registry import create_objective


def test_embeds_and_tokens_at_any_size_it_divides() -> None:
    model = create_model("resnet-tiny", img_size=32)
    imgs = torch.rand(3, 3, 32, 32)
    assert model.embed(imgs).shape == (3, 256) and model.grid_size == (2, 2)
    tokens = model.forward_tokens(imgs)
    assert tokens.shape == (3, 4, 256)
    torch.testing.assert_close(tokens.mean(dim=1), model.embed(imgs))
    model.embed(imgs).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_an_embedding_size_other_than_the_last_width_adds_a_linear_embedding_layer() -> None:
    model = create_model("resnet-small", img_size=32)
    imgs = torch.rand(3, 3, 32, 32)
    assert model.embed(imgs).shape == (3, 128) and isinstance(model.embedding, torch.nn.Linear)
    # The layer is linear, so the tokens' mean is still the embedding (grid pooling agrees).
    torch.testing.assert_close(model.forward_tokens(imgs).mean(dim=1), model.embed(imgs))
    assert isinstance(create_model("resnet-tiny").embedding, torch.nn.Identity)


def test_config_round_trips_through_json_and_refuses_what_cannot_be_built() -> None:
    config = create_model("resnet-tiny").config
    assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match=r"widths \(8, 16\) and blocks \(1,\) must pair up"):
        ResNetConfig(widths=(8, 16), blocks=(1,), embed_dim=16)
    with pytest.raises(ValueError, match="cannot be halved 4 times"):
        create_model("resnet-tiny", img_size=40)
    with pytest.raises(ValueError, match="pools by 'mean' only"):
        create_model("resnet-tiny").embed(torch.rand(1, 3, 64, 64), pool="cls")


def test_masked_reconstruction_refuses_a_model_without_a_decoder() -> None:
    options = {"masking": "random", "mask_ratio": 0.75}
    with pytest.raises(ValueError, match=r"needs an autoencoder .*resnet_tiny_64 has none"):
        create_objective("reconstruction", create_model("resnet-tiny"), options)
