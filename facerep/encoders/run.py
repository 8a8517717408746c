"""The encoder of a facerep pretraining run (any model kind): rebuilt from the run folder alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facerep.encoders.base import file_digest, l2_normalise
from facerep.models.config import Pool
from facerep.runs import WEIGHTS_FILE, load_run_model


class RunEncoder:
    """Embeds faces with a pretrained run's encoder (mean-pooled patch tokens by default).

    Args:
        run: a run directory written by `facerep pretrain` (config.json + model.safetensors).
        pool: "mean" over patch tokens (MAE's choice for probes) or the "cls" token.
        batch_size: faces per forward pass.
        device: where to run; CUDA when present by default.
    """

    def __init__(
        self,
        run: str | Path,
        pool: Pool = "mean",
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
        self.name = self.run.name if pool == "mean" else f"{self.run.name}:cls"
        self.source = str(self.run.resolve())
        self.input_size = preprocess.input_size
        self.dim = preprocess.embed_dim
        self.fingerprint = f"{self.name}:{file_digest(self.run / WEIGHTS_FILE)}"

    @torch.no_grad()
    def tokens(self, faces: np.ndarray) -> torch.Tensor:
        """Patch tokens of `[N, H, W, 3]` uint8 faces: `[N, L, D]` on the CPU, float32."""
        parts = [
            self.model.forward_tokens(self._inputs(chunk)).float().cpu()
            for chunk in _chunks(faces, self.batch_size)
        ]
        if not parts:
            grid = self.model.grid_size
            return torch.zeros(0, grid[0] * grid[1], self.dim)
        return torch.cat(parts)

    @torch.no_grad()
    def embed(self, faces: np.ndarray) -> np.ndarray:
        """`[N, H, W, 3]` uint8 aligned faces -> `[N, D]` float32 unit rows."""
        parts = [
            self.model.embed(self._inputs(chunk), pool=self.pool).float().cpu().numpy()
            for chunk in _chunks(faces, self.batch_size)
        ]
        return l2_normalise(np.concatenate(parts) if parts else np.zeros((0, self.dim)))

    def _inputs(self, faces: np.ndarray) -> torch.Tensor:
        # Copied only where torch cannot wrap the array: the read-only memory maps of datasets.
        x = torch.from_numpy(np.require(faces, requirements=["C", "W"])).to(self.device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        return (x - self.mean) / self.std


def _chunks(faces: np.ndarray, size: int):
    for start in range(0, len(faces), size):
        yield faces[start : start + size]
