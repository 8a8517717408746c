"""The harness: which variants each encoder gets, each forward pass and each fit once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facerep.encoders.pca import PCAEncoder
from facerep.encoders.pixels import PixelsEncoder
from facerep.eval.embedding import EmbedOptions
from facerep.eval.harness import (
    AttributeData,
    EvalData,
    encoder_variants,
    evaluate_all,
    evaluate_attributes,
    evaluation_pairs,
)


class TokenEncoder(PixelsEncoder):
    """Pixels, plus 16 patch tokens on a 4x4 grid: a stand-in for a facerep run."""

    def __init__(self) -> None:
        super().__init__(size=8)
        self.name = "run"

    def tokens(self, faces: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(self.embed(faces)).reshape(len(faces), 4, 2, 4, 2)
        return x.permute(0, 1, 3, 2, 4).reshape(len(faces), 16, 4)


def names(variants) -> list[str]:
    return [encoder.name + options.suffix() for encoder, options in variants]


def test_variants_whiten_and_pool_only_where_it_changes_something() -> None:
    variants = encoder_variants([PixelsEncoder(), PCAEncoder(), TokenEncoder()], pools=[2, 1, 2])
    # Eigenfaces are whitened already; only the token encoder pools; each grid once.
    assert names(variants) == [
        "pixels",
        "pixels+whiten",
        "pca",
        "run",
        "run+whiten",
        "run+pool2x2",
        "run+pool2x2+whiten",
    ]
    assert names(encoder_variants([PixelsEncoder(), PCAEncoder()], "on")) == [
        "pixels+whiten",
        "pca",
    ]
    assert names(encoder_variants([TokenEncoder()], "off", [2], flip=True)) == [
        "run+flip",
        "run+pool2x2+flip",
    ]


def test_the_no_whitening_rule_follows_the_encoder_not_its_name() -> None:
    unwhitened = PCAEncoder(whiten=False)
    assert not unwhitened.whitened and PCAEncoder().whitened
    assert names(encoder_variants([unwhitened])) == ["pca", "pca+whiten"]


def test_variants_refuse_pooling_nothing_can_pool() -> None:
    with pytest.raises(ValueError, match=r"pooling grid 2: needs patch tokens.*not pixels, pca"):
        encoder_variants([PixelsEncoder(), PCAEncoder()], pools=[2])
    with pytest.raises(ValueError, match="pooling grid 0: must be 1 or more"):
        encoder_variants([TokenEncoder()], pools=[0])
    assert names(encoder_variants([PixelsEncoder()], "off", [1])) == ["pixels"]


class CountingPixels(PixelsEncoder):
    """Pixels that count the faces each forward pass is given."""

    def __init__(self) -> None:
        super().__init__(size=8)
        self.calls: list[int] = []

    def embed(self, faces: np.ndarray) -> np.ndarray:
        self.calls.append(len(faces))
        return super().embed(faces)


class CountingPCA(PCAEncoder):
    """Eigenfaces that count their fits."""

    def __init__(self) -> None:
        super().__init__(n_components=20, size=8)
        self.fits = 0

    def fit(self, faces: np.ndarray) -> CountingPCA:
        self.fits += 1
        return super().fit(faces)


def people(rng: np.random.Generator, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` identities x 6 noisy copies of a random 16x16 face each."""
    base = np.repeat(rng.integers(0, 256, (count, 16, 16, 3)), 6, axis=0)
    faces = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    return faces, np.repeat([f"p{first + i}" for i in range(count)], 6).astype(object)


@pytest.fixture(scope="module")
def data() -> EvalData:
    """8 held-out and 8 training identities, 6 faces each."""
    rng = np.random.default_rng(0)
    faces, identities = people(rng, 0, 8)
    train_faces, train_identities = people(rng, 8, 8)
    sources = np.array([f"{i}.png" for i in range(len(faces))])
    return EvalData(faces, identities, sources, train_faces, train_identities, split={})


