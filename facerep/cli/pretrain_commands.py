"""`facerep pretrain`: pretraining on prepared datasets; its flags are TrainConfig's fields."""

from __future__ import annotations

import inspect
import json as jsonlib
import os
import sys
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from facerep.cli.output import (
    Quiet,
    UsageError,
    console,
    console_err,
    escape,
    print_json,
    progress_bar,
)
from facerep.data.store import DatasetError
from facerep.train.config import TrainConfig, describe_bounds, field_types, load_config

if TYPE_CHECKING:  # torch: imported when `pretrain` runs, not by every command
    from facerep.train.loop import PretrainResult, StepInfo


# The options every pretraining run has beyond TrainConfig's own fields.
_FIXED_OPTIONS = {
    "datasets": Annotated[
        list[Path] | None,
        typer.Argument(help="Prepared dataset folders (from `facerep prepare`), read together."),
    ],
    "model_option": Annotated[
        list[str] | None,
        typer.Option("--model-option", help="Model override KEY=VALUE, e.g. decoder_depth=2."),
    ],
    "config": Annotated[
        Path | None,
        typer.Option(help='TOML or JSON file of options; `extend = "base.toml"` starts from one.'),
    ],
    "resume": Annotated[
        Path | None,
        typer.Option(help="Continue the run in this directory (--epochs may extend it)."),
    ],
    "overwrite": Annotated[
        bool, typer.Option(help="Start afresh in an --out that already holds a run.")
    ],
    "quiet": Quiet,
    "json": Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")],
}
_FIXED_DEFAULTS = {"overwrite": False, "quiet": False, "json": False}


def pretrain_command(**given: object) -> None:
    """Pretrain a face representation on prepared datasets (see list-models, list-objectives).

    Writes RUN/config.json, RUN/model.safetensors, checkpoints, TensorBoard logs (RUN/tb), and
    at the end RUN/loss_curve.png and the objective's figure (RUN/reconstructions.png).
    Options: defaults, then --config FILE, then flags. Multi-process: torchrun -m facerep.
    """
    datasets, model_option = given.pop("datasets"), given.pop("model_option")
    config, resume, overwrite = given.pop("config"), given.pop("resume"), given.pop("overwrite")
    quiet, json = given.pop("quiet"), given.pop("json")
    flags = {
        **{name: None if value is False else value for name, value in given.items()},
        "datasets": tuple(map(str, datasets)) if datasets else None,
        "model_overrides": _parse_overrides(model_option) or None,
    }
    from facerep.train.loop import TrainingDiverged, pretrain, resume_config

    try:
        if resume is not None:
            epochs = flags.pop("epochs")
            _refuse_with_resume({**flags, "config": config, "overwrite": overwrite or None})
            train_config = resume_config(resume, **({"epochs": epochs} if epochs else {}))
        else:
            train_config = load_config(config, **flags)
        if train_config.warmup_note and not (quiet or json):
            console_err.print(f"[yellow]note:[/yellow] {train_config.warmup_note}", highlight=False)
        if train_config.teacher and int(os.environ.get("WORLD_SIZE", "1")) == 1:
            _ensure_teacher_caches(train_config, quiet or json)
        with TrainingProgress(quiet or json) as on_step:
            result = pretrain(
                train_config, resume=resume is not None, overwrite=overwrite, on_step=on_step
            )
    except TrainingDiverged as e:
        console_err.print(f"[red]diverged:[/red] {e}", highlight=False)
        raise typer.Exit(1) from None
    except (ValueError, DatasetError) as e:
        raise UsageError(str(e)) from None
    _report(result, quiet, json)


def _config_option(item: Field) -> inspect.Parameter:
    """A `--flag` for one TrainConfig field: its type, help, bounds and default from the field."""
    kind = field_types()[item.name]
    dashed = item.name.replace("_", "-")
    default = item.default if item.default is not MISSING else item.default_factory()
    bounds = describe_bounds(item)
    help_text = " ".join(
        [item.metadata["help"], *([f"{bounds[0].upper()}{bounds[1:]}."] if bounds else [])]
    )
    if kind is bool:  # a switch: given, it sets the field True; else the file or default decides
        option = typer.Option(f"--{dashed}", help=help_text, show_default=False)
        return inspect.Parameter(
            item.name, inspect.Parameter.KEYWORD_ONLY, default=False,
            annotation=Annotated[bool, option],
        )
    if default not in ("", None):  # an empty default (no teacher, no start run) says nothing
        help_text += f" (default {default})"
    option = typer.Option(f"--{dashed}", help=help_text, show_default=False)
    return inspect.Parameter(
        item.name, inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[_optional(kind), option],
    )


def _optional(kind: Any) -> Any:
    """`kind | None` (None: not given, so the file or default decides)."""
    return kind if type(None) in get_args(kind) else kind | None


