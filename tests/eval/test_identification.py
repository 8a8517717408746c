"""Closed-set identification against layouts worked by hand on the unit circle."""

from __future__ import annotations

import numpy as np
import pytest

from facerep.eval.identification import evaluate_identification
from tests.eval.conftest import on_circle

# A at 0 and 20 degrees, B at 90 and 110, C at 180 and 300. With two photos each, the probe
# of a person is the photo not enrolled. Angles to the probe, own gallery photo first:
#   A probe 20 (gallery 0):   A 20, B 70/90, C 160/80        -> rank 1
#   A probe 0  (gallery 20):  A 20, B 90/110, C 180/60       -> rank 1
#   B probe 110 (gallery 90): B 20, A 110/90, C 70/170       -> rank 1
#   B probe 90 (gallery 110): B 20, A 90/70, C 90/150        -> rank 1
#   C probe 300 (gallery 180): C 120, A 60/80 (closer), B 150/170 -> rank 2
#   C probe 180 (gallery 300): C 120, A 180/160, B 90/70 (closer) -> rank 2
# So whatever the draw: rank-1 = 4/6, rank-2 = 1, rank-5 = 1 (only 3 people to rank).
ANGLES = [0, 20, 90, 110, 180, 300]
IDS = np.array(["A", "A", "B", "B", "C", "C"], dtype=object)


def test_rank_k_matches_the_hand_worked_layout() -> None:
    metrics = evaluate_identification(on_circle(ANGLES), IDS, ranks=(1, 2, 5))
    assert metrics["rank1"] == pytest.approx(4 / 6)
    assert metrics["rank2"] == 1.0
    assert metrics["rank5"] == 1.0
    assert metrics["rank1_std"] == pytest.approx(0.0, abs=1e-12)  # same for every draw
    assert set(metrics) == {"rank1", "rank2", "rank5", "rank1_std", "rank2_std", "rank5_std"}


def test_single_face_identities_and_unlabelled_faces_take_no_part() -> None:
    # D's one photo sits at 20 degrees, on top of an A photo: as a gallery distractor it
    # would tie with or beat A for the A probe. It must change nothing.
    embeddings = on_circle([*ANGLES, 20, 19])
    ids = np.array([*IDS, "D", None], dtype=object)
    assert evaluate_identification(embeddings, ids) == evaluate_identification(
        on_circle(ANGLES), IDS
    )


def test_ties_count_against_the_probe() -> None:
    # Every face the same vector: each probe ties with all 3 gallery faces, rank 3.
    embeddings = on_circle([45] * 6)
    metrics = evaluate_identification(embeddings, IDS, ranks=(1, 3))
    assert metrics["rank1"] == 0.0 and metrics["rank3"] == 1.0


def noisy_people(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8 people x 5 photos in 16-D, noisy enough that some probes are missed."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, 16))
    embeddings = np.repeat(centres, 5, axis=0) + 1.2 * rng.normal(size=(40, 16))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings.astype(np.float32), np.repeat([f"p{k}" for k in range(8)], 5).astype(object)


def test_result_does_not_depend_on_row_order() -> None:
    embeddings, ids = noisy_people()
    metrics = evaluate_identification(embeddings, ids)
    assert 0.0 < metrics["rank1"] < 1.0  # a case where the gallery draw matters
    assert metrics["rank1_std"] > 0.0
    order = np.random.default_rng(1).permutation(len(ids))
    assert evaluate_identification(embeddings[order], ids[order]) == pytest.approx(metrics)


def test_keys_keep_the_galleries_when_embeddings_move_in_the_last_bits() -> None:
    # An ONNX export or another CPU changes embeddings by ~1e-7; with the photos' paths as
    # keys the draw enrols the same photos, so the score cannot jump on float noise.
    embeddings, ids = noisy_people()
    keys = [f"{name}/{k}.png" for k, name in enumerate(ids)]
    moved = embeddings + np.random.default_rng(2).normal(scale=1e-6, size=embeddings.shape)
    scores = evaluate_identification(embeddings, ids, keys=keys, n_trials=1)
    assert evaluate_identification(moved, ids, keys=keys, n_trials=1) == scores
    order = np.random.default_rng(3).permutation(len(ids))
    shuffled = evaluate_identification(
        embeddings[order], ids[order], keys=[keys[k] for k in order], n_trials=1
    )
    assert shuffled == pytest.approx(scores)


def test_trials_are_seeded() -> None:
    embeddings, ids = noisy_people()
    first = evaluate_identification(embeddings, ids, seed=5)
    assert evaluate_identification(embeddings, ids, seed=5) == first
    assert evaluate_identification(embeddings, ids, seed=6) != first


def test_identification_needs_a_person_with_two_faces() -> None:
    with pytest.raises(ValueError, match="two or more faces"):
        evaluate_identification(on_circle([0, 90]), np.array(["a", "b"], dtype=object))


def test_keys_must_name_every_face() -> None:
    with pytest.raises(ValueError, match="3 keys for 6 faces"):
        evaluate_identification(on_circle(ANGLES), IDS, keys=["a", "b", "c"])
