"""One input to ingest: what the source walker and the built-in samples both hand to prepare."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SourceItem:
    """One input to ingest: a file on disk, or an in-memory image from a built-in sample.

    `name`, `key`, `identity` and `split` are text (`path_text`); `path` is the file itself.
    """

    name: str
    identity: str | None = None
    split: str | None = None
    path: Path | None = None
    load_array: Callable[[], np.ndarray] | None = None
    # Its path relative to the source folder: how re-runs recognise it, however SRC is spelled.
    key: str = ""
