"""A run folder as inference reads it: the model, its weights, and the input they expect.

    RUN/config.json        {"model": ..., "preprocess": ..., "train": ..., "data": [...]}
    RUN/model.safetensors  the latest weights of the model (the encoder a user loads)
    RUN/calibration.json   a verification threshold, once `facerep calibrate` has measured one

The preprocessing travels with the weights, after timm's `PretrainedCfg`: input size, mean and
std, the crop template and padding, and the embedding size. Training writes this format;
encoders, calibration and evaluation read it here, without importing the trainer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facerep.files import atomic_write, atomic_write_bytes, file_digest
from facerep.models.config import ModelConfig

if TYPE_CHECKING:  # torch loads with the first model, not with `import facerep`
    import torch
    from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CALIBRATION_FILE = "calibration.json"

# Inputs are normalised with ImageNet statistics, as MAE does.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
CROP_TEMPLATE = "dlib 5-point mean face (facerep.faces.align)"


@dataclass(frozen=True)
class Preprocess:
    """What a face must look like on its way into the model, and what comes out."""

    input_size: int  # crop side the model takes; other crops are resized to it
    embed_dim: int  # the model's pooled features D (a whitened encoder may keep fewer)
    crop_padding: float  # the margin around the template the crops were prepared with
    mean: tuple[float, float, float] = IMAGE_MEAN  # per-channel, on [0, 1] pixels
    std: tuple[float, float, float] = IMAGE_STD
    crop_template: str = CROP_TEMPLATE  # where the 5 landmarks were put

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], model: ModelConfig) -> Preprocess:
        """Read a config.json `preprocess`, including runs written before it was typed."""
        return cls(
            # Runs before the typed format named the input side `img_size` and had no dim.
            input_size=int(data.get("input_size", data.get("img_size", model.img_size))),
            embed_dim=int(data.get("embed_dim", model.embed_dim)),
            crop_padding=float(data["crop_padding"]),
            mean=tuple(map(float, data.get("mean", IMAGE_MEAN))),
            std=tuple(map(float, data.get("std", IMAGE_STD))),
            crop_template=str(data.get("crop_template", CROP_TEMPLATE)),
        )


@dataclass(frozen=True)
class RunConfig:
    """A run's config.json: the model, its preprocessing, and how it was trained."""

    model: ModelConfig
    preprocess: Preprocess
    train: dict[str, Any] = field(default_factory=dict)  # the TrainConfig fields, as saved
    data: list[dict[str, Any]] = field(default_factory=list)  # what each dataset contributed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, the layout of config.json."""
        return {
            "model": self.model.to_dict(),
            "train": self.train,
            "preprocess": self.preprocess.to_dict(),
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Inverse of `to_dict`; raises ValueError for a config that does not describe a run."""
        from facerep.models.registry import config_from_dict

        model = config_from_dict(data["model"])
        preprocess = Preprocess.from_dict(data["preprocess"], model)
        return cls(model, preprocess, dict(data.get("train", {})), list(data.get("data", [])))

    @property
    def identity_split(self) -> tuple[float, int]:
        """(train fraction, seed) of the identity split the run was trained with."""
        holdout = float(self.train.get("holdout_fraction", 0.5))
        return 1.0 - holdout, int(self.train.get("split_seed", 0))


def is_run(path: str | Path) -> bool:
    """Whether `path` is a run folder (it has a config.json)."""
    return (Path(path) / CONFIG_FILE).is_file()


def read_run_config(run: str | Path) -> RunConfig:
    """Read RUN/config.json, with a one-line error when RUN is not a readable facerep run."""
    path = Path(run) / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{run}: not a facerep run directory (no {CONFIG_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: damaged ({e})") from None
    try:
        return RunConfig.from_dict(data)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a run config ({type(e).__name__}: {e})") from None


def write_run_config(run: str | Path, config: RunConfig) -> None:
    """Write RUN/config.json atomically."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    with atomic_write(run / CONFIG_FILE, "w") as f:
        json.dump(config.to_dict(), f, indent=2)


def weights_digest(run: str | Path) -> str:
    """A digest of the run's latest weights: changes whenever they do."""
    return file_digest(Path(run) / WEIGHTS_FILE)


def load_run_model(run: str | Path) -> tuple[nn.Module, RunConfig]:
    """The run's model with its latest weights, on the CPU in eval mode, and its config."""
    config = read_run_config(run)
    weights = Path(run) / WEIGHTS_FILE
    if not weights.is_file():
        raise ValueError(f"{run}: no {WEIGHTS_FILE} yet (has the run written a checkpoint?)")
    model = config.model.build()
    model.load_state_dict(load_weights(weights))
    return model.eval(), config


def weights_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """A state dict serialised as safetensors (on the CPU)."""
    from safetensors.torch import save

    return save({k: v.detach().to("cpu").contiguous() for k, v in state.items()})


def save_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Save a state dict as safetensors, atomically."""
    atomic_write_bytes(path, weights_bytes(state))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load safetensors weights on the CPU."""
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")
