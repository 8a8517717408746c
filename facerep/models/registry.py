"""Named model configurations and one entry point to build them, after timm's `create_model`.

A model is a `ModelConfig`; `create_model("vit-tiny", img_size=112)` resolves the name, applies
the overrides and builds it. The resolved config rides on the model as `model.config`, and its
`to_dict()` saved beside a checkpoint rebuilds the model with `build_model` and nothing else.
Sizes follow the ViT family (Dosovitskiy et al. 2021; Touvron et al., DeiT, 2021 for tiny and
small); decoders are lighter than MAE's 512 x 8 where the encoder is small.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, get_args

from torch import nn

from facerep.models.conv_ae import ConvAutoencoder
from facerep.models.mae import MaskedAutoencoder

ModelKind = Literal["mae", "conv_ae"]


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes a model's weights; its JSON dict rebuilds the model."""

    kind: ModelKind = "mae"  # which class builds it: ViT masked autoencoder or conv baseline
    img_size: int = 112  # aligned crop side; `facerep prepare` writes 112 (64 for small models)
    patch_size: int = 16  # token and mask granularity: 16 px at 112 is a 7x7 grid (MAE: 14x14)
    embed_dim: int = 768  # encoder width (conv_ae: bottleneck channels) = embedding size
    depth: int = 12  # encoder blocks (conv_ae: stride-2 stages)
    num_heads: int = 12  # encoder heads; ViT keeps 64 channels per head
    decoder_embed_dim: int = 512  # the decoder is thrown away, so it can be narrow (MAE: 512)
    decoder_depth: int = 8  # MAE: 8 blocks; 1-4 suffice for linear-probe quality at small scale
    decoder_num_heads: int = 16  # decoder heads
    mlp_ratio: float = 4.0  # MLP hidden width over block width, the ViT standard
    norm_pix_loss: bool = True  # per-patch normalised targets: MAE's better features
    name: str = ""  # the registered name it came from, for reports; not used to build

    def __post_init__(self) -> None:
        if self.kind not in get_args(ModelKind):
            kinds = get_args(ModelKind)
            raise ValueError(f"unknown model kind {self.kind!r}; choose one of {kinds}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; fields missing from `data` take their defaults."""
        unknown = sorted(set(data) - _field_names())
        if unknown:
            valid = ", ".join(sorted(_field_names()))
            raise ValueError(f"unknown model config keys {unknown}; valid keys: {valid}")
        return cls(**data)


def _field_names() -> set[str]:
    return {f.name for f in fields(ModelConfig)}


# The fields a convolutional autoencoder reads; overriding any other on one is a mistake.
CONV_AE_FIELDS = {"kind", "img_size", "patch_size", "embed_dim", "depth", "norm_pix_loss", "name"}

MODEL_CONFIGS: dict[str, ModelConfig] = {
    config.name: config
    for config in [
        # Small enough that every test can run it on a laptop CPU in milliseconds.
        ModelConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                    decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
                    name="mae_vit_test_p8_32"),
        ModelConfig(img_size=64, patch_size=8, embed_dim=192, depth=12, num_heads=3,
                    decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4,
                    name="mae_vit_tiny_p8_64"),
        ModelConfig(img_size=112, patch_size=16, embed_dim=192, depth=12, num_heads=3,
                    decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4,
                    name="mae_vit_tiny_p16_112"),
        ModelConfig(img_size=64, patch_size=8, embed_dim=384, depth=12, num_heads=6,
                    decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8,
                    name="mae_vit_small_p8_64"),
        ModelConfig(img_size=112, patch_size=16, embed_dim=384, depth=12, num_heads=6,
                    decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8,
                    name="mae_vit_small_p16_112"),
        ModelConfig(img_size=112, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                    decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
                    name="mae_vit_base_p16_112"),
        # Four stride-2 stages: 64 px -> 4x4 and 112 px -> 7x7 bottlenecks of 256 channels.
        ModelConfig(kind="conv_ae", img_size=64, patch_size=8, embed_dim=256, depth=4,
                    name="conv_ae_64"),
        ModelConfig(kind="conv_ae", img_size=112, patch_size=16, embed_dim=256, depth=4,
                    name="conv_ae_112"),
    ]
}  # fmt: skip

MODEL_ALIASES: dict[str, str] = {
    "vit-test": "mae_vit_test_p8_32",
    "vit-tiny": "mae_vit_tiny_p8_64",
    "vit-small": "mae_vit_small_p8_64",
    "vit-base": "mae_vit_base_p16_112",
    "conv-ae": "conv_ae_64",
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
    valid = CONV_AE_FIELDS if config.kind == "conv_ae" else _field_names()
    valid = valid - {"kind", "name"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(
            f"{canonical} has no option {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    return replace(config, **overrides)


def build_model(config: ModelConfig) -> nn.Module:
    """Build the model a config describes, freshly initialised; `model.config` is `config`."""
    if config.kind == "conv_ae":
        model: nn.Module = ConvAutoencoder(
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=config.embed_dim,
            depth=config.depth,
            norm_pix_loss=config.norm_pix_loss,
        )
    else:
        kwargs = {k: v for k, v in asdict(config).items() if k not in ("kind", "name")}
        model = MaskedAutoencoder(**kwargs)
    model.config = config
    return model


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model by name or alias: `create_model("vit-tiny", img_size=112)`.

    Args:
        name: a name from `list_models()` or an alias (`vit-test`, `vit-tiny`, `vit-small`,
            `vit-base`, `conv-ae`).
        **overrides: `ModelConfig` fields to change (`img_size`, `patch_size`, `decoder_depth`...).

    Returns:
        A `MaskedAutoencoder` or `ConvAutoencoder`, with the resolved config as `model.config`.
    """
    return build_model(model_config(name, **overrides))
