"""Fit a run's PCA whitening on its own training faces, so its encoder ships whitened.

Runs at the end of pretraining (on the main process; not for a distilled student that embeds
in its teacher's own space, which the whitening would distort) and from `facerep whiten RUN`
for runs trained before, or to refit on other faces. No identity labels are used: the faces
are the unlabelled corpus and the training identities the run already saw, never the
held-out ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from facerep.runs import Preprocess, RunConfig, weights_digest
from facerep.whitening import DEFAULT_COMPONENTS, Whitening, fit_whitening, save_whitening

if TYPE_CHECKING:
    from facerep.train.data import PretrainFaces

# Each kept direction's variance is estimated from at least this many faces: a whitening with
# as many directions as faces maps its own faces to equal distances and amplifies noise.
FACES_PER_COMPONENT = 4


@torch.no_grad()
def pooled_features(
    model: nn.Module,
    faces: torch.Tensor,
    preprocess: Preprocess,
    device: torch.device,
    batch_size: int = 256,
) -> np.ndarray:
    """`[N, 3, S, S]` uint8 faces -> the model's pooled embeddings as `[N, D]` unit rows.

    The same inputs and pooling as the run's encoder (mean-pooled, normalised as the run says).
    """
    mean = torch.tensor(preprocess.mean, device=device)[None, :, None, None]
    std = torch.tensor(preprocess.std, device=device)[None, :, None, None]
    was_training = model.training
    model.eval()
    parts = []
    for start in range(0, len(faces), batch_size):
        x = faces[start : start + batch_size].to(device).float() / 255.0
        parts.append(model.embed((x - mean) / std, pool="mean").float().cpu())
    model.train(was_training)
    features = torch.cat(parts) if parts else torch.zeros(0, preprocess.embed_dim)
    return torch.nn.functional.normalize(features, dim=1).numpy()


def fit_run_whitening(
    run: str | Path,
    model: nn.Module,
    faces: torch.Tensor,
    preprocess: Preprocess,
    *,
    components: int,
    max_faces: int,
    seed: int = 0,
    device: torch.device | None = None,
) -> Whitening:
    """Fit the whitening on (a seeded sample of at most `max_faces` of) `faces`; save it in RUN.

    RUN's model.safetensors must hold `model`'s weights: the whitening records their digest,
    and the run's encoder refuses a whitening fitted for other weights.
    """
    if len(faces) > max_faces:
        generator = torch.Generator().manual_seed(seed)
        faces = faces[torch.randperm(len(faces), generator=generator)[:max_faces]]
    device = device or next(model.parameters()).device
    components = max(1, min(components, len(faces) // FACES_PER_COMPONENT))
    fitted = fit_whitening(pooled_features(model, faces, preprocess, device), components)
    whitening = Whitening(fitted.mean, fitted.projection, weights_digest(run), len(faces))
    save_whitening(run, whitening)
    return whitening


def whiten_run(
    run: str | Path,
    datasets: list[str] | None = None,
    *,
    components: int | None = None,
    max_faces: int | None = None,
) -> Whitening:
    """Refit RUN's whitening on `datasets` (default: the datasets it was trained on).

    Identity datasets give only the training identities of the run's own split, so the
    held-out identities stay unseen; the defaults of `components` and `max_faces` are the run's.
    """
    from facerep.runs import load_run_model

    model, config = load_run_model(run)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    train = config.train
    faces = run_training_faces(run, config, datasets, "the whitening")
    return fit_run_whitening(
        run,
        model,
        faces.imgs,
        config.preprocess,
        components=components or int(train.get("whiten_components") or DEFAULT_COMPONENTS),
        max_faces=max_faces or int(train.get("whiten_faces") or _default("whiten_faces")),
        seed=int(train.get("seed", 0)),
        device=device,
    )


def run_training_faces(
    run: str | Path, config: RunConfig, datasets: list[str] | None, purpose: str
) -> PretrainFaces:
    """The faces of `datasets` (default: those RUN trained on) as the run saw them: its input
    size, and of identity datasets only the training identities of its split.

    Raises:
        ValueError: no datasets, or faces cropped with another padding than the run's.
    """
    from facerep.train.data import PretrainFaces

    train = config.train
    paths = datasets or [part["path"] for part in config.data]
    if not paths:
        raise ValueError(f"{run}: records no datasets; name the faces to fit {purpose} on")
    faces = PretrainFaces(
        paths,
        config.model.img_size,
        float(train.get("holdout_fraction", 0.5)),
        int(train.get("split_seed", 0)),
        bool(train.get("use_all_identities", False)),
    )
    if faces.padding != config.preprocess.crop_padding:
        raise ValueError(
            f"{', '.join(paths)}: cropped with padding {faces.padding:g}, the run with "
            f"{config.preprocess.crop_padding:g}: prepare the faces as the run's were"
        )
    return faces


def _default(name: str) -> object:
    """TrainConfig's default for `name` (runs trained before the field existed lack it)."""
    from facerep.train.config import TrainConfig

    return TrainConfig.__dataclass_fields__[name].default
