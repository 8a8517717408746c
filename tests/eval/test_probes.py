"""Few-shot identity probes and attribute probes on tiny synthetic embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from facerep.encoders.base import l2_normalise
from facerep.eval.probes import attribute_probe, few_shot_probes


def identity_embeddings(
    n_identities: int = 6, per_identity: int = 7, noise: float = 0.05, dim: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows scattered by `noise` around one random direction per identity."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_identities, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = np.repeat(centres, per_identity, axis=0) + noise * rng.normal(
        size=(n_identities * per_identity, dim)
    )
    names = np.array([f"id{i}" for i in range(n_identities)], dtype=object)
    return l2_normalise(rows), np.repeat(names, per_identity)


def test_few_shot_probes_separable_identities_score_one():
    embeddings, identities = identity_embeddings()
    results = few_shot_probes(embeddings, identities, n_trials=2)
    for k in (1, 3, 5):
        assert results[f"linear_{k}shot"] == pytest.approx(1.0)
        assert results[f"knn_{k}shot"] == pytest.approx(1.0)
        assert results[f"knn_{k}shot_std"] == pytest.approx(0.0)


def test_few_shot_probes_random_embeddings_are_near_chance():
    # 8 identities: chance is 1/8; pure noise rows carry no identity at all.
    embeddings, identities = identity_embeddings(n_identities=8, per_identity=8, noise=100.0)
    results = few_shot_probes(embeddings, identities, shots=(1, 3), n_trials=3)
    for key in ("linear_1shot", "knn_1shot", "linear_3shot", "knn_3shot"):
        assert results[key] < 0.35


def test_few_shot_probes_are_seeded():
    embeddings, identities = identity_embeddings(noise=1.0)
    first = few_shot_probes(embeddings, identities, shots=(1,), n_trials=2, seed=3)
    assert first == few_shot_probes(embeddings, identities, shots=(1,), n_trials=2, seed=3)


def test_few_shot_probes_nan_without_two_eligible_identities():
    # 7 faces per identity: 7 shots would leave none to test on.
    embeddings, identities = identity_embeddings()
    results = few_shot_probes(embeddings, identities, shots=(7,), n_trials=1)
    assert np.isnan(results["linear_7shot"]) and np.isnan(results["knn_7shot"])


def toy_attribute(labels: np.ndarray, seed: int, classes: tuple = (0, 1)) -> np.ndarray:
    """Features whose first column is 3 x the label's place in `classes`: separable."""
    rng = np.random.default_rng(seed)
    index = np.array([classes.index(label) for label in labels])
    features = rng.normal(size=(len(labels), 4)) * 0.1
    features[:, 0] += 3.0 * index
    return features


def test_attribute_probe_binary_separable():
    train_y, test_y = np.tile([0, 1], 20), np.tile([0, 1], 10)
    results = attribute_probe(toy_attribute(train_y, 0), train_y, toy_attribute(test_y, 1), test_y)
    assert results["accuracy"] == pytest.approx(1.0)
    assert results["roc_auc"] == pytest.approx(1.0)
    assert results["majority_accuracy"] == pytest.approx(0.5)


def test_attribute_probe_multiclass_string_labels():
    classes = ("young", "middle", "old")
    train_y = np.tile(np.array(classes, dtype=object), 15)
    test_y = np.tile(np.array(classes, dtype=object), 5)
    train_x, test_x = toy_attribute(train_y, 0, classes), toy_attribute(test_y, 1, classes)
    results = attribute_probe(train_x, train_y, test_x, test_y)
    assert results["accuracy"] == pytest.approx(1.0)
    assert results["roc_auc"] == pytest.approx(1.0)


def test_attribute_probe_string_binary_and_missing_test_class():
    train_y = np.tile(np.array(["f", "m"], dtype=object), 20)
    test_y = np.array(["m"] * 6, dtype=object)  # one class only: AUC is undefined
    train_x, test_x = toy_attribute(train_y, 0, ("f", "m")), toy_attribute(test_y, 1, ("f", "m"))
    results = attribute_probe(train_x, train_y, test_x, test_y)
    assert results["accuracy"] == pytest.approx(1.0)
    assert np.isnan(results["roc_auc"])


def test_attribute_probe_rejects_labels_unseen_in_training():
    train_y, test_y = np.tile([0, 1], 10), np.array([0, 2])
    with pytest.raises(ValueError, match="never occur in training"):
        attribute_probe(toy_attribute(train_y, 0), train_y, np.zeros((2, 4)), test_y)
