"""The pretraining configuration: one typed dataclass, overridable from a TOML file and the CLI.

Defaults follow MAE's pretraining recipe (He et al. 2022: AdamW with betas (0.9, 0.95), weight
decay 0.05, base lr scaled by batch/256, cosine decay after a warmup), shortened for the small
face corpora and small batches this project trains on.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from facerep.models.strategies import MaskingStrategy

Precision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a pretraining run; saved as config.json beside its checkpoints."""

    datasets: tuple[str, ...] = ()  # prepared dataset folders, read together
    out: str = "runs/pretrain"  # run directory: checkpoints, logs, figures
    model: str = "vit-tiny"  # a registered name or alias (facerep.models.list_models)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"decoder_depth": 2}
    masking: MaskingStrategy = "random"  # random (MAE), face-regions (FSFM), noise (ColorMAE)
    mask_ratio: float = 0.75  # MAE's ratio; faces are as redundant as ImageNet photos
    epochs: int = 20  # ~45 minutes for vit-tiny on the 15k-face corpus on 2 CPU cores
    batch_size: int = 64  # global batch, split across processes under torchrun
    # Base lr; the applied lr is blr * batch_size / 256 (MAE's rule). MAE's 1.5e-4 is tuned for
    # batch 4096; at batch 64 it gives 3.75e-5, and a 150-step probe on the unlabeled corpus
    # reached a lower loss at 3e-4 and 1.5e-3 (0.673, 0.655 against 0.744): 4e-3 gives 1e-3.
    blr: float = 4e-3
    lr: float | None = None  # absolute lr, overriding blr when set
    min_lr: float = 0.0  # cosine floor
    warmup_epochs: float = 2.0  # linear warmup, then cosine decay to min_lr
    weight_decay: float = 0.05  # not applied to norms, biases and tokens
    betas: tuple[float, float] = (0.9, 0.95)  # MAE's AdamW betas
    clip_grad: float | None = 1.0  # max gradient norm; None disables
    # Identity datasets give only their training identities: the rest is kept for evaluation.
    holdout_fraction: float = 0.5
    split_seed: int = 0  # the seeded identity split shared with `facerep eval`
    use_all_identities: bool = False  # train on every identity (no held-out evaluation)
    hflip: float = 0.5  # probability of a horizontal flip
    scale_jitter: float = 0.1  # random zoom in [1 - j, 1 + j] about the crop centre
    shift_jitter: float = 0.05  # random shift, as a fraction of the crop side
    color_jitter: float = 0.2  # brightness, contrast and saturation factors in [1 - c, 1 + c]
    precision: Precision = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    seed: int = 0
    checkpoint_every: int = 200  # optimizer steps between checkpoints (plus one at the end)
    keep_checkpoints: int = 2  # older step checkpoints are deleted
    log_every: int = 10  # steps between TensorBoard scalars
    threads: int | None = None  # torch CPU threads per process; None: torch's default

    def __post_init__(self) -> None:
        _check_types(self)
        positive = ("epochs", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) exceeds epochs ({self.epochs}):"
                " the lr would never reach its peak"
            )

    @property
    def base_lr_scaled(self) -> float:
        """The peak learning rate actually applied."""
        return self.lr if self.lr is not None else self.blr * self.batch_size / 256

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict (a config.json or a TOML table), refusing unknown keys."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown training options {unknown}; valid: {', '.join(sorted(names))}"
            )
        data = dict(data)
        for key in ("datasets", "betas"):
            if isinstance(data.get(key), list):  # JSON and TOML have lists, not tuples
                data[key] = tuple(data[key])
        return cls(**data)


def _check_types(config: TrainConfig) -> None:
    """One-line errors for a wrong type or mode (a TOML `epochs = "10"`, `precision = "fp16"`)."""
    for name, expected in _field_types().items():
        value = getattr(config, name)
        if not _matches(value, expected):
            raise ValueError(f"{name} must be {_describe(expected)}, got {value!r}")


@cache
def _field_types() -> dict[str, Any]:
    """Each field's resolved annotation (the module's `from __future__` leaves them strings)."""
    return get_type_hints(TrainConfig)


def _matches(value: Any, expected: Any) -> bool:
    """Whether `value` fits the annotation `expected`: the few shapes TrainConfig uses."""
    origin, args = get_origin(expected), get_args(expected)
    if expected is Any:
        return True
    if expected is type(None):
        return value is None
    if origin is Literal:
        return any(type(value) is type(arg) and value == arg for arg in args)
    if origin in (Union, UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(item, args[0]) for item in value)
        return len(value) == len(args) and all(map(_matches, value, args))
    if origin is dict:
        return isinstance(value, dict) and all(_matches(key, args[0]) for key in value)
    if isinstance(value, bool):
        return expected is bool  # True is an int to Python, never an epoch count to us
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def _describe(expected: Any) -> str:
    """An annotation in words: `one of 'auto', 'fp32', 'bf16'`, `a list of str`."""
    origin, args = get_origin(expected), get_args(expected)
    if expected is type(None):
        return "None"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (Union, UnionType):
        return " or ".join(map(_describe, args))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values ({', '.join(map(_describe, args))})"
    if origin is dict:
        return "a table"
    return getattr(expected, "__name__", str(expected))


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then a TOML or JSON file, then `overrides` (None values are left out)."""
    # The file is checked alone first, so its mistakes are reported even where a flag overrides.
    options = _read_file(Path(path)) if path is not None else {}
    config = TrainConfig.from_dict(options)
    set_values = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig.from_dict({**options, **set_values}) if set_values else config


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ValueError(f"{path}: not valid {kind} ({e})") from None
