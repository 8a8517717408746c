"""The pretraining configuration: one typed dataclass, overridable from a TOML file and the CLI.

Defaults follow MAE's pretraining recipe (He et al. 2022: AdamW with betas (0.9, 0.95), weight
decay 0.05, base lr scaled by batch/256, cosine decay after a warmup), shortened for the small
face corpora and small batches this project trains on.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from facerep.models.strategies import MaskingStrategy
from facerep.objectives.registry import DEFAULT_OBJECTIVE, check_objective
from facerep.teachers import check_teacher

Precision = Literal["auto", "fp32", "bf16"]
MimicLoss = Literal["cosine", "relation", "cosine+relation"]
Optimizer = Literal["adamw", "sgd"]
# A warmup longer than the run (the default 2 epochs in a 1-epoch run) becomes this share of it:
# the default recipe's share (2 of 20 epochs), so a short run keeps the recipe's shape.
CLIPPED_WARMUP_SHARE = 0.1


def option(
    default: Any = MISSING,
    help: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    cli: bool = True,
    factory: Any = MISSING,
) -> Any:
    """A config field with its help text and bounds, from which `facerep pretrain`'s flags are
    made: one definition, so the flag and the config cannot disagree.

    Args:
        default: the field's default (or `factory` for a mutable one).
        help: one line for `--help` and for readers of the config.
        low, high: bounds, inclusive unless `low_open` or `high_open`; checked on every config.
        cli: whether it gets a flag (lists and tables come from a config file only).
    """
    metadata = {
        "help": help, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
        "cli": cli,
    }
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a pretraining run; saved as config.json beside its checkpoints."""

    datasets: tuple[str, ...] = option((), "Prepared dataset folders, read together.", cli=False)
    out: str = option("runs/pretrain", "Run directory: checkpoints, logs, figures.")
    model: str = option("vit-tiny", "A registered model name or alias (see list-models).")
    model_overrides: dict[str, Any] = option(
        help="Model config fields to change, e.g. {decoder_depth = 2}.", cli=False, factory=dict
    )
    # A distilled student can start from what a self-supervised run learned, not from noise.
    init_from: str = option(
        "", "Start from this run's weights (a run of the same model) instead of random ones; "
        "momentum copies start from them too, projection heads afresh."
    )
    objective: str = option(
        DEFAULT_OBJECTIVE, "What the model learns from (see list-objectives)."
    )
    # Masked reconstruction's options.
    masking: MaskingStrategy = option(
        "random", "random (MAE), face-regions (FSFM-style) or noise (ColorMAE-style)."
    )
    # MAE's ratio; faces are as redundant as ImageNet photos.
    mask_ratio: float = option(0.75, "Share of patches hidden.", low=0.0, high=1.0, high_open=True)
    # ~45 minutes for vit-tiny on the 15k-face corpus on 2 CPU cores.
    epochs: int = option(20, "Passes over the faces.", low=1)
    batch_size: int = option(64, "Global batch, split across processes under torchrun.", low=1)
    # The applied lr is blr * batch_size / 256 (MAE's rule). MAE's 1.5e-4 is tuned for batch
    # 4096; at batch 64 it gives 3.75e-5, and a 150-step probe on the unlabeled corpus reached a
    # lower loss at 3e-4 and 1.5e-3 (0.673, 0.655 against 0.744): 4e-3 gives 1e-3.
    blr: float = option(4e-3, "Base lr; lr = blr * batch / 256.", low=0.0)
    lr: float | None = option(None, "Absolute lr, overriding --blr.", low=0.0)
    min_lr: float = option(0.0, "Floor of the cosine decay.", low=0.0)
    warmup_epochs: float = option(
        2.0,
        "Linear warmup before the cosine decay; longer than the run: 10% of it.",
        low=0.0,
    )
    weight_decay: float = option(0.05, "AdamW decay; not on norms, biases, tokens.", low=0.0)
    # AdamW is MAE's; contrastive recipes (MoCo, SimCLR) use SGD with momentum 0.9.
    optimizer: Optimizer = option("adamw", "adamw (MAE) or sgd (momentum 0.9, MoCo).")
    betas: tuple[float, float] = option((0.9, 0.95), "MAE's AdamW betas.", cli=False)
    clip_grad: float | None = option(1.0, "Max gradient norm; 0 disables.", low=0.0)
    # Identity datasets give only their training identities: the rest is kept for evaluation.
    holdout_fraction: float = option(
        0.5, "Share of identities held out of identity datasets.", low=0.0, high=1.0,
        low_open=True, high_open=True,
    )
    split_seed: int = option(0, "Seed of the identity split shared with `facerep eval`.")
    use_all_identities: bool = option(
        False, "Also train on the held-out identities of identity datasets."
    )
    hflip: float = option(0.5, "Probability of a horizontal flip.", low=0.0, high=1.0)
    scale_jitter: float = option(0.1, "Random zoom in [1 - j, 1 + j].", low=0.0, high=1.0)
    shift_jitter: float = option(0.05, "Random shift, a share of the crop side.", low=0.0, high=1.0)
    color_jitter: float = option(
        0.2, "Brightness, contrast, saturation factors in [1 - c, 1 + c].", low=0.0, high=1.0
    )
    # Stronger, still face-safe views for joint-embedding objectives; off by default.
    rotation_jitter: float = option(
        0.0, "Largest random roll in degrees (tilted heads; 10 keeps faces upright).",
        low=0.0, high=45.0,
    )
    greyscale: float = option(
        0.0, "Probability of a grey view (colour says little of who it is).", low=0.0, high=1.0
    )
    blur: float = option(0.0, "Probability of a Gaussian blur (focus, resolution).", low=0.0,
                         high=1.0)
    erase: float = option(
        0.0, "Probability of a grey square over 10-30% of the side (an occluder).", low=0.0,
        high=1.0,
    )
    # Instance discrimination's options (MoCo v2: He et al. 2020, Chen et al. 2020).
    queue_size: int = option(
        4096, "Negatives kept from earlier batches (instance); not tied to the batch.", low=1
    )
    temperature: float = option(0.2, "Softmax temperature of the contrastive loss.", low=0.001)
    momentum: float = option(
        0.99, "EMA rate of the momentum encoder (instance, mae+id).", low=0.0, high=1.0
    )
    projection_dim: int = option(128, "Output size of the projection head.", low=1)
    # FSFM weighs its siamese identity term at about a tenth of the reconstruction.
    identity_weight: float = option(
        0.1, "Weight of mae+id's identity branch beside the reconstruction.", low=0.0
    )
    # Distillation (mimic, MR-MAE): a teacher's embeddings of fixed views, cached per dataset.
    teacher: str = option(
        "", "Face model to distil from (objective mimic): dlib. Its embeddings are cached "
        "beside each dataset (`facerep teacher-cache`)."
    )
    teacher_views: int = option(
        4, "Fixed views per face the student learns the teacher's answer on (view 0: the "
        "crop itself).", low=1,
    )
    # dlib's unit embeddings share one direction (mean norm 0.93), which is most of a raw
    # cosine; centred, the student's loss is all about what tells faces apart.
    teacher_centred: bool = option(
        False, "Distil the teacher's embeddings with their mean (over the training faces' "
        "views) taken away, renormalised."
    )
    # Changes the teacher barely notices (measured in facerep.train.augment.NUDGE's comment).
    teacher_jitter: float = option(
        0.0, "Strength of small online changes (colour +-20%, zoom +-5%, roll +-5 degrees at "
        "1) on top of each cached view; 0: the fixed views exactly.", low=0.0, high=3.0,
    )
    mimic_weight: float = option(
        1.0, "Weight of the mimic loss (beside the reconstruction for an autoencoder).", low=0.0
    )
    # bench/distillation.py, 10 epochs each: cosine ORL 95.1% / cs131 74.3%, cosine+relation
    # 86.8% / 62.7% (held-out identities, shipped). Cosine alone equals MSE on unit vectors.
    mimic_loss: MimicLoss = option(
        "cosine", "cosine to the teacher's unit embedding, relation (the batch's pairwise "
        "similarities), or both."
    )
    # Whitening needs no labels, so the run fits it on its own faces and its encoder applies it.
    whiten_components: int = option(
        128, "PCA-whitening components fitted at the end on the training faces and applied by "
        "the run's encoder (0: raw embeddings; a student in its teacher's space has none).",
        low=0,
    )
    whiten_faces: int = option(
        10000, "Most training faces the whitening is fitted on (a seeded sample); it keeps "
        "at most one component per 4 faces.", low=4
    )
    precision: Precision = option(
        "auto", "auto (bf16 on CUDA), fp32, or bf16 (also on CPUs with bf16 units)."
    )
    seed: int = option(0, "Seed of the weights, batches, augmentation and masks.")
    checkpoint_every: int = option(200, "Steps between checkpoints (plus one at the end).", low=1)
    keep_checkpoints: int = option(2, "Step checkpoints kept; older ones are deleted.", low=1)
    log_every: int = option(10, "Steps between TensorBoard scalars.", low=1)
    threads: int | None = option(None, "Torch CPU threads per process (default: torch's).", low=1)

    def __post_init__(self) -> None:
        _check_types(self)
        for item in fields(self):
            _check_bounds(item, getattr(self, item.name))
        entry = check_objective(self.objective)
        if self.teacher:
            check_teacher(self.teacher)
            # A teacher replaces the random views by its fixed ones: only for distillation.
            if "teacher" not in entry.options:
                raise ValueError(
                    f"--teacher is for objectives that distil (mimic), not {self.objective}"
                )
        elif self.teacher_centred:
            raise ValueError("--teacher-centred centres a teacher's embeddings: pass --teacher")
        elif self.teacher_jitter:
            raise ValueError("--teacher-jitter nudges a teacher's cached views: pass --teacher")

    @property
    def warmup_epochs_used(self) -> float:
        """The warmup applied: `warmup_epochs`, or a share of a run that is shorter than it."""
        if self.warmup_epochs > self.epochs:
            return CLIPPED_WARMUP_SHARE * self.epochs
        return self.warmup_epochs

    @property
    def warmup_note(self) -> str | None:
        """Why the warmup applied differs from the one asked for, or None."""
        if self.warmup_epochs_used == self.warmup_epochs:
            return None
        return (
            f"warmup of {self.warmup_epochs:g} epochs is longer than the {self.epochs}-epoch run:"
            f" warming up over the first {self.warmup_epochs_used:g} instead"
            f" ({CLIPPED_WARMUP_SHARE:.0%} of it)"
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


def _check_bounds(item: Field, value: Any) -> None:
    """One-line errors for a value outside a field's bounds (`option(low=..., high=...)`)."""
    meta = item.metadata
    low, high = meta.get("low"), meta.get("high")
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return  # a wrong type is `_check_types`'s to report
    too_low = low is not None and (value < low or (meta["low_open"] and value == low))
    too_high = high is not None and (value > high or (meta["high_open"] and value == high))
    if too_low or too_high:
        raise ValueError(f"{item.name} must be {describe_bounds(item)}, got {value}")


def describe_bounds(item: Field) -> str:
    """A field's bounds in words: `at least 1`, `in [0, 1)`; empty when it has none."""
    meta = item.metadata
    low, high = meta.get("low"), meta.get("high")
    if low is None:
        return ""
    if high is None:
        return f"{'above' if meta['low_open'] else 'at least'} {low:g}"
    opening, closing = "(" if meta["low_open"] else "[", ")" if meta["high_open"] else "]"
    return f"in {opening}{low:g}, {high:g}{closing}"


def _check_types(config: TrainConfig) -> None:
    """One-line errors for a wrong type or mode (a TOML `epochs = "10"`, `precision = "fp16"`)."""
    for name, expected in field_types().items():
        value = getattr(config, name)
        if not _matches(value, expected):
            raise ValueError(f"{name} must be {_describe(expected)}, got {value!r}")


@cache
def field_types() -> dict[str, Any]:
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


# A config file may start from another, as ruff's `extend` does: `extend = "mimic.toml"` (a path
# relative to the file, a symlink's target) takes that file's options, and the file's own keys
# win. Recipes that differ from a base by one option then say only that option.
_EXTEND_KEY = "extend"


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then a TOML or JSON file and what it extends, then `overrides` (not None)."""
    # The file is checked alone first, so its mistakes are reported even where a flag overrides.
    options = _read_file(Path(path)) if path is not None else {}
    try:
        config = TrainConfig.from_dict(options)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    set_values = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig.from_dict({**options, **set_values}) if set_values else config


def _read_file(path: Path, extended_by: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's options on top of those of the file it names in `extend`, if any."""
    options = _parse_file(path)
    base = options.pop(_EXTEND_KEY, None)
    if base is None:
        return options
    if not isinstance(base, str) or not base:
        raise ValueError(f"{path}: {_EXTEND_KEY} must be the path of a config file, got {base!r}")
    here = path.resolve()
    base_path = here.parent / base
    chain = (*extended_by, here)
    if base_path.resolve() in chain:
        raise ValueError(f"{path}: {_EXTEND_KEY} = {base!r} leads back to a file it extends")
    try:
        return _merged(_read_file(base_path, chain), options)
    except ValueError as e:  # name the file that asked for the base, too
        raise ValueError(f"{path}: {_EXTEND_KEY} = {base!r}: {e}") from None


def _merged(base: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """`options` over `base`; a table in both (model_overrides) is merged key by key."""
    out = dict(base)
    for key, value in options.items():
        both_tables = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _merged(base[key], value) if both_tables else value
    return out


def _parse_file(path: Path) -> dict[str, Any]:
    """The options written in one TOML or JSON file."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        options = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ValueError(f"{path}: not valid {kind} ({e})") from None
    if not isinstance(options, dict):  # JSON allows a bare list or number
        raise ValueError(f"{path}: a config must be a table of options, got {options!r:.40}")
    return options