def metrics(results) -> dict[str, dict]:
    """Every variant's metrics, timing left out."""
    return {r.name: {k: v for k, v in r.metrics.items() if k != "seconds"} for r in results}


def test_raw_and_whitened_variants_share_one_forward_pass(data: EvalData) -> None:
    encoder = CountingPixels()
    shared = evaluate_all(data, encoder_variants([encoder], "both"))
    # Held-out faces once, training faces once (for the whitening): not once per variant.
    assert encoder.calls == [len(data.faces), len(data.train_faces)]
    alone = [
        *evaluate_all(data, encoder_variants([CountingPixels()], "off")),
        *evaluate_all(data, encoder_variants([CountingPixels()], "on")),
    ]
    assert metrics(shared) == metrics(alone)
    for a, b in zip(shared, alone, strict=True):
        np.testing.assert_array_equal(a.embeddings, b.embeddings)


def test_estimators_are_fitted_once_on_this_evaluations_training_faces(data: EvalData) -> None:
    stale = CountingPCA().fit(data.faces)  # fitted on other faces (the held-out ones)
    variants = [(stale, EmbedOptions()), (stale, EmbedOptions(flip=True))]
    results = evaluate_all(data, variants)
    assert stale.fits == 2  # the stale fit, then exactly one for this evaluation
    fresh = evaluate_all(
        data, [(CountingPCA(), EmbedOptions()), (CountingPCA(), EmbedOptions(flip=True))]
    )
    assert metrics(results) == metrics(fresh)
    expected = stale.pixels_.embed(data.train_faces).mean(axis=0)
    np.testing.assert_allclose(stale.whitening_.mean, expected, rtol=1e-6)


def test_attribute_probes_share_forward_passes_and_fit_once(data: EvalData) -> None:
    faces = np.concatenate([data.faces, data.train_faces])
    rows = np.arange(len(faces))
    labels = {"group": (rows // 6 % 2).astype(np.int64)}  # identities alternate between groups
    attributes = AttributeData(faces, labels, rows[rows % 3 != 0], rows[rows % 3 == 0], "test")
    pixels, pca = CountingPixels(), CountingPCA().fit(data.faces)
    results = evaluate_attributes(attributes, encoder_variants([pixels, pca], "both"))
    assert list(results) == ["pixels", "pixels+whiten", "pca"]
    assert pixels.calls == [len(faces)] and pca.fits == 2
    assert results["pixels"]["group"]["test_faces"] == len(attributes.test)
    alone = evaluate_attributes(attributes, encoder_variants([CountingPixels()], "on"))
    assert alone["pixels+whiten"] == results["pixels+whiten"]
    assert (
        evaluate_attributes(attributes, [(CountingPCA(), EmbedOptions())])["pca"] == results["pca"]
    )


def test_lfw_pairs_find_faces_by_their_full_source_paths(tmp_path: Path) -> None:
    sources = np.array(
        [f"/photos/{name}/{name}_{n:04d}.jpg" for name in ("Ann_Lee", "Bo_Ray") for n in (1, 2)]
    )
    data = EvalData(
        np.zeros((4, 8, 8, 3), np.uint8),
        np.array(["a", "a", "b", "b"]),
        sources,
        np.zeros((0, 8, 8, 3), np.uint8),
        np.array([]),
        split={},
    )
    pairs_txt = tmp_path / "pairs.txt"
    pairs_txt.write_text("2\nAnn_Lee 1 2\nBo_Ray 1 2\nAnn_Lee 1 Bo_Ray 2\nAnn_Lee 2 Cy_Po 1\n")
    pairs = evaluation_pairs(data, pairs_txt, seed=0)
    assert pairs.left.tolist() == [0, 2, 0] and pairs.right.tolist() == [1, 3, 3]
    assert pairs.same.tolist() == [True, True, False] and pairs.missing == 1
