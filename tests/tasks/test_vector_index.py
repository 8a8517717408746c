"""FAISS indexes: exact answers, approximate recall, removed ids left out, save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerep.tasks.index_policy import APPROXIMATE_ABOVE, MIN_TRAINING_FACES, choose_kind
from facerep.tasks.vector_index import VectorIndex


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1)[:, :k]


def test_exact_search_matches_a_numpy_scan_and_returns_the_given_ids() -> None:
    vectors, queries = unit_rows(2000, 32), unit_rows(20, 32, seed=1)
    ids = np.arange(2000) * 7 + 3  # not row numbers
    index = VectorIndex.build(vectors, ids, "exact")
    scores, found = index.search(queries, 10)
    assert np.array_equal(found, ids[brute_force(vectors, queries, 10)])
    assert np.allclose(
        scores, np.take_along_axis(queries @ vectors.T, (found - 3) // 7, 1), atol=1e-5
    )


# ivf learns its codes from the vectors, so it needs MIN_TRAINING_FACES of them.
SIZES = {"exact": 500, "hnsw": 500, "ivf": MIN_TRAINING_FACES}


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_excluded_ids_are_never_returned(kind: str) -> None:
    n = SIZES[kind]
    vectors = unit_rows(n, 16)
    index = VectorIndex.build(vectors, np.arange(n), kind)
    _, nearest = index.search(vectors[:5], 3)
    assert np.array_equal(nearest[:, 0], np.arange(5))  # each vector finds itself
    _, found = index.search(vectors[:5], 3, exclude=np.arange(5))
    assert not np.isin(found, np.arange(5)).any() and (found >= 0).all()


def test_fewer_than_k_left_gives_minus_one() -> None:
    index = VectorIndex.build(unit_rows(3, 8), np.arange(3), "exact")
    scores, ids = index.search(unit_rows(1, 8), 5, exclude=np.array([0]))
    assert sorted(ids[0][:2]) == [1, 2] and (ids[0][2:] == -1).all()
    assert np.isneginf(scores[0][2:]).all()
    _, empty_ids = VectorIndex(8).search(unit_rows(2, 8), 4)
    assert empty_ids.shape == (2, 4) and (empty_ids == -1).all()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_on_clustered_vectors(kind: str) -> None:
    # Face embeddings cluster by person; the default search must find nearly all neighbours.
    rng, n = np.random.default_rng(0), 12_000
    centres = unit_rows(500, 64)
    vectors = centres[rng.integers(500, size=n)] + 0.3 * unit_rows(n, 64, seed=2)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:100] + 0.05 * unit_rows(100, 64, seed=3)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, found = VectorIndex.build(vectors, np.arange(n), kind).search(queries, 10)
    truth = brute_force(vectors, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= 0.95


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_save_and_load_round_trip(kind: str, tmp_path: Path) -> None:
    n = SIZES[kind]
    vectors = unit_rows(n, 16)
    index = VectorIndex.build(vectors, np.arange(n) + 10, kind)
    index.save(tmp_path / "index.faiss")
    loaded = VectorIndex.load(tmp_path / "index.faiss")
    assert loaded.kind == kind and len(loaded) == n
    assert np.array_equal(loaded.ids(), np.arange(n) + 10)
    assert np.allclose(loaded.vectors(), vectors)
    exclude = np.array([10, 11])
    assert np.array_equal(
        loaded.search(vectors[:4], 5, exclude)[1], index.search(vectors[:4], 5, exclude)[1]
    )


def test_auto_kind_is_exact_for_small_galleries_and_ivf_for_large() -> None:
    assert choose_kind("auto", APPROXIMATE_ABOVE) == "exact"
    assert choose_kind("auto", APPROXIMATE_ABOVE + 1) == "ivf"
    assert choose_kind("exact", 10**7) == "exact"
    assert choose_kind("ivf", MIN_TRAINING_FACES - 1) == "exact"  # too few faces to learn from
    assert choose_kind("hnsw", 10) == "hnsw"
    with pytest.raises(ValueError, match="unknown index"):
        choose_kind("ivf-maybe", 10)  # type: ignore[arg-type]
