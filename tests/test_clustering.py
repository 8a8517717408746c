"""Both clusterers (agglomerative, HDBSCAN) on separated blobs, thresholds and edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from facerep.clustering import cluster_embeddings, noise_as_singletons


def blobs(spacing_deg: float = 120.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit 2-D vectors in 3 blobs of 6, `spacing_deg` apart, each within +-3 degrees."""
    rng = np.random.default_rng(seed)
    centres = np.repeat(np.radians(np.array([0.0, 1.0, 2.0]) * spacing_deg), 6)
    angles = centres + rng.uniform(-0.05, 0.05, len(centres))
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    return points, np.repeat(np.array(["ann", "bob", "cat"], dtype=object), 6)


def test_noise_becomes_new_singleton_clusters():
    assert noise_as_singletons(np.array([-1, 0, 0, -1, 1])).tolist() == [2, 0, 0, 3, 1]
    assert noise_as_singletons(np.array([-1, -1])).tolist() == [0, 1]


def test_agglomerative_recovers_separated_blobs_exactly():
    points, identities = blobs()
    labels = cluster_embeddings(points, "agglomerative", distance_threshold=0.5)
    # The blobs are 120 degrees apart (cosine distance 1.5) and a few degrees wide (< 0.01).
    assert len(np.unique(labels)) == 3
    for name in ("ann", "bob", "cat"):
        assert len(np.unique(labels[identities == name])) == 1
    # Distance 0 merges nothing; distance 2 (past any pair: opposite vectors) merges all.
    assert len(np.unique(cluster_embeddings(points, "agglomerative", 0.0))) == len(points)
    assert len(np.unique(cluster_embeddings(points, "agglomerative", 2.0))) == 1


def test_the_threshold_is_a_cosine_distance() -> None:
    # Blobs 60 degrees apart sit at cosine distance 0.5 from each other: a distance threshold
    # of 0.4 keeps them apart, 0.6 joins the neighbours (average linkage, like tasks.cluster).
    points, _ = blobs(spacing_deg=60.0)
    assert len(np.unique(cluster_embeddings(points, "agglomerative", 0.4))) == 3
    assert len(np.unique(cluster_embeddings(points, "agglomerative", 0.6))) < 3


def test_agglomerative_needs_a_threshold():
    with pytest.raises(ValueError, match="threshold"):
        cluster_embeddings(blobs()[0], "agglomerative", distance_threshold=None)
    with pytest.raises(ValueError, match="0 or more"):
        cluster_embeddings(blobs()[0], "agglomerative", distance_threshold=-0.1)


def test_hdbscan_finds_blobs_and_leaves_an_outlier_alone():
    points, identities = blobs(spacing_deg=40.0)
    # Lift the blobs into 3-D and put the outlier on the pole, 90 degrees from every blob: it
    # leaves the density tree before the blobs part, which is what makes HDBSCAN call it noise.
    lifted = np.hstack([points, np.zeros((len(points), 1), np.float32)])
    embeddings = np.vstack([lifted, [[0.0, 0.0, 1.0]]]).astype(np.float32)
    # min_cluster_size 4: with 2, HDBSCAN splits a 6-face blob into denser pairs and triples.
    labels = cluster_embeddings(embeddings, "hdbscan", None, min_cluster_size=4)
    assert labels.min() >= 0  # noise was renumbered
    assert np.sum(labels == labels[-1]) == 1  # the outlier is a singleton
    assert len(np.unique(labels)) == 4
    for name in ("ann", "bob", "cat"):
        assert len(np.unique(labels[:-1][identities == name])) == 1


def test_single_face_is_its_own_cluster():
    one = np.array([[1.0, 0.0]], dtype=np.float32)
    assert cluster_embeddings(one, "hdbscan", None).tolist() == [0]
    assert cluster_embeddings(one, "agglomerative", 0.5).tolist() == [0]
    assert cluster_embeddings(one[:0], "agglomerative", 0.5).tolist() == []
