"""`facerep eval`: verification, identification, clustering and few-shot probes, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from facerep.cli.output import (
    Json,
    Quiet,
    UsageError,
    console,
    console_err,
    escape,
    print_json,
    print_table,
    user_errors,
)

if TYPE_CHECKING:
    from facerep.eval.harness import WhitenMode


def eval_command(
    dataset: Annotated[Path, typer.Argument(help="A prepared dataset with identity folders.")],
    encoder: Annotated[
        list[str],
        typer.Option(
            "--encoder", "-e", help="pixels, pca, dlib, a run or a .onnx; repeat for several."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("eval-report"),
    split_seed: Annotated[int, typer.Option(help="Seed of the identity split.")] = 0,
    train_fraction: Annotated[
        float,
        typer.Option(
            help="Share of identities used for fitting (eigenfaces, whitening).", min=0.05, max=0.95
        ),
    ] = 0.5,
    all_heldout: Annotated[
        bool, typer.Option(help="Evaluate every identity (none was seen in training).")
    ] = False,
    pairs: Annotated[Path | None, typer.Option(help="LFW-style pairs.txt to use.")] = None,
    missing_pairs: Annotated[
        Literal["error", "drop"],
        typer.Option(
            help="A --pairs pair whose photo gave no face: counted as an error (as a paper "
            "scores the whole list) or dropped from the score. The count is reported either way."
        ),
    ] = "error",
    flip: Annotated[bool, typer.Option(help="Average each embedding with its mirror.")] = False,
    whiten: Annotated[
        Literal["both", "on", "off"] | None,  # harness.WhitenMode, or None for the default
        typer.Option(
            help="PCA whitening fitted on training identities: report each encoder raw and "
            "whitened (both), whitened or raw [default: both; off with --all-heldout]."
        ),
    ] = None,
    pool: Annotated[
        list[int] | None,
        typer.Option(
            help="Token encoders (facerep runs): also report a GxG grid of pooled tokens "
            "(repeatable).",
            min=1,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of pairs and trials.")] = 0,
    attributes: Annotated[
        str | None,
        typer.Option(
            help="Attribute probes instead: 'utkface' (labels from UTKFace file names), a CelebA "
            "list_attr_celeba.txt or a CSV whose first column is the image name."
        ),
    ] = None,
    attribute: Annotated[
        list[str] | None, typer.Option(help="Attributes to probe (repeatable; all by default).")
    ] = None,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Evaluate encoders on the held-out identities of DATASET and write a report to --out.

    Every encoder sees the same seeded identity split, pairs and trials. Writes results.json,
    report.md, report.html, ROC curves, t-SNE maps and nearest-neighbour strips.
    """
    from facerep.eval import harness, report
    from facerep.outputs import check_output

    with user_errors():  # before the evaluation, not after it
        check_output(out, [dataset, *encoder, *filter(None, [pairs, attributes])], kind="eval")
    if attributes is not None:
        with user_errors():
            probe_data = harness.load_attribute_data(dataset, attributes, attribute, seed=seed)
            variants = _variants(encoder, whiten or "both", pool or [], flip)
            probes = harness.evaluate_attributes(probe_data, variants)
            written = report.write_attribute_report(probes, attributes, out)
        title = f"{dataset}: attribute probes"
        _show(probes, report.attribute_table(probes), title, written, json, quiet)
        return
    if all_heldout and whiten not in (None, "off"):
        raise UsageError(
            f"--whiten {whiten}: whitening is fitted on training identities and --all-heldout "
            "leaves none; use --whiten off or drop --all-heldout"
        )
    whiten = whiten or ("off" if all_heldout else "both")
    with user_errors():
        data = harness.load_eval_data(dataset, train_fraction, split_seed, all_heldout)
        variants = _variants(encoder, whiten, pool or [], flip)
        say = None if quiet or json else _say_evaluating
        results = harness.evaluate_all(
            data,
            variants,
            lfw_pairs=pairs,
            seed=seed,
            on_encoder=say,
            strict_pairs=missing_pairs == "error",
        )
        written = report.write_report(results, data, out) / "report.html"
    table = report.results_table(results, report.SUMMARY_KEYS)
    title = f"{dataset} (held-out identities)"
    if (note := report.pairs_note(results)) and not (quiet or json):
        console.print(escape(note))
    _show({r.name: r.metrics for r in results}, table, title, written, json, quiet)


def _say_evaluating(name: str) -> None:
    console_err.print(f"evaluating {escape(name)}", highlight=False)


def _show(
    payload: object,
    table: tuple[list[str], list[list[str]]],
    title: str,
    written: Path,
    json: bool,
    quiet: bool,
) -> None:
    """The results as JSON, or as a table and where the report is, or (quiet) not at all."""
    if json:
        print_json(payload)
    elif not quiet:
        header, rows = table
        print_table(rows, *header, title=title)
        console.print(f"report: {escape(written)}")


def _variants(names: list[str], whiten: WhitenMode, pools: list[int], flip: bool):
    """(encoder, options) pairs of the named encoders (see `encoder_variants`)."""
    from facerep.encoders.registry import load_encoder
    from facerep.eval.harness import encoder_variants

    return encoder_variants([load_encoder(name) for name in names], whiten, pools, flip)


def register(app: typer.Typer) -> None:
    """Add the evaluation command to the CLI."""
    app.command("eval")(eval_command)
