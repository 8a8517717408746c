"""`facerep gallery add|remove|list|info|compact`: build and maintain a face gallery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facerep.cli.output import (
    Json,
    Quiet,
    UsageError,
    console,
    console_err,
    escape,
    exit_for,
    print_json,
    print_table,
    progress_bar,
    user_errors,
)
from facerep.tasks.index_policy import IndexChoice
from facerep.types import count_unreadable

GalleryArgument = Annotated[Path, typer.Argument(help="The gallery folder.")]

gallery_app = typer.Typer(
    help="Build and maintain a face gallery (search it with `facerep search`).",
    no_args_is_help=True,
)


def _open(
    path: Path,
    encoder: str | None = None,
    index: IndexChoice = "auto",
    create: bool = False,
    read_only: bool = False,
):
    from facerep.tasks.gallery import Gallery

    return Gallery(path, encoder, index=index, create=create, read_only=read_only)


@gallery_app.command("add")
def add(
    gallery: GalleryArgument,
    folder: Annotated[Path, typer.Argument(help="Photos: one folder per person, or see --label.")],
    label: Annotated[
        str | None,
        typer.Option(help="Enrol every photo under FOLDER as this person (else: folder names)."),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option("--encoder", "-e", help="For a new gallery: dlib, a run or a .onnx."),
    ] = None,
    index: Annotated[
        IndexChoice,
        typer.Option(help="auto (exact up to 100k faces, then ivf), exact, ivf or hnsw."),
    ] = "auto",
    quiet: Quiet = False,
    json: Json = False,
) -> None:
    """Enrol the largest face of each photo under FOLDER into GALLERY (created if needed).

    Photos already enrolled are skipped, so a re-run completes an interrupted one. Photos with
    no face are listed and skipped; exit code 1 when some could not be read (the rest are added).
    """
    from facerep.tasks.enrol import enrol_folder
    from facerep.tasks.gallery.labels import check_label

    if label is not None:
        with user_errors():
            check_label(label, "--label")  # before the gallery is made or a photo read
    with (
        user_errors(),
        progress_bar("enrol", quiet or json) as on_progress,
        _open(gallery, encoder, index, create=True) as opened,
    ):
        summary = enrol_folder(opened, folder, label, on_progress)
        total = len(opened)
    if json:
        print_json(
            {
                "added": summary.added,
                "already_enrolled": summary.already_enrolled,
                "labels": summary.labels,
                "failures": [{"source": s, "reason": r} for s, r in summary.failures],
                "faces": total,
            }
        )
    else:
        for source, reason in summary.failures:
            skipped = escape(f"{source}: {reason}")
            console_err.print(f"[yellow]skipped[/yellow] {skipped}", highlight=False)
        if not quiet:
            console.print(
                f"added {summary.added} faces of {len(summary.labels)} people "
                f"({summary.already_enrolled} already enrolled, {len(summary.failures)} "
                f"skipped); {escape(gallery)} holds {total} faces."
            )
    exit_for(count_unreadable(summary.failures))


@gallery_app.command("remove")
def remove(
    gallery: GalleryArgument,
    label: Annotated[str | None, typer.Option(help="Remove every face of this person.")] = None,
    face_id: Annotated[int | None, typer.Option("--id", help="Remove this one face.")] = None,
    compact: Annotated[
        bool,
        typer.Option(help="Then erase removed faces from disk (else they are only unsearchable)."),
    ] = True,
    json: Json = False,
) -> None:
    """Remove a person (--label) or one face (--id); by default erase them from disk too."""
    if (label is None) == (face_id is None):
        raise UsageError("give exactly one of --label NAME or --id N")
    with user_errors(), _open(gallery) as opened:
        removed = opened.remove(label if label is not None else face_id)
        if compact:
            opened.compact()
    target = escape(f"label {label!r}" if label is not None else f"id {face_id}")
    if json:
        print_json({"removed": removed, "compacted": compact})
    elif removed:
        console.print(
            f"removed {removed} faces ({target}){'; erased from disk' if compact else ''}"
        )
    else:
        console.print(f"nothing to remove: no face with {target}")


@gallery_app.command("compact")
def compact(gallery: GalleryArgument) -> None:
    """Erase removed faces from disk: rebuild the index and vacuum the database."""
    with user_errors(), _open(gallery) as opened:
        opened.compact()
    console.print(f"{escape(gallery)}: compacted")


@gallery_app.command("list")
def list_labels(gallery: GalleryArgument, json: Json = False) -> None:
    """The people in GALLERY and how many faces each has."""
    with user_errors(), _open(gallery, read_only=True) as opened:
        labels = opened.labels()
    if json:
        print_json(labels)
        return
    print_table(labels.items(), "label", "faces")


@gallery_app.command("info")
def info(gallery: GalleryArgument, json: Json = False) -> None:
    """Faces, people, encoder, index kind and size on disk of GALLERY."""
    with user_errors(), _open(gallery, read_only=True) as opened:
        summary = opened.info()
    if json:
        print_json(summary)
        return
    print_table(
        ((key.replace("_", " "), value) for key, value in summary.items()), title=str(gallery)
    )


def register(app: typer.Typer) -> None:
    """Add the gallery command group to the CLI."""
    app.add_typer(gallery_app, name="gallery")
