"""Every encoder facerep can build, by name or by path, and one cached way to get one.

`load_encoder("dlib")` builds a built-in by name; `load_encoder("runs/vit-tiny")` rebuilds a
pretraining run from its folder. Entries name their class as `module:Class`, imported only when
built, so listing encoders loads neither torch nor dlib. Adding an encoder: its module, and one
entry here (`BUILTIN_ENCODERS` for a name, `PATH_ENCODERS` for a kind of file or folder).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from facerep.encoders.base import Encoder, Fittable
from facerep.runs import is_run

EncoderLike = Encoder | str | Path | None
DEFAULT_ENCODER = "dlib"


@dataclass(frozen=True)
class EncoderEntry:
    """A way to build an encoder: its name (or the kind of path), a line about it, its class."""

    name: str
    summary: str
    target: str  # "module:Class", called with the encoder's options
    # Fitted on labelled training faces before it embeds: evaluation fits it, the face tools
    # (verify, galleries, cluster, serve) cannot use it.
    needs_fit: bool = False

    def build(self, *args: object, **options: object) -> Encoder:
        """Import the class and build the encoder."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)(*args, **options)


BUILTIN_ENCODERS: dict[str, EncoderEntry] = {
    entry.name: entry
    for entry in [
        EncoderEntry(
            "dlib",
            "dlib's ResNet face recogniser, 128-D, 99.38% on LFW (supervised reference; default)",
            "facerep.encoders.dlib:DlibEncoder",
        ),
        EncoderEntry(
            "pca",
            "eigenfaces, whitened (Turk and Pentland 1991): the classic baseline",
            "facerep.encoders.pca:PCAEncoder",
            needs_fit=True,
        ),
        EncoderEntry(
            "pixels",
            "downsampled, standardised grey pixels: the floor a representation must clear",
            "facerep.encoders.pixels:PixelsEncoder",
        ),
    ]
}


@dataclass(frozen=True)
class PathEncoder:
    """Encoders loaded from a path: which paths are theirs, and the entry that builds them."""

    matches: Callable[[Path], bool]
    entry: EncoderEntry


PATH_ENCODERS: tuple[PathEncoder, ...] = (
    PathEncoder(
        is_run,
        EncoderEntry(
            "RUN",
            "a facerep pretraining run folder (config.json + model.safetensors)",
            "facerep.encoders.run:RunEncoder",
        ),
    ),
    PathEncoder(
        lambda path: path.suffix == ".onnx",
        EncoderEntry(
            "FILE.onnx",
            "an encoder exported by `facerep export RUN --onnx FILE`, run by onnxruntime",
            "facerep.encoders.onnx:OnnxEncoder",
        ),
    ),
)


def list_encoders(*, fitted_only: bool = False) -> list[EncoderEntry]:
    """The built-in encoders, then the kinds of path an encoder loads from.

    Args:
        fitted_only: leave out encoders that must be fitted first (what the face tools take).
    """
    entries = [*BUILTIN_ENCODERS.values(), *(path.entry for path in PATH_ENCODERS)]
    return [entry for entry in entries if not (fitted_only and entry.needs_fit)]


def load_encoder(name_or_path: str | Path, **options: object) -> Encoder:
    """A new encoder by name (`dlib`, `pca`, `pixels`) or by path (a run folder, a `.onnx`).

    Options go to the encoder (for a run: `pool="mean"|"cls"`, `whiten`, `batch_size`, `device`; for
    pca: `n_components`, `whiten`). A `pca` encoder comes unfitted: call `fit(faces)` on
    training identities first.

    Raises:
        ValueError: neither a known name nor a path an encoder loads from, or a broken run.
    """
    name = str(name_or_path)
    if name in BUILTIN_ENCODERS:
        return BUILTIN_ENCODERS[name].build(**options)
    for path_encoder in PATH_ENCODERS:
        if path_encoder.matches(Path(name)):
            return path_encoder.entry.build(name, **options)
    raise ValueError(
        f"{name}: not an encoder name ({', '.join(BUILTIN_ENCODERS)}), a facerep run "
        "directory (no config.json) nor an exported .onnx file"
    )


def load_ready_encoder(name_or_path: str | Path) -> Encoder:
    """`load_encoder` for the face tools: refuses an encoder that must be fitted first."""
    return check_ready(load_encoder(name_or_path))


def check_ready(encoder: Encoder) -> Encoder:
    """`encoder` if it can embed now; a one-line ValueError for an unfitted estimator."""
    if isinstance(encoder, Fittable) and not encoder.fitted:
        ready = ", ".join(e.name for e in list_encoders(fitted_only=True))
        raise ValueError(
            f"encoder {encoder.name} must be fitted on labelled faces first (it serves "
            f"`facerep eval`); use one of: {ready}"
        )
    return encoder


def resolve_encoder(encoder: EncoderLike = None) -> Encoder:
    """An Encoder as given, or one ready to embed loaded once per process from a name or path.

    The loaded encoder is shared by every caller in the process: nobody changes it.
    """
    if encoder is None:
        encoder = DEFAULT_ENCODER
    if isinstance(encoder, str | Path):
        return _cached_encoder(str(encoder))
    return encoder


@lru_cache(maxsize=8)
def _cached_encoder(source: str) -> Encoder:
    return load_ready_encoder(source)
