"""facerep: face representations learned from unlabeled photos, and the face tools built on them."""

from facerep.api import cluster, detect, embed, load_encoder, verify
from facerep.faces.find import NoFaceError
from facerep.images import ImageError, load_image
from facerep.tasks.gallery import Gallery, GalleryError
from facerep.types import Box, Face, Match, Pose, Verdict

__version__ = "0.1.0"

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
    "load_encoder",
    "load_image",
    "verify",
]
