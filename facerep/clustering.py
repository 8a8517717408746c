"""Face clustering over embeddings: agglomerative (average linkage) and HDBSCAN on cosine.

One algorithm for the user's tool (`facerep cluster`, `facerep.tasks.cluster`) and for the
evaluation that scores it (`facerep.eval.clustering`), so the number measured is the clustering
shipped. HDBSCAN is Campello, Moulavi and Sander (2013), "Density-based clustering based on
hierarchical density estimates". Embeddings are `[N, D]` unit rows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.cluster import HDBSCAN, AgglomerativeClustering

ClusterMethod = Literal["agglomerative", "hdbscan"]
METHODS: tuple[ClusterMethod, ...] = ("agglomerative", "hdbscan")


def cluster_embeddings(
    embeddings: np.ndarray,
    method: ClusterMethod,
    distance_threshold: float | None,
    min_cluster_size: int = 2,
) -> np.ndarray:
    """Cluster `[N, D]` unit rows into `[N]` int labels; every face gets one (noise: one each).

    Args:
        embeddings: `[N, D]` float32 L2-normalised rows.
        method: "agglomerative" (average linkage on cosine distance) or "hdbscan".
        distance_threshold: cosine distance (1 - similarity) below which two faces count as one
            person, as sklearn names it. Agglomerative keeps merging while the average
            distance between two clusters is below it, so it is required there; 0 merges
            nothing. HDBSCAN finds its own density levels and does not use it.
        min_cluster_size: HDBSCAN's smallest cluster; 2 because a person may have two photos.
            On evenly spread faces 2 lets HDBSCAN split one person into small dense groups.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if method == "agglomerative" and (distance_threshold is None or distance_threshold < 0):
        raise ValueError(
            f"agglomerative clustering needs a cosine distance threshold of 0 or more "
            f"(e.g. 0.5), got {distance_threshold}"
        )
    if len(embeddings) < 2:
        # Both estimators refuse fewer than two samples; one face is trivially its own cluster.
        return np.arange(len(embeddings))
    if method == "agglomerative":
        return _agglomerative(embeddings, distance_threshold)
    if method == "hdbscan":
        return _hdbscan(embeddings, min_cluster_size)
    raise ValueError(f"unknown clustering method {method!r}: use one of {', '.join(METHODS)}")


def _agglomerative(embeddings: np.ndarray, distance_threshold: float) -> np.ndarray:
    # sklearn merges while the linkage distance is below distance_threshold (the tie at
    # exactly equal is immaterial).
    model = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=distance_threshold
    )
    return model.fit_predict(embeddings)


def _hdbscan(embeddings: np.ndarray, min_cluster_size: int) -> np.ndarray:
    # On unit vectors euclidean distance is sqrt(2 - 2 cos), a monotone map of cosine, so the
    # fast euclidean trees give the same density ordering as cosine would. The verification
    # threshold is not passed as cluster_selection_epsilon: it would make HDBSCAN a second
    # threshold method, and sklearn 1.9's epsilon search fails under numpy 2.4.
    size = min(min_cluster_size, len(embeddings))
    model = HDBSCAN(min_cluster_size=size, metric="euclidean", copy=True)
    return noise_as_singletons(model.fit_predict(embeddings))


def noise_as_singletons(labels: np.ndarray) -> np.ndarray:
    """Labels with each noise face (-1) moved to a new cluster of its own."""
    # HDBSCAN's -1 means "belongs to no cluster", not "one cluster of outliers": scored as one
    # cluster, every noise face would be merged with every other (a precision penalty for merges
    # never made); dropped, the hardest faces would vanish from the score. A face left alone is
    # what a photo app shows the user, so it is scored as a singleton.
    labels = np.array(labels, dtype=np.int64)
    noise = labels == -1
    labels[noise] = labels.max(initial=-1) + 1 + np.arange(noise.sum())
    return labels
