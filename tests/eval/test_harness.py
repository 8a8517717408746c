"""The harness: which variants each encoder is reported as."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerep.encoders.pca import PCAEncoder
from facerep.encoders.pixels import PixelsEncoder
from facerep.eval.harness import encoder_variants


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
