"""The fields every model kind's config shares; each kind adds its own in its model file.

A config is a frozen dataclass whose JSON dict (`to_dict`, with its `kind`) rebuilds the model
with `facerep.models.registry.config_from_dict` and nothing else, as timm's `PretrainedCfg`
travels with its weights. Torch-free, so reading and listing configs never imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal

# How a model turns its tokens into one embedding: their mean, or the class token (ViT only).
Pool = Literal["mean", "cls"]


@dataclass(frozen=True)
class ModelConfig:
    """What every model kind has: input size, patch (or output cell) size, embedding width and
    name. Reconstruction's options (`norm_pix_loss`) belong to the autoencoders' configs."""

    kind: ClassVar[str] = ""  # which model class builds it; each subclass names its own
    img_size: int = 112  # aligned crop side; `facerep prepare` writes 112 (64 for small models)
    patch_size: int = 16  # token and mask granularity: 16 px at 112 is a 7x7 grid (MAE: 14x14)
    embed_dim: int = 768  # encoder width (conv_ae: bottleneck channels) = embedding size
    name: str = ""  # the registered name it came from, for reports; not used to build

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, with the kind first."""
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def field_names(cls) -> set[str]:
        """The fields a config of this kind accepts."""
        return {f.name for f in fields(cls)}

    def build(self) -> Any:
        """The model this config describes, freshly initialised, with `model.config = self`."""
        raise NotImplementedError(f"{type(self).__name__} does not build a model")
