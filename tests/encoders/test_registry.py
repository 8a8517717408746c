"""The encoder seam: a new encoder is its module and one registry entry, by name or by path.

`MeanColour` stands for the next encoder (an ONNX file, a distilled student): registered by
one entry, every tool that takes an encoder takes it, with nothing else changed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import facerep
from facerep.encoders import registry
from facerep.encoders.base import Encoder, encoder_identity
from facerep.encoders.calibration import current_threshold
from facerep.encoders.registry import EncoderEntry, PathEncoder, load_encoder, resolve_encoder
from facerep.tasks.gallery import Gallery, GalleryError


class MeanColour:
    """A 3-D embedding: each face's mean colour (from a `.colour` file, or by name)."""

    name, input_size, dim = "mean-colour", 8, 3
    default_threshold = 0.01

    def __init__(self, path: str | None = None):
        self.source = path or "mean-colour"
        self.fingerprint = Path(path).read_text() if path else "v1"

    def embed(self, faces: np.ndarray) -> np.ndarray:
        x = np.asarray(faces, np.float32).mean(axis=(1, 2)) + 1.0
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch):
    entry = EncoderEntry("mean-colour", "mean colour, for tests", f"{__name__}:MeanColour")
    monkeypatch.setitem(registry.BUILTIN_ENCODERS, entry.name, entry)
    by_file = PathEncoder(
        lambda path: path.suffix == ".colour" and path.is_file(),
        EncoderEntry("FILE.colour", "a colour file", f"{__name__}:MeanColour"),
    )
    monkeypatch.setattr(registry, "PATH_ENCODERS", (*registry.PATH_ENCODERS, by_file))
    yield
    registry._cached_encoder.cache_clear()  # no test after this one meets a cached stand-in


def test_an_encoder_registered_by_name_serves_every_tool(registered: None, tmp_path: Path) -> None:
    assert "mean-colour" in [entry.name for entry in facerep.list_encoders()]
    encoder = load_encoder("mean-colour")
    assert isinstance(encoder, Encoder) and resolve_encoder("mean-colour").dim == 3
    assert current_threshold(encoder) == 0.01  # its own default, until calibrated
    faces = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    with Gallery(tmp_path / "g", "mean-colour") as gallery:
        gallery.add_embeddings(encoder.embed(faces), ["a", "b", "c", "d"])
        assert gallery.search_embedding(encoder.embed(faces[2:3])[0], 1)[0].label == "c"
    with Gallery(tmp_path / "g") as reopened:  # rebuilt from what the gallery recorded
        assert reopened.encoder.name == "mean-colour"


def test_an_encoder_registered_by_path_is_known_by_its_file(
    registered: None, tmp_path: Path
) -> None:
    weights = tmp_path / "model.colour"
    weights.write_text("weights-1")
    encoder = load_encoder(weights)
    identity = encoder_identity(encoder)
    assert (identity.source, identity.fingerprint) == (str(weights), "weights-1")
    faces = np.zeros((2, 8, 8, 3), np.uint8)
    with Gallery(tmp_path / "g", encoder) as gallery:
        gallery.add_embeddings(encoder.embed(faces), ["a", "b"])
    weights.write_text("weights-2")  # other weights: the gallery refuses them
    with pytest.raises(GalleryError, match="does not match"):
        Gallery(tmp_path / "g", load_encoder(weights))
    with pytest.raises(ValueError, match="not an encoder name"):
        load_encoder(tmp_path / "model.other")
