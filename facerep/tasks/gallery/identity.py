"""Which encoder a gallery's vectors came from, and refusing any other.

A gallery records its encoder's name, dimension, weights fingerprint and how to rebuild it
(`facerep.encoders.base.encoder_identity`); vectors of two encoders are never comparable, so
opening a gallery with an encoder of another identity is refused.
"""

from __future__ import annotations

from pathlib import Path

from facerep.encoders.base import Encoder, encoder_identity
from facerep.tasks.gallery.errors import GalleryError

FORMAT_VERSION = 1


def identity_meta(encoder: Encoder) -> dict[str, str]:
    """The meta rows a new gallery stores about its encoder (and its format, epoch 0)."""
    identity = encoder_identity(encoder)
    return {
        "format": str(FORMAT_VERSION),
        "encoder": identity.name,
        "encoder_source": identity.source,
        "dim": str(identity.dim),
        "fingerprint": identity.fingerprint,
        "epoch": "0",
    }


def check_format(meta: dict[str, str], path: Path) -> None:
    """Refuse a gallery written in another format version."""
    if int(meta.get("format", 0)) != FORMAT_VERSION:
        raise GalleryError(
            f"gallery format {meta.get('format')} is not supported", "unsupported", path
        )


def check_identity(meta: dict[str, str], encoder: Encoder, path: Path) -> None:
    """Refuse `encoder` unless it is the one whose vectors the gallery holds."""
    identity = encoder_identity(encoder)
    # The fingerprint names the weights (and a run's whitening); the display name may differ
    # (a run's raw features are named RUN:raw once it has a whitening).
    if (identity.dim, identity.fingerprint) != (int(meta["dim"]), meta["fingerprint"]):
        raise GalleryError(
            f"holds {meta['encoder']} embeddings ({meta['dim']}-D); encoder "
            f"{encoder.name} ({encoder.dim}-D) does not match; use {meta['encoder_source']}",
            "encoder_mismatch",
            path,
        )
