"""Typed results: a verdict's distance and call agree, at the threshold too."""

from __future__ import annotations

import numpy as np
import pytest

from facerep.types import Verdict


def test_verdict_between_two_embeddings() -> None:
    a, b = np.array([1, 0], np.float32), np.array([0.6, 0.8], np.float32)
    verdict = Verdict.between(a, b, threshold=0.4)
    assert verdict.distance == pytest.approx(0.4) and verdict.same  # within the threshold: same
    assert not Verdict.between(a, b, threshold=0.39).same
    assert Verdict.between(a, -a, threshold=1.0).distance == pytest.approx(2.0)


def test_distances_stay_in_0_to_2_however_the_floats_round() -> None:
    from facerep.encoders.base import l2_normalise
    from facerep.types import Match

    # float32 unit vectors whose dot with themselves rounds above 1 (1 - cos = -7.6e-09)
    face = l2_normalise(np.random.default_rng(0).normal(size=(1, 128)).astype(np.float32))[0]
    itself = Verdict.between(face, face, threshold=0.08)
    assert itself.distance == 0.0 and str(itself.distance) == "0.0" and itself.same
    opposite = Verdict.between(face, -face * 1.0000001, threshold=0.08)
    assert opposite.distance == 2.0
    assert Match(id=1, label="ann", distance=-3.6e-09).distance == 0.0
    assert Match(id=1, label="ann", distance=2.0000002).distance == 2.0
def test_a_failure_is_a_source_reason_pair_that_knows_if_it_was_unreadable() -> None:
    import pickle

    from facerep.faces.find import NoFaceError
    from facerep.images import ImageError
    from facerep.types import Failure, count_unreadable

    corrupt = Failure.of("a.jpg", ImageError("a.jpg", "not an image", "corrupt"))
    faceless = Failure.of("b.png", NoFaceError("b.png"))
    source, reason = corrupt
    assert (source, reason) == ("a.jpg", "not an image") and faceless == ("b.png", "no face found")
    assert pickle.loads(pickle.dumps(corrupt)).unreadable is True
    assert count_unreadable([corrupt, faceless, ("c.png", "plain pair")]) == 1
