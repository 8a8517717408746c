"""Named model configurations and one entry point to build them, after timm's `create_model`.

A model is a config of its kind (`MAEConfig`, `ConvAEConfig`); `create_model("vit-tiny",
img_size=112)` resolves the name, applies the overrides and builds it. The resolved config rides
on the model as `model.config`, and its `to_dict()` saved beside a checkpoint rebuilds the model
with `config_from_dict(...).build()` and nothing else. Sizes follow the ViT family (Dosovitskiy
et al. 2021; Touvron et al., DeiT, 2021 for tiny and small); decoders are lighter than MAE's
512 x 8 where the encoder is small. Adding a model kind: its model file with its config class,
and one line in `MODEL_KINDS`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from typing import Any

from torch import nn

from facerep.models.config import ModelConfig
from facerep.models.conv_ae import ConvAEConfig
from facerep.models.mae import MAEConfig
from facerep.models.resnet import ResNetConfig

# Each kind's config class, by the `kind` its JSON dict carries.
MODEL_KINDS: dict[str, type[ModelConfig]] = {
    "mae": MAEConfig,
    "conv_ae": ConvAEConfig,
    "resnet": ResNetConfig,
}

# The one flat config of runs written before each kind had its own: a conv_ae run's config.json
# still carries the ViT fields at their defaults, which its kind never read.
_LEGACY_FLAT_FIELDS = MAEConfig.field_names()


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """The config a `to_dict()` (a run's config.json `model`) describes; inverse of `to_dict`.

    Raises:
        ValueError: unknown kind, or keys the kind does not have.
    """
    data = dict(data)
    kind = data.pop("kind", "mae")
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(MODEL_KINDS)}")
    config_class = MODEL_KINDS[kind]
    valid = config_class.field_names()
    legacy = {key for key in set(data) - valid if key in _LEGACY_FLAT_FIELDS}
    unknown = sorted(set(data) - valid - legacy)
    if unknown:
        raise ValueError(
            f"unknown model config keys {unknown}; valid keys: {', '.join(sorted(valid))}"
        )
    return config_class(**{key: value for key, value in data.items() if key in valid})


MODEL_CONFIGS: dict[str, ModelConfig] = {
    config.name: config
    for config in [
        # Small enough that every test can run it on a laptop CPU in milliseconds.
        MAEConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                  decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
                  name="mae_vit_test_p8_32"),
        MAEConfig(img_size=64, patch_size=8, embed_dim=192, depth=12, num_heads=3,
                  decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4,
                  name="mae_vit_tiny_p8_64"),
        MAEConfig(img_size=112, patch_size=16, embed_dim=192, depth=12, num_heads=3,
                  decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4,
                  name="mae_vit_tiny_p16_112"),
        MAEConfig(img_size=64, patch_size=8, embed_dim=384, depth=12, num_heads=6,
                  decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8,
                  name="mae_vit_small_p8_64"),
        MAEConfig(img_size=112, patch_size=16, embed_dim=384, depth=12, num_heads=6,
                  decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8,
                  name="mae_vit_small_p16_112"),
        MAEConfig(img_size=112, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                  decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
                  name="mae_vit_base_p16_112"),
        # Four stride-2 stages: 64 px -> 4x4 and 112 px -> 7x7 bottlenecks of 256 channels.
        ConvAEConfig(img_size=64, patch_size=8, embed_dim=256, depth=4, name="conv_ae_64"),
        ConvAEConfig(img_size=112, patch_size=16, embed_dim=256, depth=4, name="conv_ae_112"),
        # A residual CNN for joint-embedding objectives on a CPU: ~1.2M parameters at 64 px.
        ResNetConfig(img_size=64, patch_size=16, embed_dim=256, widths=(32, 64, 128, 256),
                     blocks=(1, 1, 1, 1), name="resnet_tiny_64"),
        # A distillation student (ResNet-18's depths, a quarter of its widths, FaceNet's 128-D
        # embedding layer): ~2.8M parameters, a few ms a face on one core at 64 px.
        ResNetConfig(img_size=64, patch_size=16, embed_dim=128, widths=(32, 64, 128, 256),
                     blocks=(2, 2, 2, 2), name="resnet_small_64"),
        # resnet-small with its last two stages 1.5x wider: ~6M parameters, ~1.6x the
        # multiply-adds; on the 2-core CPU ~1.2x the training step and 1.5x the embedding
        # time in onnxruntime (bench/results/distillation.md).
        ResNetConfig(img_size=64, patch_size=16, embed_dim=128, widths=(32, 64, 192, 384),
                     blocks=(2, 2, 2, 2), name="resnet_medium_64"),
    ]
}  # fmt: skip

MODEL_ALIASES: dict[str, str] = {
    "vit-test": "mae_vit_test_p8_32",
    "vit-tiny": "mae_vit_tiny_p8_64",
    "vit-small": "mae_vit_small_p8_64",
    "vit-base": "mae_vit_base_p16_112",
    "conv-ae": "conv_ae_64",
    "resnet-tiny": "resnet_tiny_64",
    "resnet-small": "resnet_small_64",
    "resnet-medium": "resnet_medium_64",
}


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style `pattern` (`"mae_vit_*"`), sorted.

    Aliases (`vit-tiny`) are not listed; `create_model` accepts them.
    """
    return sorted(fnmatch.filter(MODEL_CONFIGS, pattern))


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The config registered as `name` (or an alias), with `overrides` applied.

    Raises:
        ValueError: unknown name, unknown override key, or a key the model kind does not use.
    """
    canonical = MODEL_ALIASES.get(name, name)
    if canonical not in MODEL_CONFIGS:
        choices = ", ".join([*sorted(MODEL_CONFIGS), *MODEL_ALIASES])
        raise ValueError(f"unknown model {name!r}; choose one of: {choices}")
    config = MODEL_CONFIGS[canonical]
    valid = type(config).field_names() - {"name"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(
            f"{canonical} has no option {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    return replace(config, **overrides)


def build_model(config: ModelConfig) -> nn.Module:
    """Build the model a config describes, freshly initialised; `model.config` is `config`."""
    return config.build()


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model by name or alias: `create_model("vit-tiny", img_size=112)`.

    Args:
        name: a name from `list_models()` or an alias (`vit-test`, `vit-tiny`, `vit-small`,
            `vit-base`, `conv-ae`).
        **overrides: config fields of the model's kind to change (`img_size`, `patch_size`,
            `decoder_depth`...).

    Returns:
        A `MaskedAutoencoder` or `ConvAutoencoder`, with the resolved config as `model.config`.
    """
    return build_model(model_config(name, **overrides))
