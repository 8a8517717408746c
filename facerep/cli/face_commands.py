"""`facerep verify`, `search`, `cluster` and `calibrate`: the everyday face tools."""

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
    format_distance,
    print_json,
    print_table,
    progress_bar,
    user_errors,
)
from facerep.types import count_unreadable

EncoderOption = Annotated[
    str,
    typer.Option("--encoder", "-e", help="dlib (default), a run folder or a .onnx export."),
]
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        help="Cosine distance at or below which two faces are one person (default: the "
        "encoder's calibrated threshold).",
        min=0.0,
        max=2.0,
    ),
]


def verify(
    a: Annotated[str, typer.Argument(help="First photo.")],
    b: Annotated[str, typer.Argument(help="Second photo.")],
    encoder: EncoderOption = "dlib",
    threshold: ThresholdOption = None,
    ignore_occluded: Annotated[
        bool,
        typer.Option(
            help="Leave the patches the run's occlusion map marks out of the embeddings (a ViT "
            "run with an occlusion prior)."
        ),
    ] = False,
    json: Json = False,
) -> None:
    """Whether the largest faces of photos A and B are the same person."""
    from facerep.api import verify as verify_faces

    with user_errors():
        verdict = verify_faces(a, b, encoder, threshold=threshold, ignore_occluded=ignore_occluded)
    if json:
        print_json(
            {"distance": verdict.distance, "threshold": verdict.threshold, "same": verdict.same}
        )
        return
    answer = "same person" if verdict.same else "different people"
    sign = "<=" if verdict.same else ">"
    console.print(
        f"{answer} (distance {format_distance(verdict.distance)} {sign} threshold "
        f"{format_distance(verdict.threshold)})"
    )


def search(
    gallery: Annotated[Path, typer.Argument(help="A gallery folder (facerep gallery add).")],
    image: Annotated[str, typer.Argument(help="Photo of the person to look for.")],
    k: Annotated[int, typer.Option("-k", help="Matches to return.", min=1, max=1000)] = 5,
    json: Json = False,
) -> None:
    """The K gallery faces nearest to the largest face in IMAGE, nearest first."""
    from facerep.tasks.gallery import Gallery

    # Read-only: a search writes nothing, so it works on a gallery the user may only read.
    with user_errors(), Gallery(gallery, create=False, read_only=True) as opened:
        matches = opened.search(image, k)
    if json:
        print_json([_match_dict(match) for match in matches])
        return
    if not matches:
        console.print(f"{escape(gallery)}: the gallery is empty")
        return
    rows = (
        (rank, m.label, format_distance(m.distance), _yes_no(m.same), m.id, m.source or "")
        for rank, m in enumerate(matches, 1)
    )
    print_table(rows, "rank", "label", "distance", "same person", "id", "source")


def _yes_no(same: bool | None) -> str:
    return "-" if same is None else ("yes" if same else "no")


def _match_dict(match) -> dict:
    return {
        "id": match.id,
        "label": match.label,
        "distance": match.distance,
        "same": match.same,
        "source": match.source,
        "box": match.box.as_list() if match.box else None,
    }