def _build_signature() -> None:
    """Give `pretrain_command` its parameters: the fixed ones, then one per TrainConfig field."""
    fixed = [
        inspect.Parameter(
            name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD
            if name == "datasets"
            else inspect.Parameter.KEYWORD_ONLY,
            default=_FIXED_DEFAULTS.get(name),
            annotation=annotation,
        )
        for name, annotation in _FIXED_OPTIONS.items()
    ]
    flags = [_config_option(item) for item in fields(TrainConfig) if item.metadata.get("cli")]
    parameters = [fixed[0], *flags, *fixed[1:]]
    pretrain_command.__signature__ = inspect.Signature(parameters)
    pretrain_command.__annotations__ = {p.name: p.annotation for p in parameters}


_build_signature()


def _refuse_with_resume(given: dict[str, object]) -> None:
    """A resumed run keeps its saved options: refuse flags that would be silently ignored."""
    flag = {"model_overrides": "model-option"}
    clashing = [
        f"--{flag.get(name, name.replace('_', '-'))}"
        for name, value in given.items()
        if value is not None
    ]
    if clashing:
        raise UsageError(
            f"--resume continues a run with its saved options; only --epochs may change "
            f"(drop {', '.join(clashing)})"
        )


def _parse_overrides(items: list[str] | None) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--model-option {item!r}: expected KEY=VALUE")
        try:
            overrides[key] = jsonlib.loads(value)
        except jsonlib.JSONDecodeError:
            overrides[key] = value
    return overrides


class TrainingProgress:
    """A rich progress bar with loss, lr and images/s, shown from the trainer's first step."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar, self.task = quiet, None, None

    def __enter__(self):
        return None if self.quiet else self.update

    def update(self, info: StepInfo) -> None:
        if self.bar is None:
            self.bar = Progress(
                TextColumn("epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=console_err,
            )
            self.task = self.bar.add_task("pretrain", total=info.total_steps, epoch=1, stats="")
            self.bar.start()
        stats = f"loss {info.loss:.4f}  lr {info.lr:.2e}  {info.images_per_sec:.0f} img/s"
        self.bar.update(
            self.task,
            completed=info.step,
            total=info.total_steps,
            epoch=info.epoch + 1,
            stats=stats,
        )

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _report(result: PretrainResult, quiet: bool, json: bool) -> None:
    epochs = result.epoch_losses
    if result.collapse:
        console_err.print(f"[yellow]warning:[/yellow] {result.collapse}", highlight=False)
    if json:
        print_json(
            {
                "run": str(result.run),
                "steps": result.steps,
                "epoch_losses": epochs,
                "images_per_sec": result.images_per_sec,
                "seconds": result.seconds,
                "collapse": result.collapse,
                "whitening": result.whitening,
            }
        )
        return
    if quiet:
        return
    if len(epochs) > 1:
        fall = 1.0 - epochs[-1] / epochs[0]
        console.print(
            f"loss {epochs[0]:.4f} (epoch 1) -> {epochs[-1]:.4f} (epoch {len(epochs)})"
            f": {fall:.0%} lower; {result.images_per_sec:.0f} images/s"
        )
    console.print(f"run: {result.run}")
    if result.figure is not None:
        console.print(f"{result.figure.stem}: {result.figure}")
    console.print(f"loss curve: {result.run / 'loss_curve.png'}")
    whitening = result.whitening
    if whitening and "error" in whitening:
        console_err.print(
            f"[yellow]warning:[/yellow] no whitening fitted ({escape(whitening['error'])}); "
            "the run embeds raw until `facerep whiten` fits one", highlight=False
        )
    elif whitening and "skipped" in whitening:
        console.print(f"whitening: none, {escape(whitening['skipped'])}", highlight=False)
    elif whitening:
        console.print(
            f"whitening: {whitening['components']:.0f} components fitted on "
            f"{whitening['faces']:.0f} training faces ({result.run / 'whitening.safetensors'})"
        )
    # The tensorboard beside this Python (.venv/bin), which the shell's PATH may not have.
    beside = Path(sys.executable).parent / "tensorboard"
    tensorboard = "tensorboard"
    if beside.exists():
        relative = os.path.relpath(beside)
        tensorboard = str(beside) if relative.startswith("..") else relative
    console.print(f"TensorBoard: {tensorboard} --logdir {result.run / 'tb'}")


def whiten_command(
    run: Annotated[Path, typer.Argument(help="A run folder written by `facerep pretrain`.")],
    datasets: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Prepared datasets to fit on [default: the run's own].", show_default=False
        ),
    ] = None,
    components: Annotated[
        int | None, typer.Option(help="Components kept [default: the run's, 128].", min=1)
    ] = None,
    faces: Annotated[
        int | None, typer.Option(help="Most faces fitted on [default: the run's, 10000].", min=4)
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fit the run's PCA whitening on unlabelled faces; its encoder then embeds whitened.

    Pretraining does this at its end (except for a mimic student in its teacher's own space);
    use it for runs trained before, to refit on other faces, or to whiten such a student.
    Identity datasets give only the run's training identities. Writes
    RUN/whitening.safetensors.
    """
    from facerep.train.whiten import whiten_run

    try:
        whitening = whiten_run(
            run, [str(d) for d in datasets] if datasets else None,
            components=components, max_faces=faces,
        )
    except (ValueError, DatasetError) as e:
        raise UsageError(str(e)) from None
    if json:
        print_json({"run": str(run), "components": whitening.dim, "faces": whitening.faces})
        return
    console.print(
        f"{escape(run)}: whitening of {whitening.dim} components fitted on {whitening.faces} faces"
    )


