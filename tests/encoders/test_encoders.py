"""Every encoder follows the Encoder protocol; the baselines behave as their methods should."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import facerep
from facerep.encoders.base import Encoder, encoder_identity, is_whitened
from facerep.encoders.calibration import current_threshold
from facerep.encoders.pca import PCAEncoder
from facerep.eval.embedding import EmbedOptions, grid_pool, raw_features
from facerep.eval.harness import encoder_variants
from facerep.images import resize_faces
from facerep.runs import WEIGHTS_FILE, load_weights, save_weights
from facerep.whitening import load_whitening, remove_whitening
from tests.cli.test_app import facerep as facerep_cli
from tests.conftest import link_orl


@pytest.fixture(scope="module")
def faces(lfw_faces: np.ndarray) -> np.ndarray:
    """40 real faces as colour 48x48 crops."""
    grey = resize_faces(np.repeat(lfw_faces[:40, :, :, None], 3, axis=3), 48)
    return np.ascontiguousarray(grey)


@pytest.mark.parametrize("name", ["pixels", "pca", "dlib"])
def test_builtin_encoders_follow_the_protocol(name: str, faces: np.ndarray) -> None:
    encoder = facerep.load_encoder(name)
    if name == "pca":
        assert encoder.fit(faces[:30]) is encoder
    assert isinstance(encoder, Encoder)
    embeddings = encoder.embed(faces[:6])
    assert embeddings.shape == (6, encoder.dim) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    assert encoder.embed(faces[:0]).shape == (0, encoder.dim)


def test_run_encoder_follows_the_protocol(tiny_run: Path, faces: np.ndarray) -> None:
    encoder = facerep.load_encoder(tiny_run, whiten=False)  # tokens pool to the raw embedding
    assert isinstance(encoder, Encoder) and encoder.name == f"{tiny_run.name}:raw"
    assert encoder.input_size == 32 and current_threshold(encoder) is None  # not calibrated
    embeddings = encoder.embed(faces[:6])  # 48 px faces, resized to the run's 32
    assert embeddings.shape == (6, encoder.dim) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    assert encoder.embed(faces[:0]).shape == (0, encoder.dim)
    # Patch tokens: a 4x4 grid of 8 px patches; their mean is the (mean-pooled) embedding.
    tokens = encoder.tokens(faces[:6])
    assert tokens.shape == (6, 16, encoder.dim) and tokens.dtype == torch.float32
    assert encoder.tokens(faces[:0]).shape == (0, 16, encoder.dim)  # no faces, no tokens
    mean = tokens.mean(dim=1).numpy()
    np.testing.assert_allclose(
        embeddings, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-5
    )
    # Pooled on a 2x2 grid: four unit regions of D, as evaluation uses them.
    pooled = grid_pool(tokens, 2)
    assert pooled.shape == (6, 4 * encoder.dim)
    regions = pooled.reshape(6, 4, encoder.dim).norm(dim=2)
    np.testing.assert_allclose(regions.numpy(), 1.0, rtol=1e-5)
    features = raw_features(encoder, faces[:6], EmbedOptions(pool_grid=2))
    np.testing.assert_allclose(features, pooled.numpy() / 2, atol=1e-6)
    variants = encoder_variants([encoder, facerep.load_encoder("pixels")], "off", [2])
    assert [e.name + o.suffix() for e, o in variants] == [
        encoder.name,
        f"{encoder.name}+pool2x2",
        "pixels",
    ]


def test_a_run_ships_the_whitening_it_fitted_on_its_own_faces(
    tiny_run: Path, faces: np.ndarray
) -> None:
    shipped, raw = facerep.load_encoder(tiny_run), facerep.load_encoder(tiny_run, whiten=False)
    assert shipped.name == tiny_run.name and is_whitened(shipped) and not is_whitened(raw)
    whitening = load_whitening(tiny_run)
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert whitening.faces == summary["faces"] == summary["whitening"]["faces"]
    assert shipped.dim == whitening.dim == summary["whitening"]["components"]
    np.testing.assert_allclose(
        shipped.embed(faces), whitening.apply(raw.embed(faces)), atol=1e-5
    )
    # Whitened and raw vectors are not comparable: galleries must tell the two apart.
    assert encoder_identity(shipped).fingerprint != encoder_identity(raw).fingerprint
    # Fitted on mean-pooled features: the class token embeds raw.
    assert not facerep.load_encoder(tiny_run, pool="cls").whitened
    # Evaluation reports a whitened run once, as shipped, never whitened a second time.
    variants = encoder_variants([shipped], "both", [])
    assert [e.name + o.suffix() for e, o in variants] == [tiny_run.name]


def test_a_stale_or_missing_whitening_is_a_one_line_error(tiny_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    weights = load_weights(run / WEIGHTS_FILE)
    save_weights(run / WEIGHTS_FILE, {k: v + 0.01 for k, v in weights.items()})
    with pytest.raises(ValueError, match=r"fitted for other weights.*facerep whiten"):
        facerep.load_encoder(run)
    assert facerep.load_encoder(run, whiten=False).dim == 32  # the raw features still work
    result = facerep_cli("whiten", str(run))
    assert result.returncode == 0, result.stderr
    assert "fitted on" in result.stdout and facerep.load_encoder(run).whitened
    remove_whitening(run)
    assert not facerep.load_encoder(run).whitened  # a run without one embeds raw
    with pytest.raises(ValueError, match=r"no whitening\.safetensors"):
        facerep.load_encoder(run, whiten=True)


def test_pca_is_an_estimator(faces: np.ndarray) -> None:
    encoder = PCAEncoder(n_components=10)
    assert not encoder.fitted
    with pytest.raises(ValueError, match="not fitted"):
        encoder.embed(faces)
    assert encoder.fit(faces) is encoder
    assert encoder.dim == 10 and encoder.whitening_.dim == 10
    # Whitened components have unit variance on the training faces.
    features = encoder.pixels_.embed(faces)
    raw = (features - encoder.whitening_.mean) @ encoder.whitening_.projection
    np.testing.assert_allclose(raw.std(axis=0, ddof=1), 1.0, rtol=1e-3)
    plain = PCAEncoder(n_components=10, whiten=False).fit(faces)
    features = plain.pixels_.embed(faces)
    projected = (features - plain.whitening_.mean) @ plain.whitening_.projection
    variances = projected.var(axis=0, ddof=1)
    assert variances[0] > 2 * variances[-1]  # eigenfaces kept at their own scale


def test_unknown_encoder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an encoder name"):
        facerep.load_encoder(tmp_path / "nothing")


def test_dlib_tells_orl_identities_apart(shared_data: Path, tmp_path: Path) -> None:
    from facerep.data.prepare import PrepareOptions, prepare_dataset
    from facerep.data.store import open_dataset

    src = link_orl(shared_data, tmp_path / "orl", range(1, 5), range(1, 6))
    prepare_dataset(src, tmp_path / "data", PrepareOptions(size=64))
    data = open_dataset(tmp_path / "data")
    embeddings = facerep.load_encoder("dlib").embed(np.asarray(data.crops))
    similarity = embeddings @ embeddings.T
    same = data.identities[:, None] == data.identities[None, :]
    off_diagonal = ~np.eye(len(data), dtype=bool)
    # Every face's nearest other face is the same person.
    nearest = np.where(off_diagonal, similarity, -np.inf).argmax(axis=1)
    assert (data.identities[nearest] == data.identities).all()
    assert similarity[same & off_diagonal].min() > similarity[~same].max() - 0.05
