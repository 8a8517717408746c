"""Masked autoencoders and baselines that learn face representations, built by name."""

# Loaded on first use: importing a torch-free submodule (strategies) must not import torch.
_LAZY = {
    "MaskedAutoencoder": "facerep.models.mae",
    "ModelConfig": "facerep.models.config",
    "MAEConfig": "facerep.models.mae",
    "ConvAEConfig": "facerep.models.conv_ae",
    "config_from_dict": "facerep.models.registry",
    "create_model": "facerep.models.registry",
    "list_models": "facerep.models.registry",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'facerep.models' has no attribute {name!r}")


__all__ = [
    "ConvAEConfig",
    "MAEConfig",
    "MaskedAutoencoder",
    "ModelConfig",
    "config_from_dict",
    "create_model",
    "list_models",
]
