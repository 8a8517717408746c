"""Clustering metrics against hand-computed cases, and the evaluation that scores both methods."""

from __future__ import annotations

import numpy as np
import pytest

from facerep.eval.clustering import bcubed_scores, evaluate_clustering, pairwise_scores
from tests.test_clustering import blobs


def test_pairwise_scores_by_hand():
    # Pairs of items with true [0,0,1,1], predicted [0,0,0,1]:
    # predicted together: (0,1) (0,2) (1,2); truly together: (0,1) (2,3).
    # TP = 1 (0,1); FP = 2 (0,2) (1,2); FN = 1 (2,3).
    # P = 1/3, R = 1/2, F1 = 2 * (1/6) / (5/6) = 0.4.
    precision, recall, f1 = pairwise_scores(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1]))
    assert precision == pytest.approx(1 / 3)
    assert recall == pytest.approx(1 / 2)
    assert f1 == pytest.approx(0.4)


def test_bcubed_scores_by_hand():
    # Same labels. Cluster A = {0,1,2}, B = {3}; identity 0 = {0,1}, identity 1 = {2,3}.
    # Per item precision (share of its cluster with its identity): 2/3, 2/3, 1/3, 1 -> mean 2/3.
    # Per item recall (share of its identity in its cluster): 1, 1, 1/2, 1/2 -> mean 3/4.
    # F1 = 2 * (2/3) * (3/4) / (2/3 + 3/4) = 1 / (17/12) = 12/17.
    precision, recall, f1 = bcubed_scores(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1]))
    assert precision == pytest.approx(2 / 3)
    assert recall == pytest.approx(3 / 4)
    assert f1 == pytest.approx(12 / 17)


def test_one_big_cluster_by_hand():
    # true [0,0,1], everything predicted together: pairs (0,1) TP, (0,2) (1,2) FP -> P 1/3, R 1.
    # BCubed precision per item 2/3, 2/3, 1/3 -> 5/9; recall 1 for every item.
    true, pred = np.array([0, 0, 1]), np.array([7, 7, 7])
    assert pairwise_scores(true, pred) == pytest.approx((1 / 3, 1.0, 0.5))
    assert bcubed_scores(true, pred)[:2] == pytest.approx((5 / 9, 1.0))


def test_all_singletons_by_hand():
    # true [0,0,1], every item alone: no predicted pair, so no wrong merge (P = 1 by convention)
    # and the one true pair (0,1) is missed (R = 0, F1 = 0).
    # BCubed: precision 1 per item; recall 1/2, 1/2, 1 -> 2/3; F1 = 2 * (2/3) / (5/3) = 0.8.
    true, pred = np.array([0, 0, 1]), np.array([0, 1, 2])
    assert pairwise_scores(true, pred) == pytest.approx((1.0, 0.0, 0.0))
    assert bcubed_scores(true, pred) == pytest.approx((1.0, 2 / 3, 0.8))


@pytest.mark.parametrize("pred", [[5, 5, 3, 3, 9], [0, 0, 1, 1, 2]])
def test_perfect_clustering_scores_one_whatever_the_label_names(pred):
    true = np.array([0, 0, 1, 1, 2])
    assert pairwise_scores(true, np.array(pred)) == pytest.approx((1.0, 1.0, 1.0))
    assert bcubed_scores(true, np.array(pred)) == pytest.approx((1.0, 1.0, 1.0))


def test_singletons_everywhere_is_perfect_when_everyone_is_alone():
    # No true pairs and no predicted pairs: nothing to find and nothing wrong.
    assert pairwise_scores(np.arange(4), np.arange(4)[::-1]) == pytest.approx((1.0, 1.0, 1.0))


def test_evaluate_clustering_reports_both_methods():
    points, identities = blobs()
    results = evaluate_clustering(points, identities, threshold=0.5)
    assert set(results) == {"agglomerative", "hdbscan"}
    agglomerative = results["agglomerative"]
    for key in ("pairwise_f1", "bcubed_f1", "nmi", "pairwise_precision", "bcubed_recall"):
        assert agglomerative[key] == pytest.approx(1.0)
    assert agglomerative["clusters"] == 3 and agglomerative["identities"] == 3
    assert set(results["hdbscan"]) == set(agglomerative)


def test_evaluate_clustering_counts_singletons_as_clusters():
    points, identities = blobs()
    # A threshold above every pairwise similarity leaves every face alone.
    results = evaluate_clustering(points, identities, threshold=1.01)
    assert results["agglomerative"]["clusters"] == len(points)
    assert results["agglomerative"]["pairwise_recall"] == 0.0
