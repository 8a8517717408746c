"""FAISS indexes over a gallery's embeddings: exact for small galleries, approximate for large.

Embeddings are unit rows, so inner product is cosine similarity. Every index is wrapped in
`IndexIDMap2`, so a search returns the gallery's own int64 face ids, and a set of removed ids
can be left out of a search without rebuilding the index (faiss's `IDSelector`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from facerep.files import atomic_write_bytes

IndexKind = Literal["exact", "hnsw"]
IndexChoice = Literal["auto", "exact", "hnsw"]
INDEX_CHOICES: tuple[IndexChoice, ...] = ("auto", "exact", "hnsw")

# Below this many faces an exact scan is fast enough (100k x 128 is ~3 ms on 2 cores) and its
# answers are exact; above it the scan grows linearly and HNSW's graph walk does not.
APPROXIMATE_ABOVE = 100_000

# HNSW graph degree and build effort. Random unit vectors, the hardest case for a graph index,
# need a well connected graph to keep recall; real face embeddings cluster and need less.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
# Candidates kept during a search: recall rises and speed falls with it (see bench/).
HNSW_EF_SEARCH = 256


def choose_kind(choice: IndexChoice, size: int) -> IndexKind:
    """The index kind for `size` faces: exact up to `APPROXIMATE_ABOVE`, HNSW beyond, or as set."""
    if choice == "auto":
        return "exact" if size <= APPROXIMATE_ABOVE else "hnsw"
    if choice not in INDEX_CHOICES:
        raise ValueError(f"unknown index {choice!r}: use one of {', '.join(INDEX_CHOICES)}")
    return choice


class VectorIndex:
    """Unit vectors with int64 ids, searched by inner product; exact or HNSW.

    Args:
        dim: the vectors' dimension.
        kind: "exact" (a flat scan) or "hnsw" (a graph, approximate).
        ef_search: HNSW candidates per search (ignored by exact).
    """

    def __init__(self, dim: int, kind: IndexKind = "exact", ef_search: int = HNSW_EF_SEARCH):
        self.dim, self.kind, self.ef_search = dim, kind, ef_search
        self.index_ = faiss.IndexIDMap2(_base_index(dim, kind))

    def __len__(self) -> int:
        return int(self.index_.ntotal)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add `[N, D]` unit rows under `[N]` int64 ids."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(vectors) != len(ids):
            raise ValueError(f"{len(vectors)} vectors but {len(ids)} ids")
        if len(ids):
            self.index_.add_with_ids(vectors, ids)

    def search(
        self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `k` most similar ids per query row: (`[Q, k]` similarities, `[Q, k]` ids).

        Ids in `exclude` are never returned. Where fewer than `k` remain, ids are -1 and
        similarities -inf.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, int(k))
        if len(self) == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full(
                (len(queries), k), -1, np.int64
            )
        scores, ids = self.index_.search(queries, k, params=self._params(exclude))
        scores[ids < 0] = -np.inf
        return scores, ids

    def ids(self) -> np.ndarray:
        """Every stored id, in insertion order."""
        return faiss.vector_to_array(self.index_.id_map).astype(np.int64)

    def vectors(self) -> np.ndarray:
        """Every stored vector, `[N, D]` float32, in insertion order."""
        if len(self) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.index_.index.reconstruct_n(0, len(self))

    def memory_bytes(self) -> int:
        """Bytes the index holds: vectors, graph links and ids."""
        vectors = len(self) * self.dim * 4
        links = len(self) * HNSW_M * 2 * 4 * 1.1 if self.kind == "hnsw" else 0
        return int(vectors + links + len(self) * 8)

    def save(self, path: str | Path) -> None:
        """Write the index to `path` atomically."""
        atomic_write_bytes(path, faiss.serialize_index(self.index_).tobytes())

    @classmethod
    def load(cls, path: str | Path, ef_search: int = HNSW_EF_SEARCH) -> VectorIndex:
        """Read an index written by `save`."""
        index = faiss.read_index(str(path))
        if not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"{path}: not a facerep gallery index")
        base = faiss.downcast_index(index.index)
        kind: IndexKind = "hnsw" if isinstance(base, faiss.IndexHNSW) else "exact"
        loaded = cls(index.d, kind, ef_search)
        loaded.index_ = index
        return loaded

    @classmethod
    def build(
        cls, vectors: np.ndarray, ids: np.ndarray, kind: IndexKind, ef_search: int = HNSW_EF_SEARCH
    ) -> VectorIndex:
        """A new index holding `vectors` under `ids`."""
        index = cls(int(np.shape(vectors)[1]), kind, ef_search)
        index.add(vectors, ids)
        return index

    def _params(self, exclude: np.ndarray | None) -> faiss.SearchParameters | None:
        selector = None
        if exclude is not None and len(exclude):
            batch = faiss.IDSelectorBatch(np.ascontiguousarray(exclude, dtype=np.int64))
            selector = faiss.IDSelectorNot(batch)
            # The Python objects must outlive the search; faiss keeps raw pointers.
            selector.referenced = batch
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, 1))
        elif selector is None:
            return None
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
            params.referenced = selector
        return params


def _base_index(dim: int, kind: IndexKind) -> faiss.Index:
    if kind == "exact":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return index
    raise ValueError(f"unknown index kind {kind!r}: use exact or hnsw")