def cluster(
    folder: Annotated[Path, typer.Argument(help="Folder of photos (searched recursively).")],
    out: Annotated[Path, typer.Option(help="Where to write person folders and clusters.csv.")],
    encoder: EncoderOption = "dlib",
    threshold: ThresholdOption = None,
    copy: Annotated[bool, typer.Option(help="Copy photos instead of linking them.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
    quiet: Quiet = False,
    json: Json = False,
) -> None:
    """Group the faces in FOLDER by person: OUT/person-001/... plus OUT/unmatched/.

    A face that matches nobody goes to unmatched/; photos with no face are listed in
    OUT/failures.csv; clusters.csv has one row per face.
    """
    from facerep.api import cluster as cluster_faces
    from facerep.outputs import check_output
    from facerep.tasks.cluster import person_folder, write_clusters

    with user_errors():
        # Before minutes of clustering, not after.
        check_output(out, [folder], kind="cluster", overwrite=overwrite)
    with user_errors(), progress_bar("cluster", quiet or json) as on_progress:
        clustering = cluster_faces(folder, encoder, threshold=threshold, on_progress=on_progress)
        write_clusters(clustering, out, "copy" if copy else "symlink", overwrite=overwrite)
    sizes = {person_folder(c): len(faces) for c, faces in clustering.clusters().items()}
    if json:
        print_json(
            {
                "out": str(out),
                "threshold": clustering.threshold,
                "faces": len(clustering.faces),
                "people": sizes,
                "unmatched": len(clustering.unmatched()),
                "failures": [{"source": s, "reason": r} for s, r in clustering.failures],
            }
        )
    else:
        _say_clustered(clustering, sizes, folder, out, quiet)
    exit_for(count_unreadable(clustering.failures))


def _say_clustered(clustering, sizes: dict[str, int], folder: Path, out: Path, quiet: bool):
    """Photos that could not be read (stderr), then what was found and where it went."""
    for source, reason in [f for f in clustering.failures if getattr(f, "unreadable", False)]:
        skipped = escape(f"{source}: {reason}")
        console_err.print(f"[yellow]skipped[/yellow] {skipped}", highlight=False)
    if quiet:
        return
    failed = len(clustering.failures)
    if not clustering.faces:
        found = (
            f"no faces found in {failed} photos (see {escape(out / 'failures.csv')})"
            if failed
            else "no photos found"
        )
        console.print(f"{escape(folder)}: {found}. Wrote an empty result to {escape(out)}.")
        return
    console.print(
        f"{len(clustering.faces)} faces: {len(sizes)} people, {len(clustering.unmatched())} "
        f"unmatched; {failed} photos without a face (see {escape(out / 'failures.csv')}). "
        f"Written to {escape(out)}."
    )


def calibrate(
    dataset: Annotated[
        Path,
        typer.Argument(help="Labelled faces: a prepared dataset or a folder per person."),
    ],
    encoder: EncoderOption = "dlib",
    far: Annotated[
        float, typer.Option(help="Target false-accept rate (share of impostor pairs accepted).")
    ] = 1e-3,
    all_identities: Annotated[
        bool,
        typer.Option(
            "--all-identities",
            help="Use every identity, not only the held-out half that pretraining never saw.",
        ),
    ] = False,
    split_seed: Annotated[
        int | None,
        typer.Option(help="Seed of the identity split (default: a run's own; 0 for dlib)."),
    ] = None,
    quiet: Quiet = False,
    json: Json = False,
) -> None:
    """Choose ENCODER's verification threshold at a target false-accept rate and store it.

    A run keeps it in RUN/calibration.json; a built-in encoder in $FACEREP_HOME/calibration/.
    verify, search and cluster use it from then on.
    """
    from facerep.encoders.calibration import calibration_path
    from facerep.encoders.registry import load_ready_encoder
    from facerep.tasks.calibrate import calibrate as calibrate_encoder
    from facerep.tasks.calibrate import calibration_faces

    with user_errors(), progress_bar("embed", quiet or json) as on_progress:
        chosen = load_ready_encoder(encoder)
        embeddings, identities, failures = calibration_faces(
            dataset, chosen, not all_identities, split_seed, on_progress
        )
        result = calibrate_encoder(chosen, embeddings, identities, far, str(dataset))
    if json:
        print_json({**vars(result), "stored": str(calibration_path(chosen))})
        exit_for(count_unreadable(failures))
        return
    for source, reason in failures:
        skipped = escape(f"{source}: {reason}")
        console_err.print(f"[yellow]skipped[/yellow] {skipped}", highlight=False)
    if not quiet:
        threshold = format_distance(result.threshold)
        console.print(
            f"{escape(chosen.name)}: threshold {threshold} (cosine distance) at FAR "
            f"{result.far:.2e} (target {far:g}), TAR {result.tar:.4f}; {result.genuine_pairs} "
            f"genuine and {result.impostor_pairs} impostor pairs from {result.faces} faces of "
            f"{result.identities} identities. Stored in {escape(calibration_path(chosen))}."
        )
    exit_for(count_unreadable(failures))


def list_encoders_command() -> None:
    """List the encoders --encoder takes: built-in names, and the kinds of path."""
    from facerep.encoders.registry import list_encoders

    for entry in list_encoders():
        where = "  (eval only: fitted on training identities)" if entry.needs_fit else ""
        console.print(f"{entry.name}{where}: {entry.summary}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the face tools to the CLI."""
    app.command("list-encoders")(list_encoders_command)
    app.command()(verify)
    app.command()(search)
    app.command()(cluster)
    app.command()(calibrate)
