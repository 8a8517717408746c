"""`facerep pretrain`: masked-autoencoder pretraining on prepared datasets."""

from __future__ import annotations

import json as jsonlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from facerep.cli.output import Quiet, UsageError, console, console_err, print_json
from facerep.data.store import DatasetError
from facerep.models.strategies import MaskingStrategy
from facerep.train.config import Precision, load_config

if TYPE_CHECKING:  # torch: imported when `pretrain` runs, not by every command
    from facerep.train.loop import PretrainResult, StepInfo


def pretrain_command(
    datasets: Annotated[
        list[Path] | None,
        typer.Argument(help="Prepared dataset folders (from `facerep prepare`), read together."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory to write.")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="vit-tiny, vit-small, vit-base, conv-ae or a full name (see list-models)."
        ),
    ] = None,
    masking: Annotated[
        MaskingStrategy | None,
        typer.Option(help="random (MAE), face-regions (FSFM-style) or noise (ColorMAE-style)."),
    ] = None,
    mask_ratio: Annotated[float | None, typer.Option(min=0.0, max=0.95)] = None,
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch.", min=1)] = None,
    blr: Annotated[float | None, typer.Option(help="Base lr; lr = blr * batch / 256.")] = None,
    warmup_epochs: Annotated[float | None, typer.Option(min=0.0)] = None,
    precision: Annotated[
        Precision | None,
        typer.Option(help="auto (bf16 on CUDA), fp32, or bf16 (also on CPUs with bf16 units)."),
    ] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Steps between checkpoints.", min=1)
    ] = None,
    model_option: Annotated[
        list[str] | None,
        typer.Option("--model-option", help="Model override KEY=VALUE, e.g. decoder_depth=2."),
    ] = None,
    use_all_identities: Annotated[
        bool, typer.Option(help="Also train on the held-out identities of identity datasets.")
    ] = False,
    config: Annotated[Path | None, typer.Option(help="TOML or JSON file of options.")] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the run in this directory (--epochs may extend it)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Start afresh in an --out that already holds a run.")
    ] = False,
    quiet: Quiet = False,
    json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Pretrain a face masked autoencoder (or the conv-AE baseline) on prepared datasets.

    Writes RUN/config.json, RUN/model.safetensors, checkpoints, TensorBoard logs (RUN/tb) and,
    at the end, RUN/reconstructions.png and RUN/loss_curve.png. Works the same under
    `torchrun --nproc_per_node=N -m facerep pretrain ...`.
    """
    flags = {
        "datasets": tuple(map(str, datasets)) if datasets else None,
        "out": str(out) if out else None,
        "model": model,
        "masking": masking,
        "mask_ratio": mask_ratio,
        "batch_size": batch_size,
        "blr": blr,
        "warmup_epochs": warmup_epochs,
        "precision": precision,
        "seed": seed,
        "checkpoint_every": checkpoint_every,
        "model_overrides": _parse_overrides(model_option) or None,
        "use_all_identities": use_all_identities or None,
    }
    from facerep.train.loop import TrainingDiverged, pretrain, resume_config

    try:
        if resume is not None:
            _refuse_with_resume({**flags, "config": config, "overwrite": overwrite or None})
            train_config = resume_config(resume, **({"epochs": epochs} if epochs else {}))
        else:
            train_config = load_config(config, epochs=epochs, **flags)
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


def _refuse_with_resume(given: dict[str, object]) -> None:
    """A resumed run keeps its saved options: refuse flags that would be silently ignored."""
    flag = {"model_overrides": "model-option"}
    clashing = [
        f"--{flag.get(name, name.replace('_', '-'))}" for name, value in given.items() if value
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
    if json:
        print_json(
            {
                "run": str(result.run),
                "steps": result.steps,
                "epoch_losses": epochs,
                "images_per_sec": result.images_per_sec,
                "seconds": result.seconds,
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
    console.print(f"reconstructions: {result.run / 'reconstructions.png'}")
    console.print(f"loss curve: {result.run / 'loss_curve.png'}")
    # The tensorboard beside this Python (.venv/bin), which the shell's PATH may not have.
    beside = Path(sys.executable).parent / "tensorboard"
    tensorboard = "tensorboard"
    if beside.exists():
        relative = os.path.relpath(beside)
        tensorboard = str(beside) if relative.startswith("..") else relative
    console.print(f"TensorBoard: {tensorboard} --logdir {result.run / 'tb'}")


def list_models_command(
    pattern: Annotated[str, typer.Argument(help="Shell pattern, e.g. 'mae_vit_*'.")] = "*",
) -> None:
    """List the registered model names."""
    from facerep.models.registry import MODEL_ALIASES, list_models

    for name in list_models(pattern):
        aliases = [alias for alias, target in MODEL_ALIASES.items() if target == name]
        console.print(name + (f"  (alias: {', '.join(aliases)})" if aliases else ""))


def register(app: typer.Typer) -> None:
    """Add the pretraining commands to the CLI."""
    app.command("pretrain")(pretrain_command)
    app.command("list-models")(list_models_command)
