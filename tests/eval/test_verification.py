"""Verification pairs, LFW pairs.txt, and the 10-fold protocol against cases worked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerep.eval.verification import (
    Pairs,
    best_threshold,
    evaluate_verification,
    make_pairs,
    pair_similarities,
    read_lfw_pairs,
)
from tests.eval.conftest import on_circle


def scored_pairs(
    genuine: list[float], impostor: list[float], folds: list[int] | None = None
) -> tuple[np.ndarray, Pairs]:
    """Unit vectors whose pairs (0, k) have exactly the given cosine similarities."""
    scores = np.array(genuine + impostor)
    rows = np.stack([scores, np.sqrt(1 - scores**2)], axis=1)
    embeddings = np.vstack([[1.0, 0.0], rows]).astype(np.float32)
    pairs = Pairs(
        left=np.zeros(len(scores), dtype=np.int64),
        right=np.arange(1, len(scores) + 1),
        same=np.array([True] * len(genuine) + [False] * len(impostor)),
        folds=None if folds is None else np.array(folds),
    )
    return embeddings, pairs


def as_set(pairs: Pairs) -> set[tuple[int, int]]:
    return set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))


# make_pairs


def test_make_pairs_takes_every_genuine_pair_and_as_many_impostors() -> None:
    ids = np.array(["a", "a", "a", "b", "b", "c", None], dtype=object)
    pairs = make_pairs(ids)
    # a: (0,1) (0,2) (1,2); b: (3,4); c has one face; row 6 has no identity.
    assert as_set(Pairs(pairs.left[pairs.same], pairs.right[pairs.same], pairs.same)) == {
        (0, 1),
        (0, 2),
        (1, 2),
        (3, 4),
    }
    assert pairs.same.sum() == (~pairs.same).sum() == 4
    impostors = zip(pairs.left[~pairs.same], pairs.right[~pairs.same], strict=True)
    assert all(ids[i] != ids[j] and 6 not in (i, j) for i, j in impostors)


def test_make_pairs_can_use_up_every_impostor_pair() -> None:
    # 3 genuine pairs among the a's; the only impostors are each a with the one b.
    pairs = make_pairs(["a", "a", "a", "b"])
    assert as_set(Pairs(pairs.left[~pairs.same], pairs.right[~pairs.same], pairs.same)) == {
        (0, 3),
        (1, 3),
        (2, 3),
    }


def test_make_pairs_has_no_duplicates_no_self_pairs_and_is_seeded() -> None:
    ids = np.repeat([f"id{k}" for k in range(30)], 4).astype(object)
    pairs = make_pairs(ids, seed=3)
    assert len(pairs) == 2 * 30 * 6  # 6 = C(4, 2) genuine pairs per identity
    assert np.all(pairs.left < pairs.right)
    assert len(as_set(pairs)) == len(pairs)
    assert np.array_equal(ids[pairs.left] == ids[pairs.right], pairs.same)
    again, other = make_pairs(ids, seed=3), make_pairs(ids, seed=4)
    assert np.array_equal(again.left, pairs.left) and np.array_equal(again.right, pairs.right)
    assert as_set(other) != as_set(pairs)


def test_make_pairs_subsamples_genuine_pairs_to_max_genuine() -> None:
    ids = np.repeat(list("abcde"), 10).astype(object)  # 5 x C(10, 2) = 225 genuine pairs
    pairs = make_pairs(ids, max_genuine=50)
    assert pairs.same.sum() == (~pairs.same).sum() == 50
    assert np.all(ids[pairs.left[pairs.same]] == ids[pairs.right[pairs.same]])
    assert len(make_pairs(ids, max_genuine=None)) == 450


def test_make_pairs_says_when_pairs_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="no identity has two faces"):
        make_pairs(["a", "b", "c"])
    # 6 genuine pairs among four a's, but only 4 impostor pairs (each a with b).
    with pytest.raises(ValueError, match=r"6 genuine pairs need as many impostor .* only 4"):
        make_pairs(["a", "a", "a", "a", "b"])


# evaluate_verification


def test_pair_similarities_are_dot_products() -> None:
    embeddings, pairs = scored_pairs([0.9, 0.25], [-0.5])
    assert pair_similarities(embeddings, pairs) == pytest.approx([0.9, 0.25, -0.5], abs=1e-6)


def test_separable_identities_score_perfectly() -> None:
    # Three people 120 degrees apart, two photos each 5 degrees apart: genuine pairs score
    # cos 5 = 0.996, impostors at most cos 115 = -0.42. Every threshold in the gap is right.
    embeddings = on_circle([0, 5, 120, 125, 240, 245])
    ids = np.array(["a", "a", "b", "b", "c", "c"], dtype=object)
    result = evaluate_verification(embeddings, make_pairs(ids), n_folds=3)
    assert result.accuracy == 1.0 and result.accuracy_std == 0.0
    assert result.roc_auc == 1.0
    assert result.eer == 0.0
    assert -0.42 < result.threshold < 0.996
    assert result.n_pairs == 6
    # 3 impostor pairs cannot show a 1% or 0.1% false accept rate.
    assert result.tar_at_far == {1e-2: None, 1e-3: None}


def test_overlapping_scores_give_the_hand_computed_auc_and_eer() -> None:
    # Genuine 0.9 0.6 0.3, impostor 0.7 0.2 0.1. AUC = P(genuine > impostor):
    # 0.9 beats 3, 0.6 beats 2, 0.3 beats 2 -> 7/9.
    # ROC from the top: .9G .7I .6G .3G .2I .1I. At FPR 1/3 the TPR climbs from 1/3 to 1,
    # so FNR falls from 2/3 to 0 and meets FPR = 1/3 on the way: EER = 1/3.
    embeddings, pairs = scored_pairs([0.9, 0.6, 0.3], [0.7, 0.2, 0.1])
    result = evaluate_verification(embeddings, pairs, n_folds=3)
    assert result.roc_auc == pytest.approx(7 / 9)
    assert result.eer == pytest.approx(1 / 3)
    assert result.fpr[0] == 0 and result.tpr[-1] == 1


def test_threshold_sits_halfway_in_the_best_gap() -> None:
    # G 0.9 0.8 / I 0.3 0.1: any cut in (0.3, 0.8] is right on all four; halfway is 0.55.
    scores = np.array([0.9, 0.8, 0.3, 0.1])
    assert best_threshold(scores, np.array([True, True, False, False])) == pytest.approx(0.55)


def test_each_fold_is_scored_with_a_threshold_chosen_without_it() -> None:
    # Fold 0: G .8 .6 / I .5 .2.   Fold 1: G .9 .7 .65 / I .75 .1 0.
    # Test fold 0, train on fold 1 (.9G .75I .7G .65G .1I 0I): accuracy by cut is
    #   >.9 3/6, (.75,.9] 4/6, (.7,.75] 3/6, (.65,.7] 4/6, (.1,.65] 5/6, (0,.1] 4/6, <=0 3/6,
    #   so threshold (.1 + .65) / 2 = .375, which accepts fold 0's impostor .5: 3/4 right.
    # Test fold 1, train on fold 0: only (.5, .6] is 4/4, threshold .55, which accepts
    #   fold 1's impostor .75: 5/6 right.
    # Peeking (choosing on all ten pairs) gives .55 for both, and fold 0 would score 4/4.
    embeddings, pairs = scored_pairs(
        [0.8, 0.6, 0.9, 0.7, 0.65], [0.5, 0.2, 0.75, 0.1, 0.0], folds=[0, 0, 1, 1, 1, 0, 0, 1, 1, 1]
    )
    result = evaluate_verification(embeddings, pairs)
    assert result.fold_thresholds == pytest.approx([0.375, 0.55], abs=1e-6)
    assert result.fold_accuracies == pytest.approx([3 / 4, 5 / 6])
    assert result.accuracy == pytest.approx((3 / 4 + 5 / 6) / 2)
    assert result.threshold == pytest.approx((0.375 + 0.55) / 2, abs=1e-6)
    peeked = best_threshold(pair_similarities(embeddings, pairs), pairs.same)
    assert peeked == pytest.approx(0.55, abs=1e-6)


def test_tar_at_far_takes_the_best_threshold_within_the_far() -> None:
    # 100 impostors at 0.00 0.01 ... 0.99; genuine .995 .985 .5 .2. FAR <= 1% allows one
    # impostor (0.99) through: the threshold can drop to 0.985, accepting 2 of 4 genuine.
    # 100 impostors cannot measure a 0.1% FAR.
    embeddings, pairs = scored_pairs([0.995, 0.985, 0.5, 0.2], [k / 100 for k in range(100)])
    result = evaluate_verification(embeddings, pairs, n_folds=4)
    assert result.tar_at_far == {1e-2: pytest.approx(0.5), 1e-3: None}


def test_stratified_folds_are_seeded_and_need_enough_pairs() -> None:
    rng = np.random.default_rng(0)
    embeddings, pairs = scored_pairs(
        list(rng.uniform(0.2, 1, 40)), list(rng.uniform(-0.5, 0.6, 40))
    )
    first, again = (
        evaluate_verification(embeddings, pairs),
        evaluate_verification(embeddings, pairs),
    )
    assert np.array_equal(first.fold_accuracies, again.fold_accuracies)
    assert len(first.fold_accuracies) == 10
    with pytest.raises(ValueError, match="at least 10 genuine and impostor pairs"):
        evaluate_verification(*scored_pairs([0.9] * 9, [0.1] * 20))


# read_lfw_pairs

PAIRS_TXT = """2\t2
Alice\t1\t2
Bob\t1\t3
Alice\t1\tBob\t2
Carol\t1\tBob\t1
Carol\t1\t2
Alice\t2\t3
Bob\t2\tCarol\t2
Alice\t1\tCarol\t1
"""

NAMES = [
    "lfw/Alice/Alice_0001.jpg",
    "lfw/Alice/Alice_0002.jpg",
    "Bob_0001.jpg",
    "Bob_0002.jpg",
    "Bob_0003.jpg",
    "Carol_0001.jpg",
    "Carol_0002.jpg",
]


def test_read_lfw_pairs_maps_names_to_rows_and_keeps_folds(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(PAIRS_TXT)
    pairs = read_lfw_pairs(path, NAMES)
    # Rows: Alice 1,2 -> 0,1; Bob 1,2,3 -> 2,3,4; Carol 1,2 -> 5,6. "Alice 2 3" needs
    # Alice_0003, which the dataset lacks: dropped and counted.
    assert pairs.left.tolist() == [0, 2, 0, 5, 5, 3, 0]
    assert pairs.right.tolist() == [1, 4, 3, 2, 6, 6, 5]
    assert pairs.same.tolist() == [True, True, False, False, True, False, False]
    assert pairs.folds is not None and pairs.folds.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert pairs.missing == 1


def test_read_lfw_pairs_of_one_set_has_no_folds(tmp_path: Path) -> None:
    path = tmp_path / "pairsDevTest.txt"
    path.write_text("1\nAlice 1 2\nAlice 1 Bob 1\n")
    pairs = read_lfw_pairs(path, NAMES)
    assert pairs.folds is None and len(pairs) == 2 and pairs.missing == 0


def test_pairs_of_another_dataset_fail_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(PAIRS_TXT)
    pairs = read_lfw_pairs(path, ["Zed_0001.jpg", "Zed_0002.jpg"])
    assert len(pairs) == 0 and pairs.missing == 8
    with pytest.raises(ValueError, match=r"got 0 and 0 \(8 dropped for images not in"):
        evaluate_verification(on_circle([0, 1]), pairs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2 2\nAlice 1 2\n", r"header promises 2 x 4 pairs but 1 pair lines follow"),
        ("1 1\nAlice 1 2\nAlice one Bob 1\n", r"pairs.txt:3: expected 'name n1 n2'"),
        ("ten\n", r"pairs.txt:1: expected a header like '10 300'"),
    ],
)
def test_read_lfw_pairs_names_the_bad_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_lfw_pairs(path, NAMES)


def two_fold_pairs(tmp_path: Path) -> tuple[Path, list[str]]:
    """A pairs.txt of two folds, 10 genuine and 10 impostor pairs each, and its 20 people."""
    lines = ["2 10"]
    for fold in range(2):
        lines += [f"P{fold}x{k} 1 2" for k in range(10)]
        lines += [f"P{fold}x{k} 1 P{fold}x{(k + 1) % 10} 2" for k in range(10)]
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, [f"P{fold}x{k}" for fold in range(2) for k in range(10)]


def test_official_folds_drive_the_protocol(tmp_path: Path) -> None:
    # Two official folds of 10 genuine and 10 impostor pairs; n_folds is then unused. Person k
    # sits at 18k degrees with photos 2 degrees apart: genuine cos 2 = .9994, impostors (20
    # degrees or more apart) at most cos 20 = .94, so every fold is separable.
    path, people = two_fold_pairs(tmp_path)
    names = [f"{person}_{n:04d}.jpg" for person in people for n in (1, 2)]
    angles = [a for k in range(20) for a in (18 * k, 18 * k + 2)]
    result = evaluate_verification(on_circle(angles), read_lfw_pairs(path, names), n_folds=7)
    assert len(result.fold_accuracies) == 2
    assert result.accuracy == 1.0


def test_strict_scoring_counts_pairs_whose_photo_gave_no_face_as_errors(tmp_path: Path) -> None:
    # The separable two-fold list of the test above, but P0x0's second photo gave no face: its
    # genuine pair and one impostor pair of fold 0 cannot be scored.
    path, people = two_fold_pairs(tmp_path)
    kept = [(p, n) for p in people for n in (1, 2) if (p, n) != ("P0x0", 2)]
    angles = [18 * people.index(p) + 2 * (n - 1) for p, n in kept]
    pairs = read_lfw_pairs(path, [f"{p}_{n:04d}.jpg" for p, n in kept])
    assert pairs.missing == 2 and pairs.missing_folds.tolist() == [0, 0]
    assert pairs.missing_same.tolist() == [True, False]
    lenient = evaluate_verification(on_circle(angles), pairs)
    strict = evaluate_verification(on_circle(angles), pairs, strict=True)
    assert lenient.accuracy == 1.0 and lenient.missing == 2 and not lenient.strict
    assert strict.fold_accuracies.tolist() == [18 / 20, 1.0]
    assert strict.accuracy == pytest.approx(0.95) and strict.accuracy_scored == 1.0
    # A person of the split's training half is not this evaluation's: left out, not an error.
    split_off = read_lfw_pairs(path, [f"{p}_{n:04d}.jpg" for p, n in kept], ["P0x0"])
    assert split_off.missing == 0 and split_off.out_of_split == 2
