"""`facerep occlusion-prior`, `occlusion` and `anomaly`: what a run's autoencoder cannot explain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facerep.cli.output import (
    Json,
    Quiet,
    console,
    console_err,
    escape,
    exit_for,
    print_json,
    print_table,
    progress_bar,
    user_errors,
)
from facerep.types import count_unreadable

RunOption = Annotated[
    Path,
    typer.Option(
        "--encoder", "-e", help="A run folder with a decoder (a vit-* MAE or conv-ae run)."
    ),
]
PriorOption = Annotated[
    bool,
    typer.Option(
        "--prior/--no-prior",
        help="Normalise by the run's occlusion prior (required), or each face by itself.",
    ),
]


def occlusion_prior(
    run: Annotated[Path, typer.Argument(help="A run folder written by `facerep pretrain`.")],
    datasets: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Prepared datasets of clean faces [default: the run's own].", show_default=False
        ),
    ] = None,
    faces: Annotated[
        int, typer.Option(help="Most faces fitted on (a seeded sample).", min=10)
    ] = 2000,
    json: Json = False,
) -> None:
    """Fit the run's occlusion prior: its typical residuals per pixel on clean faces, and for a
    ViT its typical encoder tokens per patch (what the anomaly score measures against).

    Identity datasets give only the run's training identities. Writes
    RUN/occlusion_prior.safetensors, which `occlusion`, `anomaly` and the service then use.
    """
    from facerep.data.store import DatasetError
    from facerep.tasks.occlusion import fit_run_prior
    from facerep.tasks.occlusion_prior import PRIOR_FILE

    with user_errors():
        try:
            prior = fit_run_prior(
                run, [str(d) for d in datasets] if datasets else None, max_faces=faces
            )
        except DatasetError as e:
            raise ValueError(str(e)) from None
    if json:
        print_json({"run": str(run), "faces": prior.faces, "threshold": prior.threshold_})
        return
    console.print(
        f"{escape(run / PRIOR_FILE)}: fitted on {prior.faces} clean faces "
        f"(outlier threshold {prior.threshold_:.2f})"
    )


def occlusion(
    images: Annotated[list[str], typer.Argument(help="Photos, or folders of photos.")],
    encoder: RunOption,
    out: Annotated[
        Path, typer.Option(help="Folder for the mask and overlay PNGs and occlusion.json.")
    ],
    prior: PriorOption = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
    quiet: Quiet = False,
    json: Json = False,
) -> None:
    """Where each face departs from what the run's autoencoder predicts: its occluders.

    Per face OUT/<n>-<photo>-face<k>-mask.png (the outlier mask, in the photo's pixels) and
    -overlay.png (the photo with the outliers tinted); OUT/occlusion.json holds every face's
    score, outlier share per region (eyes, nose, mouth) and the photos without a face.
    """
    from facerep.outputs import check_output
    from facerep.tasks.occlusion import OcclusionMapper
    from facerep.tasks.occlusion_photos import SUMMARY_FILE, explain_photos, write_occlusion

    with user_errors():
        check_output(out, images, kind="occlusion", overwrite=overwrite)  # before the work
        mapper = OcclusionMapper(encoder, prior=prior)
    with user_errors(), progress_bar("occlusion", quiet or json) as on_progress:
        explained = explain_photos(_photo_inputs(images), mapper, on_progress)
        write_occlusion(explained, out, mapper, images, overwrite=overwrite)
    faces = sum(len(photo.faces) for photo in explained.photos)
    if json:
        print_json({"out": str(out), "faces": faces, "failures": len(explained.failures)})
    elif not quiet:
        _say_failures(explained.failures)
        console.print(f"{faces} faces explained in {escape(out / SUMMARY_FILE)}")
    exit_for(count_unreadable(explained.failures))


def anomaly(
    folder: Annotated[Path, typer.Argument(help="Folder of photos (searched recursively).")],
    encoder: RunOption,
    top: Annotated[
        int | None, typer.Option(help="Show only the K most anomalous faces.", min=1)
    ] = None,
    prior: PriorOption = True,
    quiet: Quiet = False,
    json: Json = False,
) -> None:
    """Score every face in FOLDER by how little the run's autoencoder explains it, most first.

    The score is how far the encoder's patch tokens lie from clean faces' at the same place
    (the mean of the highest tenth of their z-scores; the mean normalised residual for a run
    whose prior has no tokens); per region (eyes, nose, mouth) beside it.
    Photos without a face are listed with the reason.
    """
    from facerep.tasks.occlusion import OcclusionMapper
    from facerep.tasks.occlusion_photos import explain_photos, face_summary

    with user_errors():
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder")
        mapper = OcclusionMapper(encoder, prior=prior)
    with user_errors(), progress_bar("anomaly", quiet or json) as on_progress:
        explained = explain_photos(folder, mapper, on_progress, keep_pixels=False)
    ranked = explained.ranked()[:top]
    rows = [
        {"source": photo.source, **face_summary(photo.faces[index], index)}
        for photo, index in ranked
    ]
    if json:
        failures = [{"source": s, "reason": r} for s, r in explained.failures]
        print_json({"faces": rows, "failures": failures})
    else:
        _say_failures(explained.failures)
        table = (
            (rank, row["source"], row["face"], f"{row['score']:.3f}", *_region_cells(row))
            for rank, row in enumerate(rows, 1)
        )
        print_table(table, "rank", "photo", "face", "score", "eyes", "nose", "mouth")
    exit_for(count_unreadable(explained.failures))


def _region_cells(row: dict) -> list[str]:
    return [f"{row['region_scores'][name]:.2f}" for name in ("eyes", "nose", "mouth")]


def _photo_inputs(images: list[str]) -> str | list[str]:
    """One folder as itself (walked recursively), else the photos as given."""
    if len(images) == 1 and Path(images[0]).is_dir():
        return images[0]
    folders = [image for image in images if Path(image).is_dir()]
    if folders:
        raise ValueError(f"{folders[0]}: a folder among photos: give one folder, or photos")
    return images


def _say_failures(failures) -> None:
    for source, reason in failures:
        console_err.print(f"skipped {escape(source)}: {escape(reason)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the explain commands to the CLI."""
    app.command("occlusion-prior")(occlusion_prior)
    app.command()(occlusion)
    app.command()(anomaly)
