"""facerep: face representations learned from unlabeled photos, and the face tools built on them."""

from facerep.api import detect, load_encoder
from facerep.images import ImageError, load_image
from facerep.types import Box, Face, Pose

__version__ = "0.1.0"

__all__ = [
    "Box",
    "Face",
    "ImageError",
    "Pose",
    "__version__",
    "detect",
    "load_encoder",
    "load_image",
]
