"""Face verification: same person or not, from the cosine similarity of two embeddings.

The protocol is LFW's (Huang et al., "Labeled Faces in the Wild", 2007, "unrestricted" view 2):
ten folds of genuine and impostor pairs; a similarity threshold is chosen on nine folds and
scored on the tenth, never on the pairs it is scored on. ROC AUC, equal error rate and TAR at
a fixed FAR describe the whole score distribution, with no threshold to choose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold

# FARs reported by default: 1% and 0.1%, the operating points face papers quote.
DEFAULT_FARS = (1e-2, 1e-3)


@dataclass
class Pairs:
    """Face pairs as row indices into an embedding matrix, with the same-person truth."""

    left: np.ndarray
    right: np.ndarray
    same: np.ndarray
    # An official fold per pair (LFW's pairs.txt); None lets evaluation draw stratified folds.
    folds: np.ndarray | None = None
    # Pairs of an official list dropped because an image is not in the dataset (its photo gave
    # no face, or is absent), with their folds and truth: strict scoring counts them as errors.
    missing: int = 0
    missing_folds: np.ndarray | None = None
    missing_same: np.ndarray | None = None
    # Pairs of an official list left out because a person in them is a training identity of
    # the evaluation's split: not this evaluation's pairs, never counted as errors.
    out_of_split: int = 0

    def __len__(self) -> int:
        return len(self.same)


@dataclass
class VerificationResult:
    """10-fold verification accuracy plus threshold-free ROC summaries."""

    accuracy: float
    accuracy_std: float
    threshold: float
    roc_auc: float
    eer: float
    # {FAR: TAR}; None where there are too few impostor pairs to measure that FAR.
    tar_at_far: dict[float, float | None]
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    n_pairs: int
    fold_accuracies: np.ndarray = field(repr=False)
    fold_thresholds: np.ndarray = field(repr=False)
    # Pairs of the list that could not be scored (`Pairs.missing`); with `strict` they counted
    # as errors in `accuracy` and as rejections in `tar_at_far`.
    missing: int = 0
    strict: bool = False
    # Accuracy on the scored pairs alone, as when the missing ones are dropped.
    accuracy_scored: float = 0.0


def make_pairs(
    identities: np.ndarray | Sequence[str | None], max_genuine: int | None = 3000, seed: int = 0
) -> Pairs:
    """Every genuine pair (a seeded sample of `max_genuine` if more) and as many impostor pairs.

    Impostor pairs are drawn uniformly from all pairs of faces of different identities, without
    repeats. Faces with no identity (None) are left out. Every pair has `left < right`.
    """
    rows, codes = _labelled_codes(np.asarray(identities, dtype=object))
    rng = np.random.default_rng(seed)
    left, right = _genuine_pairs(rows, codes)
    if len(left) == 0:
        raise ValueError("no identity has two faces, so there are no genuine pairs")
    if max_genuine is not None and len(left) > max_genuine:
        keep = np.sort(rng.choice(len(left), size=max_genuine, replace=False))
        left, right = left[keep], right[keep]
    imp_left, imp_right = _impostor_pairs(rows, codes, len(left), rng)
    return Pairs(
        left=np.concatenate([left, imp_left]),
        right=np.concatenate([right, imp_right]),
        same=np.concatenate([np.ones(len(left), bool), np.zeros(len(imp_left), bool)]),
    )


def _genuine_pairs(rows: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j), i < j, of faces sharing an identity, grouped by identity name."""
    order = np.argsort(codes, kind="stable")
    groups = np.split(rows[order], np.flatnonzero(np.diff(codes[order])) + 1)
    lefts, rights = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for group in groups:
        i, j = np.triu_indices(len(group), k=1)
        lefts.append(group[i])
        rights.append(group[j])
    return np.concatenate(lefts), np.concatenate(rights)


