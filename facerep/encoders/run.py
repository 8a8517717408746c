"""The encoder of a facerep pretraining run (any model kind): rebuilt from the run folder alone.

A run that stored a PCA whitening (fitted on its unlabelled training faces at the end of
pretraining, `facerep.whitening`) embeds whitened: that is the run's encoder everywhere, and the
one the benchmark measures. `whiten=False` gives the raw pooled features (named `RUN:raw`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facerep.encoders.base import l2_normalise
from facerep.files import file_digest
from facerep.models.config import Pool
from facerep.models.masking import rows_by_mask_count
from facerep.runs import load_run_model, weights_digest
from facerep.whitening import WHITENING_FILE, Whitening, load_whitening

# The most of a face's patches `embed_visible` leaves out: MAE trains with 75% hidden.
MAX_HIDDEN_SHARE = 0.75


class RunEncoder:
    """Embeds faces with a pretrained run's encoder (mean-pooled patch tokens by default).

    Args:
        run: a run directory written by `facerep pretrain` (config.json + model.safetensors).
        pool: "mean" over patch tokens (MAE's choice for probes) or the "cls" token.
        whiten: apply the run's stored whitening: None when it has one (the default), True
            to require it, False for the raw pooled features. It was fitted on mean-pooled
            features, so `pool="cls"` embeds raw.
        batch_size: faces per forward pass.
        device: where to run; CUDA when present by default.
    """

    def __init__(
        self,
        run: str | Path,
        pool: Pool = "mean",
        whiten: bool | None = None,
        batch_size: int = 256,
        device: str | torch.device | None = None,
    ):
        self.run = Path(run)
        self.model, self.config = load_run_model(self.run)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        preprocess = self.config.preprocess
        self.mean = torch.tensor(preprocess.mean, device=self.device)[None, :, None, None]
        self.std = torch.tensor(preprocess.std, device=self.device)[None, :, None, None]
        self.pool, self.batch_size = pool, batch_size
        digest = weights_digest(self.run)
        self.whitening = _run_whitening(self.run, digest, whiten, pool)
        self.whitened = self.whitening is not None  # evaluation need not whiten it again
        self.name = self.run.name + ("" if pool == "mean" else ":cls")
        # The raw vectors keep the fingerprint they had before any whitening existed, so the
        # galleries and calibrations made with them stay theirs.
        self.fingerprint = f"{self.name}:{digest}"
        if self.whitened:
            self.fingerprint += f":{file_digest(self.run / WHITENING_FILE)}"
        elif whiten is False and (self.run / WHITENING_FILE).is_file():
            self.name += ":raw"  # not the run's own encoder: reports must tell them apart
        self.source = str(self.run.resolve())
        self.input_size = preprocess.input_size
        self.dim = self.whitening.dim if self.whitening else preprocess.embed_dim

    def tokens(self, faces: np.ndarray) -> torch.Tensor:
        """Patch tokens of `[N, H, W, 3]` uint8 faces: `[N, L, D]` on the CPU, float32."""
        dim = self.config.preprocess.embed_dim
        return model_tokens(self.model, faces, self._inputs, self.batch_size, dim)

    @torch.no_grad()
    def embed(self, faces: np.ndarray) -> np.ndarray:
        """`[N, H, W, 3]` uint8 aligned faces -> `[N, D]` float32 unit rows."""
        features = self.raw_features(faces)
        return self.whitening.apply(features) if self.whitening else features

    @torch.no_grad()
    def embed_visible(self, faces: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        """Embeddings of `[N, H, W, 3]` uint8 faces from the patches not `hidden` alone.

        `hidden`: `[N, L]` bool patches (an occluder's) that neither attend nor are pooled. A
        face that would keep fewer than a quarter of its patches (MAE's fewest in training)
        keeps them all. Needs a ViT run: only its encoder can leave patches out.
        """
        if self.pool != "mean":  # the class token attends to every patch: nothing to leave out
            raise ValueError(
                f"{self.run}: ignoring occluders pools the patch tokens, not {self.pool}"
            )
        if not hasattr(self.model, "forward_encoder") or not hasattr(self.model, "cls_token"):
            raise ValueError(
                f"{self.run}: a {self.config.model.name} encoder cannot leave patches out; "
                "ignoring occluders needs a ViT (vit-*) run"
            )
        hidden = np.asarray(hidden, bool).copy()
        hidden[hidden.mean(axis=1) > MAX_HIDDEN_SHARE] = False
        parts = []
        for start in range(0, len(faces), self.batch_size):
            imgs = self._inputs(faces[start : start + self.batch_size])
            mask = torch.from_numpy(hidden[start : start + self.batch_size]).to(self.device)
            parts.append(self._pooled_visible(imgs, mask))
        dim = self.config.preprocess.embed_dim
        features = l2_normalise(np.concatenate(parts) if parts else np.zeros((0, dim)))
        return self.whitening.apply(features) if self.whitening else features

    def _pooled_visible(self, imgs: torch.Tensor, hidden: torch.Tensor) -> np.ndarray:
        """Mean visible patch token `[N, D]`; rows hiding different counts in separate passes."""
        pooled = torch.empty(len(imgs), self.config.preprocess.embed_dim, device=self.device)
        for rows in rows_by_mask_count(hidden):
            latent, _, _ = self.model.forward_encoder(imgs[rows], mask=hidden[rows].float())
            pooled[rows] = latent[:, 1:].mean(dim=1).float()
        return pooled.cpu().numpy()

    @torch.no_grad()
    def raw_features(self, faces: np.ndarray) -> np.ndarray:
        """The pooled features before any whitening: `[N, D]` float32 unit rows."""
        parts = [
            self.model.embed(self._inputs(chunk), pool=self.pool).float().cpu().numpy()
            for chunk in _chunks(faces, self.batch_size)
        ]
        dim = self.config.preprocess.embed_dim
        return l2_normalise(np.concatenate(parts) if parts else np.zeros((0, dim)))

    def _inputs(self, faces: np.ndarray) -> torch.Tensor:
        return model_inputs(faces, self.input_size, self.mean, self.std, self.device)


def model_inputs(
    faces: np.ndarray,
    size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    """`[N, S, S, 3]` uint8 faces -> the model's `[N, 3, size, size]` normalised inputs.

    `mean` and `std` are `[1, 3, 1, 1]` on `device`.
    """
    # Copied only where torch cannot wrap the array: the read-only memory maps of datasets.
    x = torch.from_numpy(np.require(faces, requirements=["C", "W"])).to(device)
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return (x - mean) / std


@torch.no_grad()
def model_tokens(
    model: torch.nn.Module,
    faces: np.ndarray,
    inputs: Callable[[np.ndarray], torch.Tensor],
    batch_size: int,
    dim: int,
) -> torch.Tensor:
    """`model.forward_tokens` of `[N, H, W, 3]` uint8 faces made model inputs by `inputs`, in
    chunks of `batch_size`: `[N, L, dim]` float32 on the CPU."""
    parts = [
        model.forward_tokens(inputs(chunk)).float().cpu() for chunk in _chunks(faces, batch_size)
    ]
    if not parts:
        grid = model.grid_size
        return torch.zeros(0, grid[0] * grid[1], dim)
    return torch.cat(parts)


def _chunks(faces: np.ndarray, size: int):
    for start in range(0, len(faces), size):
        yield faces[start : start + size]


def _run_whitening(run: Path, digest: str, whiten: bool | None, pool: Pool) -> Whitening | None:
    """The run's whitening unless declined; a one-line error when it is stale or required."""
    if whiten is False:
        return None
    if pool != "mean":  # fitted on mean-pooled features: the class token is another space
        if whiten:
            raise ValueError(f"{run}: its whitening was fitted on mean-pooled features, not {pool}")
        return None
    whitening = load_whitening(run)
    if whitening is None and whiten:
        raise ValueError(f"{run}: no {WHITENING_FILE}: fit one with `facerep whiten`")
    if whitening is not None and whitening.weights != digest:
        # A silent fallback to raw features would change every distance without a word.
        raise ValueError(
            f"{run / WHITENING_FILE}: fitted for other weights than the run's current ones; "
            "refit it with `facerep whiten`"
        )
    return whitening
