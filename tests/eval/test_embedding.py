"""Evaluation-time embedding options: flip averaging, grid pooling, whitening."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerep.eval.embedding import EmbedOptions, grid_pool, raw_features


class ToyEncoder:
    """Embeds a face as its mean colour per image half (left, right): flip swaps the halves."""

    name, input_size, dim = "toy", 4, 6

    def embed(self, faces: np.ndarray) -> np.ndarray:
        half = faces.shape[2] // 2
        x = np.concatenate([faces[:, :, :half].mean((1, 2)), faces[:, :, half:].mean((1, 2))], 1)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def tokens(self, faces: np.ndarray) -> torch.Tensor:
        # 4 tokens on a 2x2 grid, each the mean colour of its quadrant.
        quads = [
            faces[:, r * 2 : r * 2 + 2, c * 2 : c * 2 + 2].mean((1, 2))
            for r in (0, 1)
            for c in (0, 1)
        ]
        return torch.tensor(np.stack(quads, 1), dtype=torch.float32)


def test_flip_averaging_makes_mirror_images_identical() -> None:
    faces = np.random.default_rng(0).integers(1, 255, (3, 4, 4, 3)).astype(np.uint8)
    options = EmbedOptions(flip=True)
    np.testing.assert_allclose(
        raw_features(ToyEncoder(), faces, options),
        raw_features(ToyEncoder(), faces[:, :, ::-1], options),
        atol=1e-6,
    )


def test_grid_pool_keeps_regions_apart() -> None:
    tokens = torch.arange(16, dtype=torch.float32).reshape(1, 16, 1).repeat(1, 1, 2) + 1
    pooled = grid_pool(tokens, 2)
    assert pooled.shape == (1, 8)
    # Each region is normalised on its own: 4 unit vectors of [1, 1] / sqrt(2).
    np.testing.assert_allclose(pooled.numpy(), np.full((1, 8), 2**-0.5), rtol=1e-6)
    with pytest.raises(ValueError, match="square grid divisible by 3"):
        grid_pool(tokens, 3)


def test_pooling_needs_a_token_encoder() -> None:
    class Plain(ToyEncoder):
        tokens = None

    faces = np.zeros((1, 4, 4, 3), np.uint8) + 5
    with pytest.raises(ValueError, match="needs a token encoder"):
        raw_features(Plain(), faces, EmbedOptions(pool_grid=2))
    assert raw_features(ToyEncoder(), faces, EmbedOptions(pool_grid=2)).shape == (1, 12)


def test_variant_names() -> None:
    assert EmbedOptions().suffix() == ""
    assert EmbedOptions(pool_grid=2, flip=True, whiten=True).suffix() == "+pool2x2+flip+whiten"