def _labelled_codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows that have an identity, and an integer per such row numbering the sorted names."""
    rows = np.flatnonzero([name is not None for name in ids])
    _, codes = np.unique(ids[rows].astype(str), return_inverse=True)
    return rows, codes.reshape(-1)


def _impostor_pairs(
    rows: np.ndarray, codes: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`count` distinct (i, j), i < j, of different identities, uniform over all such pairs."""
    sizes = np.bincount(codes)
    available = (len(rows) ** 2 - (sizes**2).sum()) // 2
    if count > available:
        raise ValueError(
            f"{count} genuine pairs need as many impostor pairs, but faces of different "
            f"identities make only {available}"
        )
    # Rejection sampling: a uniform ordered pair of distinct rows, kept when the identities
    # differ and the pair is new, is a uniform draw without replacement of an impostor pair.
    chosen: dict[tuple[int, int], None] = {}
    code_of = codes.tolist()
    while len(chosen) < count:
        a = rng.integers(len(rows), size=2 * count)
        b = rng.integers(len(rows), size=2 * count)
        for i, j in zip(a.tolist(), b.tolist(), strict=True):
            if code_of[i] != code_of[j]:
                chosen.setdefault((min(i, j), max(i, j)))
                if len(chosen) == count:
                    break
    pairs = np.array(list(chosen), dtype=np.int64).reshape(-1, 2)
    return rows[pairs[:, 0]], rows[pairs[:, 1]]


