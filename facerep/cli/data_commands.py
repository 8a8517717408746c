"""`facerep prepare` and `facerep info`: build and inspect prepared face datasets."""

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
)
from facerep.data.info import describe_dataset
from facerep.data.prepare import FacesPerImage, PrepareOptions, PrepareSummary, prepare_dataset
from facerep.data.sources import Layout
from facerep.data.store import ERROR_STATUSES, DatasetError
from facerep.faces.dlib_models import DetectorName
from facerep.images import DEFAULT_MAX_PIXELS


def prepare(
    src: Annotated[str, typer.Argument(help="Folder of photos, one image, or builtin:lfw-sample.")],
    out: Annotated[Path, typer.Argument(help="Dataset folder to create or complete.")],
    size: Annotated[
        int,
        typer.Option(help="Aligned crop side in pixels (64 for small models).", min=16, max=1024),
    ] = 112,
    detector: Annotated[
        DetectorName, typer.Option(help="hog (fast) or cnn (dlib's MMOD).")
    ] = "hog",
    workers: Annotated[int, typer.Option(help="Detection processes.", min=1)] = 1,
    layout: Annotated[
        Layout,
        typer.Option(
            help="auto, flat (no identities), identity (SRC/<id>/<img>) or split "
            "(SRC/<split>/<id>/<img>)."
        ),
    ] = "auto",
    split: Annotated[
        str | None, typer.Option(help="Only this split folder, e.g. train (split layout).")
    ] = None,
    faces: Annotated[
        FacesPerImage,
        typer.Option(
            help="Faces kept per image: largest, all, or auto (largest when folders name the "
            "identity)."
        ),
    ] = "auto",
    upsample: Annotated[
        int,
        typer.Option(help="Extra 2x upsamplings for small faces in large photos.", min=0, max=3),
    ] = 0,
    min_face: Annotated[float, typer.Option(help="Drop faces narrower than this (pixels).")] = 0.0,
    cascade: Annotated[
        bool,
        typer.Option(
            help="Where the first look finds no face, search harder: an equalised copy, "
            "rotated copies, a 2x upsampling, dlib's CNN. --no-cascade: the first look only."
        ),
    ] = True,
    assume_cropped: Annotated[
        bool,
        typer.Option(
            help="For pre-cropped faces: when no detector fires, take the whole frame as the "
            "face box and fit the landmarks inside it."
        ),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            help="Also search again the files an earlier run gave no face (no_face, "
            "implausible_landmarks, error), with this run's options."
        ),
    ] = False,
    max_pixels: Annotated[
        int, typer.Option(help="Refuse larger images (decompression bombs).", min=1)
    ] = DEFAULT_MAX_PIXELS,
    commit_every: Annotated[int, typer.Option(help="Files per committed batch.", min=1)] = 64,
    quiet: Quiet = False,
    json: Json = False,
) -> None:
    """Detect, align and crop every face under SRC into the prepared dataset OUT.

    Re-running skips files already done (by content hash) and completes an interrupted run.
    Exit code 1 when some files could not be read; files with no face are listed in
    OUT/report.csv.
    """
    options = PrepareOptions(
        size=size,
        detector=detector,
        upsample=upsample,
        min_face=min_face,
        faces=faces,
        cascade=cascade,
        assume_cropped=assume_cropped,
        max_pixels=max_pixels,
    )
    try:
        with progress_bar("prepare", quiet or json) as on_progress:
            summary = prepare_dataset(
                src,
                out,
                options,
                workers=workers,
                layout=layout,
                split=split,
                commit_every=commit_every,
                on_progress=on_progress,
                retry_failed=retry_failed,
            )
    except (ValueError, DatasetError) as e:
        raise UsageError(str(e)) from None
    _show_summary(summary, quiet, json)
    exit_for(sum(summary.outcomes[status] for status in ERROR_STATUSES))


def _show_summary(summary: PrepareSummary, quiet: bool, json: bool) -> None:
    if json:
        print_json(
            {
                "found": summary.found,
                "already_done": summary.already_done,
                "outcomes": dict(summary.outcomes),
                "faces_added": summary.faces_added,
                "stages": dict(summary.stages),
                "faces": summary.total_faces,
                "errors": summary.errors,
                "report": summary.report,
            }
        )
        return
    for error in summary.errors:
        console_err.print(f"[yellow]skipped[/yellow] {escape(error)}", highlight=False)
    if quiet:
        return
    done = ", ".join(f"{n} {status}" for status, n in sorted(summary.outcomes.items()))
    console.print(
        f"{summary.found} images found, {summary.already_done} already done; this run: "
        f"{done or 'nothing new'}; +{summary.faces_added} faces, {summary.total_faces} in all."
    )
    harder = {stage: n for stage, n in summary.stages.items() if stage != "photo"}
    if harder:
        found = ", ".join(f"{n} by {stage}" for stage, n in sorted(harder.items()))
        console.print(f"Found beyond the first look: {found}.")
    if summary.failed:
        console.print(f"{summary.failed} images gave no face: see {escape(summary.report)}")


def info(
    dataset: Annotated[Path, typer.Argument(help="A prepared dataset folder.")],
    json: Json = False,
) -> None:
    """Counts of a prepared dataset: faces, images, identities, failures, crop size, stages.

    Failure reasons: no_face (no detector stage found one), implausible_landmarks (faces were
    found but no set of landmarks passed the geometry check), too_small (under 12 px), corrupt,
    refused (over --max-pixels), unreadable, error (a bug; reported, the run went on).
    Stages: photo (the first look), equalized, rotated, upsampled, cnn, whole_frame.
    """
    try:
        summary = describe_dataset(dataset)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    if json:
        print_json(summary)
        return
    per_id = summary["images_per_identity"]
    rows = [
        ("faces", summary["faces"]),
        ("images with a face", summary["images"]),
        ("identities", summary["identities"]),
        (
            "images per identity",
            f"{per_id['min']} / {per_id['median']:g} / {per_id['max']} (min / median / max)"
            if per_id
            else "-",
        ),
        (
            "failures",
            ", ".join(f"{n} {k}" for k, n in summary["failures_by_reason"].items()) or "0",
        ),
        ("duplicates", summary["duplicates"]),
        ("ignored (not image names)", summary["ignored"]),
        ("splits", ", ".join(f"{k}: {n}" for k, n in summary["splits"].items()) or "-"),
        ("crop size", f"{summary['size']}x{summary['size']}"),
        ("detector", summary["detector"]),
        ("found by", ", ".join(f"{k}: {n}" for k, n in sorted(summary["stages"].items())) or "-"),
    ]
    print_table(rows, title=str(dataset))


def register(app: typer.Typer) -> None:
    """Add the data commands to the CLI."""
    app.command()(prepare)
    app.command()(info)
