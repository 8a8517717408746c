"""Masked autoencoders and baselines that learn face representations, built by name."""

from facerep.models.mae import MaskedAutoencoder
from facerep.models.registry import ModelConfig, create_model, list_models

__all__ = ["MaskedAutoencoder", "ModelConfig", "create_model", "list_models"]
