"""A run's occlusion prior on disk: the typical residuals and tokens of its model on clean faces.

    RUN/occlusion_prior.safetensors   mean [H, W, C], std [H, W, C]; for a ViT also
                                      token_mean [L, D], token_precision [L, D, D],
                                      token_distance_mean [L], token_distance_std [L];
                                      metadata: the threshold, the faces it was fitted on, the
                                      weights it was fitted for

Fitted by `facerep occlusion-prior` (`facerep.tasks.occlusion.fit_occlusion_prior`); a prior
fitted for other weights than the run's current ones is refused, as a stale whitening is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerep.files import atomic_write_bytes
from facerep.runs import weights_digest

PRIOR_FILE = "occlusion_prior.safetensors"
TOKEN_TENSORS = ("mean", "precision", "distance_mean", "distance_std")


@dataclass(frozen=True)
class TokenPrior:
    """Typical encoder tokens of clean faces at each patch location: a Gaussian per location.

    After PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly
    Detection and Localization", ICPR 2021), which suits aligned faces: a token far, in
    Mahalanobis distance, from what clean faces have at that place is evidence of an occluder
    or a manipulation even where the decoder reconstructs the pixels well (a smooth hand).

    Attributes:
        mean_: `[L, D]` mean token per patch location, patches in `patchify` order.
        precision_: `[L, D, D]` inverse of the Ledoit-Wolf shrunk covariance per location.
        distance_mean_, distance_std_: `[L]` mean and spread of the distance on held-out clean
            faces, so distances become z-scores comparable across locations.
    """

    mean_: np.ndarray
    precision_: np.ndarray
    distance_mean_: np.ndarray
    distance_std_: np.ndarray


@dataclass(frozen=True)
class OcclusionPrior:
    """Typical residuals of a run on clean faces, per pixel and channel of its input.

    Attributes:
        mean_, std_: `[H, W, C]` mean and spread of the absolute residual.
        threshold_: the smoothed normalised residual that `CLEAN_QUANTILE` of clean pixels stay
            under: the mask's default threshold.
        faces: how many faces it was fitted on.
        weights: digest of the run weights it was fitted for.
        tokens: the encoder tokens' prior (ViT runs); None for a conv-AE or a prior fitted
            before tokens were.
    """

    mean_: np.ndarray
    std_: np.ndarray
    threshold_: float
    faces: int
    weights: str
    tokens: TokenPrior | None = None


def save_prior(run: str | Path, prior: OcclusionPrior) -> Path:
    """Write RUN/occlusion_prior.safetensors atomically; returns its path."""
    from safetensors.numpy import save

    path = Path(run) / PRIOR_FILE
    # safetensors writes an array's memory as it lies: a transposed view must be copied first.
    tensors = {
        "mean": np.ascontiguousarray(prior.mean_, np.float32),
        "std": np.ascontiguousarray(prior.std_, np.float32),
    }
    if prior.tokens is not None:
        tensors |= {
            f"token_{name}": np.ascontiguousarray(getattr(prior.tokens, f"{name}_"), np.float32)
            for name in TOKEN_TENSORS
        }
    metadata = {
        "weights": prior.weights,
        "faces": str(prior.faces),
        "threshold": repr(prior.threshold_),
    }
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def load_prior(run: str | Path) -> OcclusionPrior | None:
    """RUN's occlusion prior, or None when it has none; a one-line error when it is damaged."""
    from safetensors import SafetensorError, safe_open

    path = Path(run) / PRIOR_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            mean, std = f.get_tensor("mean"), f.get_tensor("std")
            stored = set(f.keys())
            tokens = (
                TokenPrior(*(f.get_tensor(f"token_{name}") for name in TOKEN_TENSORS))
                if "token_mean" in stored
                else None
            )
        return OcclusionPrior(
            mean,
            std,
            float(metadata["threshold"]),
            int(metadata["faces"]),
            metadata["weights"],
            tokens,
        )
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: damaged occlusion prior ({e}); refit it") from None


def run_prior(run: Path, wanted: bool | None) -> OcclusionPrior | None:
    """The run's prior unless declined; a one-line error when it is stale or required."""
    if wanted is False:
        return None
    prior = load_prior(run)
    if prior is None and wanted:
        raise ValueError(f"{run}: no {PRIOR_FILE}: fit one with `facerep occlusion-prior`")
    if prior is not None and prior.weights != weights_digest(run):
        raise ValueError(
            f"{run / PRIOR_FILE}: fitted for other weights than the run's current ones; "
            "refit it with `facerep occlusion-prior`"
        )
    return prior