def read_lfw_pairs(
    path: str | Path, names: Sequence[str], excluded_people: Sequence[str] = ()
) -> Pairs:
    """LFW's pairs.txt as row indices, keeping its folds; pairs with an absent image are dropped.

    Args:
        path: pairs.txt ("10 300" then, per fold, 300 lines `name n1 n2` (same person) and
            300 lines `name1 n1 name2 n2` (different people)), or pairsDevTrain/Test.txt
            (one count, one set).
        names: the source file of each dataset row ("Aaron_Peirsol_0001.jpg" or a path to it);
            a pair's images are found by file stem. Where one photo gave several faces, the
            first row stands for it.
        excluded_people: people (LFW names) whose pairs are not part of this evaluation (the
            split's training identities): counted in `out_of_split`, not in `missing`.
    """
    path = Path(path)
    excluded = set(excluded_people)
    lines = [(n, line.split()) for n, line in enumerate(path.read_text().splitlines(), 1)]
    lines = [(n, tokens) for n, tokens in lines if tokens]
    if not lines:
        raise ValueError(f"{path}: empty; expected LFW's pairs.txt")
    n_folds, per_class = _read_header(path, lines[0][1])
    body = lines[1:]
    if len(body) != n_folds * 2 * per_class:
        raise ValueError(
            f"{path}: header promises {n_folds} x {2 * per_class} pairs but "
            f"{len(body)} pair lines follow"
        )
    row_of = _rows_by_stem(names)
    left, right, same, folds = [], [], [], []
    missing_same, missing_folds, out_of_split = [], [], 0
    for k, (n, tokens) in enumerate(body):
        first, second, is_same = _read_pair_line(path, n, tokens)
        if first in row_of and second in row_of:
            left.append(row_of[first])
            right.append(row_of[second])
            same.append(is_same)
            folds.append(k // (2 * per_class))
        elif {_person(first), _person(second)} & excluded:
            out_of_split += 1
        else:
            missing_same.append(is_same)
            missing_folds.append(k // (2 * per_class))
    return Pairs(
        left=np.array(left, dtype=np.int64),
        right=np.array(right, dtype=np.int64),
        same=np.array(same, dtype=bool),
        # A single set (pairsDevTest) has no folds to rotate over: draw stratified ones.
        folds=np.array(folds, dtype=np.int64) if n_folds > 1 else None,
        missing=len(missing_same),
        missing_folds=np.array(missing_folds, dtype=np.int64) if n_folds > 1 else None,
        missing_same=np.array(missing_same, dtype=bool),
        out_of_split=out_of_split,
    )


def _person(stem: str) -> str:
    """The person of an LFW image stem: "George_W_Bush_0001" -> "George_W_Bush"."""
    return stem.rsplit("_", 1)[0]


def _read_header(path: Path, tokens: list[str]) -> tuple[int, int]:
    """(folds, pairs per class per fold) from "10 300", or (1, n) from a one-set file's "n"."""
    try:
        numbers = [int(token) for token in tokens]
    except ValueError:
        numbers = []
    if len(numbers) == 1:
        return 1, numbers[0]
    if len(numbers) != 2:
        raise ValueError(f"{path}:1: expected a header like '10 300', got {' '.join(tokens)!r}")
    return numbers[0], numbers[1]


def _read_pair_line(path: Path, n: int, tokens: list[str]) -> tuple[str, str, bool]:
    """The two image stems of a pairs.txt line ("Name_0001") and whether it is a genuine pair."""
    try:
        if len(tokens) == 3:
            name, a, b = tokens
            return f"{name}_{int(a):04d}", f"{name}_{int(b):04d}", True
        if len(tokens) == 4:
            name_a, a, name_b, b = tokens
            return f"{name_a}_{int(a):04d}", f"{name_b}_{int(b):04d}", False
    except ValueError:
        pass
    raise ValueError(
        f"{path}:{n}: expected 'name n1 n2' or 'name1 n1 name2 n2', got {' '.join(tokens)!r}"
    )


def _rows_by_stem(names: Sequence[str]) -> dict[str, int]:
    """File stem -> first dataset row with that source file."""
    rows: dict[str, int] = {}
    for row, name in enumerate(names):
        rows.setdefault(Path(name).stem, row)
    return rows


def pair_similarities(embeddings: np.ndarray, pairs: Pairs) -> np.ndarray:
    """Cosine similarity of each pair: `[N, D]` L2-normalised rows -> `[P]` float64 dot products.

    Float64 so that thresholds halfway between two float32 scores stay strictly between them.
    """
    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {emb.shape}")
    if len(pairs) and max(pairs.left.max(), pairs.right.max()) >= len(emb):
        raise ValueError(f"pairs index rows beyond the {len(emb)} embeddings given")
    left = emb[pairs.left].astype(np.float64)
    right = emb[pairs.right].astype(np.float64)
    return np.einsum("ij,ij->i", left, right)


def evaluate_verification(
    embeddings: np.ndarray,
    pairs: Pairs,
    n_folds: int = 10,
    seed: int = 0,
    fars: Sequence[float] = DEFAULT_FARS,
    strict: bool = False,
) -> VerificationResult:
    """LFW's 10-fold protocol on `pairs`, plus ROC AUC, EER and TAR at each FAR in `fars`.

    Folds are `pairs.folds` when given (then `n_folds` is unused), else stratified by
    same / different and shuffled with `seed`. Accuracy and threshold are means over folds;
    accuracy_std is the standard deviation (not the standard error) over folds.

    With `strict`, the pairs of the list that could not be scored (`pairs.missing`: a photo
    gave no face) count as errors in their fold, as a paper's number on the whole list would,
    and a missing genuine pair as a rejection in TAR; ROC AUC and EER stay on the scored pairs.
    """
    if pairs.same.all() or not pairs.same.any():
        raise ValueError(
            f"verification needs genuine and impostor pairs, got {int(pairs.same.sum())} and "
            f"{int((~pairs.same).sum())} ({pairs.missing} dropped for images not in the dataset)"
        )
    scores = pair_similarities(embeddings, pairs)
    folds = pairs.folds if pairs.folds is not None else _stratified_folds(pairs.same, n_folds, seed)
    fold_accuracies, fold_thresholds = [], []
    for fold in np.unique(folds):
        test = folds == fold
        threshold = best_threshold(scores[~test], pairs.same[~test])
        fold_thresholds.append(threshold)
        fold_accuracies.append(np.mean((scores[test] >= threshold) == pairs.same[test]))
    fpr, tpr, _ = roc_curve(pairs.same, scores, drop_intermediate=False)
    n_impostors = int((~pairs.same).sum())
    scored = float(np.mean(fold_accuracies))
    accuracy = scored
    tar_scale = 1.0
    if strict and pairs.missing:
        fold_accuracies = _with_missing_as_errors(pairs, folds, fold_accuracies)
        accuracy = float(np.mean(fold_accuracies))
        n_genuine = int(pairs.same.sum())
        missing_genuine = int(pairs.missing_same.sum()) if pairs.missing_same is not None else 0
        tar_scale = n_genuine / (n_genuine + missing_genuine)
    tars = {far: tar_at_far(fpr, tpr, far, n_impostors) for far in fars}
    return VerificationResult(
        accuracy=accuracy,
        accuracy_std=float(np.std(fold_accuracies)),
        threshold=float(np.mean(fold_thresholds)),
        roc_auc=float(roc_auc_score(pairs.same, scores)),
        eer=equal_error_rate(fpr, tpr),
        tar_at_far={far: None if t is None else t * tar_scale for far, t in tars.items()},
        fpr=fpr,
        tpr=tpr,
        n_pairs=len(pairs),
        fold_accuracies=np.array(fold_accuracies),
        fold_thresholds=np.array(fold_thresholds),
        missing=pairs.missing,
        strict=strict,
        accuracy_scored=scored,
    )


def _with_missing_as_errors(
    pairs: Pairs, folds: np.ndarray, fold_accuracies: list[float]
) -> list[float]:
    """Each fold's accuracy with its missing pairs counted as wrong.

    Without official folds for the missing pairs (a one-set list), they are spread over the
    drawn folds in proportion to their sizes, which is the same overall share.
    """
    fold_ids = np.unique(folds)
    sizes = np.array([(folds == fold).sum() for fold in fold_ids], dtype=np.float64)
    if pairs.missing_folds is not None:
        missing = np.array([(pairs.missing_folds == fold).sum() for fold in fold_ids], float)
    else:
        missing = pairs.missing * sizes / sizes.sum()
    return [a * n / (n + m) for a, n, m in zip(fold_accuracies, sizes, missing, strict=True)]


def _stratified_folds(same: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """A fold number per pair, each fold with the overall share of genuine pairs."""
    smaller = min(int(same.sum()), int((~same).sum()))
    if smaller < n_folds:
        raise ValueError(
            f"{n_folds}-fold verification needs at least {n_folds} genuine and impostor pairs, "
            f"got {int(same.sum())} and {int((~same).sum())}"
        )
    folds = np.empty(len(same), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(same)), same)):
        folds[test] = fold
    return folds


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The similarity threshold (same person when score >= it) most accurate on these pairs.

    It lies halfway between the two neighbouring scores that bound the best cut, so it sits
    in the gap rather than on a training pair. Ties go to the strictest (highest) threshold.
    """
    n_same, n_diff = int(same.sum()), int((~same).sum())
    if n_same == 0 or n_diff == 0:
        raise ValueError("choosing a threshold needs both genuine and impostor training pairs")
    fpr, tpr, cuts = roc_curve(same, scores, drop_intermediate=False)
    accuracy = (tpr * n_same + (1 - fpr) * n_diff) / (n_same + n_diff)
    k = int(np.argmax(accuracy))
    if k == 0:  # reject everything: just above the highest score (cuts[0] is +inf)
        return float(np.nextafter(cuts[1], np.inf))
    if k == len(cuts) - 1:  # accept everything: the lowest score itself
        return float(cuts[k])
    return float((cuts[k] + cuts[k + 1]) / 2)


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The error rate where false accepts equal false rejects, interpolated along the ROC."""
    # fpr - fnr rises from -1 (accept nothing) to +1 (accept everything); find its zero.
    gap = fpr - (1 - tpr)
    k = int(np.argmax(gap >= 0))
    if k == 0:
        return float(fpr[0])
    weight = gap[k - 1] / (gap[k - 1] - gap[k])
    return float(fpr[k - 1] + weight * (fpr[k] - fpr[k - 1]))


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float, n_impostors: int) -> float | None:
    """The best true accept rate of any threshold whose false accept rate is at most `far`.

    None when there are fewer than 1/far impostor pairs: then no threshold can show a false
    accept rate that small other than zero, and the number would overstate what is known.
    """
    if n_impostors * far < 1 - 1e-9:
        return None
    # The tolerance keeps an FPR of exactly k/n, computed by division, from missing `far`.
    return float(tpr[fpr <= far + 1e-12].max())
