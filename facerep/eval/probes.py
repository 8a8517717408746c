"""Linear and nearest-neighbour probes of frozen face embeddings.

Few-shot identity probes follow the few-shot evaluation of Bulat et al. (2022), "Pre-training
strategies and datasets for facial representation learning": k labelled faces per person train
a light classifier on the frozen representation, the person's other faces test it. Attribute
probes (gender, age group, CelebA attributes) fit a logistic regression on standardised
embeddings, the usual linear-evaluation protocol.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, label_binarize

# Unit-norm rows are small inputs, so a probe needs larger weights than the default C=1 allows
# to separate near identities; C=10 regularises lightly and still converges on a few faces.
FEW_SHOT_C = 10.0
MAX_ITER = 2000


def few_shot_probes(
    embeddings: np.ndarray,
    identities: np.ndarray,
    shots: Sequence[int] = (1, 3, 5),
    n_trials: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Few-shot identity accuracy of a linear probe and of 1-NN, mean and std over trials.

    For each trial and each k, identities with more than k faces give k random training faces
    and test on the rest. The linear probe is a logistic regression on the raw unit rows (no
    standardising, so the cosine geometry the encoder learned is what is probed). The kNN probe
    is 1-NN by cosine: with exactly k faces per person a k-vote would only add ties.

    Args:
        embeddings: `[N, D]` unit rows.
        identities: `[N]` identity names.
        shots: training faces per identity.
        n_trials: random draws of the training faces.
        seed: seeds the draws; the same seed gives the same numbers.

    Returns:
        "linear_{k}shot", "linear_{k}shot_std", "knn_{k}shot", "knn_{k}shot_std" for each k;
        NaN where fewer than two identities have more than k faces.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    identities = np.asarray(identities, dtype=object).astype(str)
    rng = np.random.default_rng(seed)
    results: dict[str, float] = {}
    for k in shots:
        scores = [_few_shot_trial(embeddings, identities, k, rng) for _ in range(n_trials)]
        for name, column in zip(
            ("linear", "knn"), np.array(scores, dtype=np.float64).T, strict=True
        ):
            results[f"{name}_{k}shot"] = float(np.mean(column))
            results[f"{name}_{k}shot_std"] = float(np.std(column))
    return results


def attribute_probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> dict[str, float]:
    """Linear probe of one attribute: accuracy and ROC AUC on the test faces.

    The probe is a logistic regression on standardised embeddings. AUC is on the predicted
    probabilities: of the second class for two classes, else one-vs-rest macro over the classes
    present in the test set (NaN when it has only one). `majority_accuracy` is the score of
    always guessing the commonest training label, the floor to read accuracy against on
    unbalanced attributes such as CelebA's.

    Args:
        train_x, test_x: `[N, D]` embeddings.
        train_y, test_y: `[N]` labels, int or str; test labels must occur in training.
    """
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    unseen = np.setdiff1d(test_y, train_y)
    if len(unseen):
        raise ValueError(f"attribute_probe: test labels {unseen.tolist()} never occur in training")
    if len(np.unique(train_y)) < 2:
        raise ValueError("attribute_probe: training labels have a single class; nothing to learn")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=MAX_ITER))
    probe.fit(train_x, train_y)
    values, counts = np.unique(train_y, return_counts=True)
    return {
        "accuracy": float(accuracy_score(test_y, probe.predict(test_x))),
        "roc_auc": _roc_auc(test_y, probe.predict_proba(test_x), probe.classes_),
        "majority_accuracy": float(np.mean(test_y == values[np.argmax(counts)])),
    }


def _few_shot_trial(
    embeddings: np.ndarray, identities: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[float, float]:
    split = _few_shot_split(identities, k, rng)
    if split is None:
        return float("nan"), float("nan")
    train, test = split
    linear = LogisticRegression(C=FEW_SHOT_C, max_iter=MAX_ITER)
    knn = KNeighborsClassifier(n_neighbors=1, metric="cosine")
    return (
        _fit_score(linear, embeddings, identities, train, test),
        _fit_score(knn, embeddings, identities, train, test),
    )


def _fit_score(
    model: ClassifierMixin,
    embeddings: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
) -> float:
    model.fit(embeddings[train], labels[train])
    return float(accuracy_score(labels[test], model.predict(embeddings[test])))


def _few_shot_split(
    identities: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows of k random training faces per eligible identity, and rows of their other faces."""
    _, inverse, counts = np.unique(identities, return_inverse=True, return_counts=True)
    eligible = np.flatnonzero(counts > k)
    if len(eligible) < 2:
        return None  # one class is no classification problem
    train, test = [], []
    for label in eligible:
        rows = rng.permutation(np.flatnonzero(inverse == label))
        train.append(rows[:k])
        test.append(rows[k:])
    return np.concatenate(train), np.concatenate(test)


def _roc_auc(test_y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    present = np.isin(classes, test_y)
    if present.sum() < 2:
        return float("nan")  # AUC needs positives and negatives
    if len(classes) == 2:
        return float(roc_auc_score(test_y == classes[1], proba[:, 1]))
    # One-vs-rest as indicator columns lets classes absent from the test set drop out cleanly.
    indicators = label_binarize(test_y, classes=classes)
    return float(roc_auc_score(indicators[:, present], proba[:, present], average="macro"))
