"""Embeddings for evaluation, with the options that keep comparisons between encoders fair.

- flip averaging: embed each face and its mirror image and average, as LFW evaluations do;
- spatial pooling (token encoders): mean-pool patch tokens over a g x g grid and concatenate,
  keeping where a feature is on the face (eyes vs mouth), which a global mean throws away;
- PCA whitening fitted on the training identities only (`facerep.whitening.fit_whitening`, the
  eigenfaces' projection): decorrelates and equalises the feature directions; on small face sets
  it is worth several points for learned features too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from facerep.encoders.base import Encoder, TokenEncoder, l2_normalise


@dataclass(frozen=True)
class EmbedOptions:
    """How an encoder's features are turned into the embedding that is evaluated."""

    flip: bool = False  # average with the mirrored face
    pool_grid: int = 1  # token encoders: g x g grid of mean-pooled tokens (1 = global mean)
    whiten: bool = False  # PCA whitening fitted on the training identities
    whiten_components: int = 128  # components kept by the whitening (fewer if data is short)

    def suffix(self) -> str:
        """How reports name the variant, e.g. `+pool2x2+whiten`."""
        parts = [f"pool{self.pool_grid}x{self.pool_grid}"] if self.pool_grid > 1 else []
        parts += ["flip"] if self.flip else []
        parts += ["whiten"] if self.whiten else []
        return "".join(f"+{p}" for p in parts)


def raw_features(encoder: Encoder, faces: np.ndarray, options: EmbedOptions) -> np.ndarray:
    """Unit-length features of `[N, H, W, 3]` uint8 faces before any whitening."""
    features = _features(encoder, faces, options.pool_grid)
    if options.flip:
        features = features + _features(encoder, faces[:, :, ::-1], options.pool_grid)
    return l2_normalise(features)


def _features(encoder: Encoder, faces: np.ndarray, pool_grid: int) -> np.ndarray:
    faces = np.ascontiguousarray(faces)
    if pool_grid == 1:
        return encoder.embed(faces)
    if not isinstance(encoder, TokenEncoder):
        raise ValueError(f"{encoder.name}: spatial pooling needs a token encoder (a facerep run)")
    return l2_normalise(grid_pool(encoder.tokens(faces), pool_grid).numpy())


def grid_pool(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """`[N, L, D]` patch tokens on a square grid -> `[N, grid*grid*D]` region means."""
    n, length, dim = tokens.shape
    side = round(length**0.5)
    if side * side != length or side % grid:
        raise ValueError(f"{length} tokens do not form a square grid divisible by {grid}")
    maps = tokens.transpose(1, 2).reshape(n, dim, side, side)
    pooled = F.adaptive_avg_pool2d(maps, grid)  # [N, D, g, g]
    # Normalise each region so no region dominates the concatenation.
    pooled = F.normalize(pooled.flatten(2), dim=1)
    return pooled.transpose(1, 2).reshape(n, -1)
