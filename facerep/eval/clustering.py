"""Scoring face clustering (`facerep.clustering`) against identities: pairwise and BCubed F1.

Pairwise precision and recall count pairs of faces put in the same cluster; BCubed (Bagga and
Baldwin, 1998, "Entity-based cross-document coreferencing using the vector space model")
averages per face, so a big identity does not drown the small ones.
Embeddings are `[N, D]` unit rows; similarity is cosine.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix, pair_confusion_matrix

from facerep.clustering import METHODS, cluster_embeddings


def pairwise_scores(labels_true: np.ndarray, labels_pred: np.ndarray) -> tuple[float, float, float]:
    """Pairwise (precision, recall, F1): a pair is positive when both faces share a cluster.

    With no predicted pairs (all singletons) precision is 1.0, since no merge was wrong; with no
    true pairs recall is 1.0, since there was nothing to find.
    """
    # sklearn counts ordered pairs (each pair twice); the factor cancels in every ratio.
    pairs = pair_confusion_matrix(labels_true, labels_pred)
    true_pos, false_pos, false_neg = pairs[1, 1], pairs[0, 1], pairs[1, 0]
    precision = _ratio(true_pos, true_pos + false_pos)
    recall = _ratio(true_pos, true_pos + false_neg)
    return precision, recall, _f1(precision, recall)


def bcubed_scores(labels_true: np.ndarray, labels_pred: np.ndarray) -> tuple[float, float, float]:
    """BCubed (precision, recall, F1), averaged over faces.

    A face's precision is the share of its predicted cluster that has its identity; its recall
    is the share of its identity that sits in its cluster. From the contingency counts n_ij
    (identity i, cluster j): precision = sum_j (sum_i n_ij^2 / |cluster j|) / N, recall alike.
    """
    counts = contingency_matrix(labels_true, labels_pred, sparse=True).astype(np.float64)
    squared = counts.multiply(counts)
    n_faces = counts.sum()
    cluster_sizes = np.asarray(counts.sum(axis=0)).ravel()
    identity_sizes = np.asarray(counts.sum(axis=1)).ravel()
    precision = float((np.asarray(squared.sum(axis=0)).ravel() / cluster_sizes).sum() / n_faces)
    recall = float((np.asarray(squared.sum(axis=1)).ravel() / identity_sizes).sum() / n_faces)
    return precision, recall, _f1(precision, recall)


def evaluate_clustering(
    embeddings: np.ndarray, identities: np.ndarray, threshold: float
) -> dict[str, dict[str, float]]:
    """Both methods scored against the identities: pairwise, BCubed, NMI and cluster counts.

    Args:
        embeddings: `[N, D]` unit rows of labelled faces.
        identities: `[N]` identity names.
        threshold: cosine-similarity verification threshold (same person when >= threshold);
            agglomerative cuts its tree there, HDBSCAN chooses its own clusters.

    Returns:
        {"agglomerative": {...}, "hdbscan": {...}}, each with pairwise_precision/recall/f1,
        bcubed_precision/recall/f1, nmi, clusters (found, singletons included) and identities.
    """
    identities = np.asarray(identities, dtype=object)
    if any(name is None for name in identities):
        raise ValueError("evaluate_clustering: some faces have no identity; pass labelled faces")
    labels_true = np.unique(identities.astype(str), return_inverse=True)[1]
    # Same person at similarity >= threshold is cosine distance <= 1 - threshold. A threshold
    # above 1, which no pair reaches, becomes distance 0, which merges nothing.
    distance = max(0.0, 1.0 - threshold)
    return {
        method: _scores(labels_true, cluster_embeddings(embeddings, method, distance))
        for method in METHODS
    }


def _scores(labels_true: np.ndarray, labels_pred: np.ndarray) -> dict[str, float]:
    pair_p, pair_r, pair_f1 = pairwise_scores(labels_true, labels_pred)
    cube_p, cube_r, cube_f1 = bcubed_scores(labels_true, labels_pred)
    return {
        "pairwise_precision": pair_p,
        "pairwise_recall": pair_r,
        "pairwise_f1": pair_f1,
        "bcubed_precision": cube_p,
        "bcubed_recall": cube_r,
        "bcubed_f1": cube_f1,
        "nmi": float(normalized_mutual_info_score(labels_true, labels_pred)),
        "clusters": len(np.unique(labels_pred)),
        "identities": len(np.unique(labels_true)),
    }


def _ratio(numerator: float, denominator: float) -> float:
    # An empty denominator means nothing was claimed (or nothing to find): nothing went wrong.
    return float(numerator / denominator) if denominator else 1.0


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 2.0 * precision * recall / total if total else 0.0