def _ensure_teacher_caches(config: TrainConfig, quiet: bool) -> None:
    """Build what a distillation run's datasets lack of their teacher caches, with progress.

    Under torchrun the caches must exist already (`facerep teacher-cache`): one process builds.
    """
    from facerep.train.teacher import complete_cache

    for dataset in config.datasets:
        if complete_cache(dataset, config.teacher, config.teacher_views) is None:
            _build_cache(Path(dataset), config.teacher, config.teacher_views, None, quiet)


def _build_cache(dataset: Path, teacher: str, views: int, workers: int | None, quiet: bool):
    """Build one dataset's teacher cache with a progress bar and an ETA; returns its folder."""
    from facerep.train.teacher import build_teacher_cache

    label = f"{dataset.name}: {teacher} x {views} views"
    with progress_bar(label, quiet) as update:
        return build_teacher_cache(
            dataset, teacher, views, workers,
            on_progress=lambda p: update(p.faces_done, p.faces_total),
        )


def teacher_cache_command(
    datasets: Annotated[
        list[Path], typer.Argument(help="Prepared dataset folders (from `facerep prepare`).")
    ],
    teacher: Annotated[str, typer.Option(help="The face model to distil from: dlib.")] = "dlib",
    views: Annotated[
        int, typer.Option(help="Fixed views per face (view 0: the crop itself).", min=1)
    ] = 4,
    workers: Annotated[
        int | None, typer.Option(help="Processes [default: one per CPU].", min=1)
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Embed every face's fixed views with the teacher, once, for `pretrain --objective mimic`.

    Writes DATASET/teachers/<teacher>-<views>views-<recipe>/ in chunks, each atomically: a
    killed build resumes where it stopped, a dataset that grew gets only its new faces, and
    later runs reuse it. dlib takes about 75 ms a face-view on one core.
    """
    from facerep.teachers import check_teacher
    from facerep.train.teacher import complete_cache

    try:
        check_teacher(teacher)
        for dataset in datasets:
            # A cache of more views serves fewer: nothing to embed again.
            folder = complete_cache(dataset, teacher, views) or _build_cache(
                dataset, teacher, views, workers, quiet
            )
            if not quiet:
                console.print(f"{escape(dataset)}: teacher cache complete in {escape(folder)}")
    except (ValueError, DatasetError) as e:
        raise UsageError(str(e)) from None


def export_command(
    run: Annotated[Path, typer.Argument(help="A run folder written by `facerep pretrain`.")],
    onnx: Annotated[
        Path, typer.Option("--onnx", help="The ONNX file to write (a name ending in .onnx).")
    ],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
) -> None:
    """Export the run's encoder (whitening included) to ONNX: one file, a complete encoder.

    The file takes uint8 aligned crops [N, S, S, 3] and gives unit embeddings; its metadata
    holds the input size, mean and std, embedding size and the calibrated threshold. Use it
    anywhere an encoder is accepted (`--encoder model.onnx`), run by onnxruntime.
    """
    from facerep.encoders.onnx_export import export_onnx
    from facerep.runs import is_run

    if not is_run(run):
        raise UsageError(f"{run}: not a facerep run directory (no config.json)")
    try:
        metadata = export_onnx(run, onnx, overwrite=overwrite)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    if json:
        print_json({"onnx": str(onnx), **metadata})
        return
    threshold = metadata.get("threshold", "none (run facerep calibrate first to carry one)")
    console.print(
        f"{escape(onnx)}: {metadata['embed_dim']}-D encoder of {escape(run)} at "
        f"{metadata['input_size']} px, threshold {threshold}",
        highlight=False,
    )


def list_models_command(
    pattern: Annotated[str, typer.Argument(help="Shell pattern, e.g. 'mae_vit_*'.")] = "*",
) -> None:
    """List the registered model names."""
    from facerep.models.registry import MODEL_ALIASES, list_models

    for name in list_models(pattern):
        aliases = [alias for alias, target in MODEL_ALIASES.items() if target == name]
        console.print(name + (f"  (alias: {', '.join(aliases)})" if aliases else ""))


def list_objectives_command() -> None:
    """List the pretraining objectives (`facerep pretrain --objective NAME`)."""
    from facerep.objectives.registry import DEFAULT_OBJECTIVE, list_objectives

    for entry in list_objectives():
        default = "  (default)" if entry.name == DEFAULT_OBJECTIVE else ""
        console.print(f"{entry.name}{default}: {entry.summary}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the pretraining commands to the CLI."""
    app.command("pretrain")(pretrain_command)
    app.command("whiten")(whiten_command)
    app.command("teacher-cache")(teacher_cache_command)
    app.command("export")(export_command)
    app.command("list-models")(list_models_command)
    app.command("list-objectives")(list_objectives_command)
