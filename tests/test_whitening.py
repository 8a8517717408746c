"""PCA whitening: decorrelates, keeps what the data allows, and round-trips through a run."""

from pathlib import Path

import numpy as np
import pytest

from facerep.whitening import (
    WHITENING_FILE,
    Whitening,
    fit_whitening,
    load_whitening,
    remove_whitening,
    save_whitening,
)


def _mixed(n: int = 500, d: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 3.0


def test_whitening_decorrelates_and_equalises_the_fitted_features() -> None:
    train = _mixed()
    whitening = fit_whitening(train, components=8)
    white = (train - whitening.mean) @ whitening.projection
    np.testing.assert_allclose(np.cov(white.T), np.eye(8), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(whitening.apply(train), axis=1), 1, rtol=1e-5)
    assert whitening.apply(train[:0]).shape == (0, 8)


def test_whitening_keeps_no_more_components_than_the_data_has() -> None:
    assert fit_whitening(_mixed()[:5], components=128).dim == 4  # samples - 1
    assert fit_whitening(_mixed(), components=128).dim == 8  # dimensions
    with pytest.raises(ValueError, match="at least 2 faces"):
        fit_whitening(_mixed()[:1])


def test_plain_pca_keeps_each_direction_at_its_own_scale() -> None:
    train = _mixed()
    plain = fit_whitening(train, components=8, whiten=False)
    variances = ((train - plain.mean) @ plain.projection).var(axis=0, ddof=1)
    assert variances[0] > 2 * variances[-1]


def test_whitening_round_trips_through_a_run_folder(tmp_path: Path) -> None:
    train = _mixed()
    fitted = fit_whitening(train, components=6)
    stored = Whitening(fitted.mean, fitted.projection, weights="abc123", faces=500)
    save_whitening(tmp_path, stored)
    loaded = load_whitening(tmp_path)
    assert loaded is not None and (loaded.weights, loaded.faces, loaded.dim) == ("abc123", 500, 6)
    np.testing.assert_allclose(loaded.apply(train), fitted.apply(train), atol=1e-5)
    remove_whitening(tmp_path)
    assert load_whitening(tmp_path) is None
    remove_whitening(tmp_path)  # removing what is gone is fine


def test_a_damaged_whitening_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / WHITENING_FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match=f"{WHITENING_FILE}: damaged"):
        load_whitening(tmp_path)
