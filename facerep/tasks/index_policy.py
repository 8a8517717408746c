"""Which kind of vector index a gallery uses, by its size or the user's choice.

Kept apart from `vector_index` so that choosing (and the CLI's options) never imports FAISS:
commands that never touch a gallery (prepare, pretrain, eval) do not load it and its OpenMP
runtime.
"""

from __future__ import annotations

from typing import Literal

IndexKind = Literal["exact", "ivf", "hnsw"]
IndexChoice = Literal["auto", "exact", "ivf", "hnsw"]
INDEX_CHOICES: tuple[IndexChoice, ...] = ("auto", "exact", "ivf", "hnsw")

# Below this many faces an exact scan is fast enough (100k x 128 is ~3 ms on 2 cores) and its
# answers are exact; above it the scan grows linearly with 16x more bytes per face than `ivf`.
APPROXIMATE_ABOVE = 100_000
# `ivf` learns its codebooks from the gallery itself: below this many faces it stays exact.
MIN_TRAINING_FACES = 10_000


def choose_kind(choice: IndexChoice, size: int) -> IndexKind:
    """The index kind for `size` faces: exact up to `APPROXIMATE_ABOVE`, ivf beyond, or as set
    (an ivf gallery stays exact until it has `MIN_TRAINING_FACES` to learn its codes from)."""
    if choice not in INDEX_CHOICES:
        raise ValueError(f"unknown index {choice!r}: use one of {', '.join(INDEX_CHOICES)}")
    if choice == "auto":
        return "exact" if size <= APPROXIMATE_ABOVE else "ivf"
    if choice == "ivf" and size < MIN_TRAINING_FACES:
        return "exact"
    return choice
