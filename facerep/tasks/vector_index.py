"""FAISS indexes over a gallery's embeddings: exact for small galleries, approximate for large.

Embeddings are unit rows, so inner product is cosine similarity. Every index is wrapped in
`IndexIDMap2`, so a search returns the gallery's own int64 face ids, and a set of removed ids
can be left out of a search without rebuilding the index (faiss's `IDSelector`).

Kinds:
- `exact`: a flat scan (`IndexFlatIP`).
- `ivf`: IVF with 4-bit fast-scan product-quantisation codes (André et al., "Quicker ADC",
  2019) and an exact re-rank of the best `k * k_factor` candidates (`IndexRefineFlat`). One
  inverted list: measured on 1M random unit vectors, probing fewer lists than all loses recall
  (0.83 at half of 64), while scanning every 4-bit code is fast enough (2 ms at 1M x 128).
- `hnsw`: a graph (`IndexHNSWFlat`); good on clustered embeddings, but on 1M random vectors it
  reached only 0.84 recall@10 at 14 ms, so `auto` does not choose it.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from facerep.files import atomic_write_bytes
from facerep.tasks import index_policy
from facerep.tasks.index_policy import IndexKind

# Rows used to train the codebooks; more adds time, not accuracy.
MAX_TRAINING_FACES = 200_000
# Candidates re-ranked exactly per result: 50 gives recall@10 0.987 at 1M x 128 and 0.991 at
# 1M x 384 on random unit vectors (bench/results/gallery_search.md).
IVF_K_FACTOR = 50

# HNSW graph degree and build effort. Random unit vectors, the hardest case for a graph index,
# need a well connected graph to keep recall; real face embeddings cluster and need less.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
# Candidates kept during a search: recall rises and speed falls with it (see bench/).
HNSW_EF_SEARCH = 256


class VectorIndex:
    """Unit vectors with int64 ids, searched by inner product; exact, ivf or hnsw.

    Args:
        dim: the vectors' dimension.
        kind: "exact" (a flat scan), "ivf" (PQ fast scan + exact re-rank) or "hnsw" (a graph).
        ef_search: HNSW candidates per search (hnsw only).
        k_factor: candidates re-ranked per result (ivf only).
    """

    def __init__(
        self,
        dim: int,
        kind: IndexKind = "exact",
        ef_search: int = HNSW_EF_SEARCH,
        k_factor: int = IVF_K_FACTOR,
    ):
        self.dim, self.kind = dim, kind
        self.ef_search, self.k_factor = ef_search, k_factor
        self.index_ = _new_index(dim, kind)

    def __len__(self) -> int:
        return int(self.index_.ntotal)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add `[N, D]` unit rows under `[N]` int64 ids."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(vectors) != len(ids):
            raise ValueError(f"{len(vectors)} vectors but {len(ids)} ids")
        if not len(ids):
            return
        if not self.index_.is_trained:
            self._train(vectors)
        self.index_.add_with_ids(vectors, ids)

    def _train(self, vectors: np.ndarray) -> None:
        needed = index_policy.MIN_TRAINING_FACES
        if len(vectors) < needed:
            raise ValueError(
                f"an {self.kind} index learns from its first {needed} vectors; "
                f"got {len(vectors)}"
            )
        rows = np.random.default_rng(0).permutation(len(vectors))[:MAX_TRAINING_FACES]
        # Train through the wrappers: trained beneath them, IndexRefine stays untrained.
        self.index_.train(vectors[np.sort(rows)])

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

    def last_id(self) -> int:
        """The id added last (-1 when empty); galleries add in increasing id order."""
        return int(self.index_.id_map.at(len(self) - 1)) if len(self) else -1

    def ids(self) -> np.ndarray:
        """Every stored id, in insertion order."""
        return faiss.vector_to_array(self.index_.id_map).astype(np.int64)

    def vectors(self) -> np.ndarray:
        """Every stored vector, `[N, D]` float32, in insertion order."""
        if len(self) == 0:
            return np.zeros((0, self.dim), np.float32)
        base = faiss.downcast_index(self.index_.index)
        if isinstance(base, faiss.IndexRefine):
            base = faiss.downcast_index(base.refine_index)  # the exact copies, not the codes
        return base.reconstruct_n(0, len(self))

    def memory_bytes(self) -> int:
        """Bytes the index holds: vectors, graph links and ids."""
        per_face = {
            "exact": self.dim * 4,
            "ivf": self.dim * 4 + self.dim / 4,  # exact copies for the re-rank + 4-bit codes
            "hnsw": self.dim * 4 + HNSW_M * 2 * 4 * 1.1,  # vectors + graph links
        }[self.kind]
        return int(len(self) * (per_face + 8))

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
        kind: IndexKind = "exact"
        if isinstance(base, faiss.IndexHNSW):
            kind = "hnsw"
        elif isinstance(base, faiss.IndexRefine):
            kind = "ivf"
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
        # faiss keeps raw pointers to selectors and nested parameters: `keep` holds the Python
        # objects for as long as the returned parameters live.
        keep: list = []
        selector = None
        if exclude is not None and len(exclude):
            batch = faiss.IDSelectorBatch(np.ascontiguousarray(exclude, dtype=np.int64))
            selector = faiss.IDSelectorNot(batch)
            keep += [batch, selector]
        if self.kind == "ivf":
            inner = faiss.SearchParametersIVF(nprobe=1)
            if selector is not None:
                # IndexRefine ignores a top-level selector and IndexIDMap2 translates only a
                # top-level one: the selector goes to the inner index, mapped to its row ids.
                inner.sel = faiss.IDSelectorTranslated(self.index_.id_map, selector)
                keep.append(inner.sel)
            params = faiss.IndexRefineSearchParameters(
                k_factor=float(self.k_factor), base_index_params=inner
            )
            keep.append(inner)
        elif self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, 1))
        elif selector is None:
            return None
        else:
            params = faiss.SearchParameters()
        if selector is not None and self.kind != "ivf":
            params.sel = selector
        params.keep = keep
        return params


def _new_index(dim: int, kind: IndexKind) -> faiss.Index:
    if kind == "exact":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "ivf":
        # 4-bit codes over pairs of dimensions (PQ d/2 x 4 bits): the best recall per ms found
        # at both 128 and 384 dimensions.
        return faiss.index_factory(
            dim, f"IDMap2,IVF1,PQ{max(1, dim // 2)}x4fs,RFlat", faiss.METRIC_INNER_PRODUCT
        )
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return faiss.IndexIDMap2(index)
    raise ValueError(f"unknown index kind {kind!r}: use exact, ivf or hnsw")
