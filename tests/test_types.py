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
