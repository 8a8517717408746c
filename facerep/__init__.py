"""facerep: face representations learned from unlabeled photos, and the face tools built on them."""

from facerep.api import cluster, detect, embed, list_encoders, load_encoder, verify
from facerep.faces.find import NoFaceError
from facerep.images import ImageError, load_image
from facerep.types import Box, Face, Match, Pose, Verdict

__version__ = "0.1.0"

# Loaded on first use: the gallery brings in FAISS (and its OpenMP runtime), which scripts that
# only train or prepare data should not carry.
_LAZY = {"Gallery": "facerep.tasks.gallery", "GalleryError": "facerep.tasks.gallery"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'facerep' has no attribute {name!r}")

__all__ = [
    "Box",
    "Face",
    "Gallery",
    "GalleryError",
    "ImageError",
    "Match",
    "NoFaceError",
    "Pose",
    "Verdict",
    "__version__",
    "cluster",
    "detect",
    "embed",
    "list_encoders",
    "load_encoder",
    "load_image",
    "verify",
]
