"""`facerep eval`: verification, identification, clustering and few-shot probes, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from facerep.cli.output import UsageError, console, console_err, print_json
from facerep.data.store import DatasetError

if TYPE_CHECKING:
    from facerep.eval.harness import WhitenMode


def eval_command(
    dataset: Annotated[Path, typer.Argument(help="A prepared dataset with identity folders.")],
    encoder: Annotated[
        list[str],
        typer.Option(
            "--encoder", "-e", help="pixels, pca, dlib or a run directory; repeat for several."
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
    flip: Annotated[bool, typer.Option(help="Average each embedding with its mirror.")] = False,
    whiten: Annotated[
        Literal["both", "on", "off"] | None,
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
    json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Evaluate encoders on the held-out identities of DATASET and write a report to --out.

    Every encoder sees the same seeded identity split, pairs and trials. Writes results.json,
    report.md, report.html, ROC curves, t-SNE maps and nearest-neighbour strips.
    """
    from facerep.eval.harness import evaluate_all, load_eval_data
    from facerep.eval.report import SUMMARY_KEYS, results_table, write_report

    if attributes is not None:
        _attribute_probes(
            dataset,
            encoder,
            attributes,
            attribute,
            whiten or "both",
            pool or [],
            flip,
            seed,
            out,
            json,
        )
        return
    if all_heldout and whiten not in (None, "off"):
        raise UsageError(
            f"--whiten {whiten}: whitening is fitted on training identities and --all-heldout "
            "leaves none; use --whiten off or drop --all-heldout"
        )
    whiten = whiten or ("off" if all_heldout else "both")
    try:
        data = load_eval_data(dataset, train_fraction, split_seed, all_heldout)
        variants = _variants(encoder, whiten, pool or [], flip)
        say = (
            (lambda name: None)
            if quiet or json
            else (lambda name: console_err.print(f"evaluating {name}", highlight=False))
        )
        results = evaluate_all(data, variants, lfw_pairs=pairs, seed=seed, on_encoder=say)
        report = write_report(results, data, out)
    except (ValueError, DatasetError) as e:
        raise UsageError(str(e)) from None
    if json:
        print_json({r.name: r.metrics for r in results})
        return
    if not quiet:
        header, rows = results_table(results, SUMMARY_KEYS)
        table = Table(*header, title=f"{dataset} (held-out identities)")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        console.print(f"report: {report / 'report.html'}")


def _attribute_probes(
    dataset: Path,
    names: list[str],
    attributes: str,
    columns: list[str] | None,
    whiten: WhitenMode,
    pools: list[int],
    flip: bool,
    seed: int,
    out: Path,
    json: bool,
) -> None:
    """Linear probes of face attributes for every encoder variant, on a seeded held-out third."""
    from facerep.eval.harness import evaluate_attributes, load_attribute_data
    from facerep.eval.report import write_attribute_report

    try:
        data = load_attribute_data(dataset, attributes, columns, seed=seed)
        results = evaluate_attributes(data, _variants(names, whiten, pools, flip))
        report = write_attribute_report(results, attributes, out)
    except (ValueError, DatasetError) as e:
        raise UsageError(str(e)) from None
    if json:
        print_json(results)
        return
    table = Table(
        "encoder", "attribute", "accuracy", "majority", "AUC", title=f"{dataset}: attribute probes"
    )
    for encoder, per_attribute in results.items():
        for name, m in per_attribute.items():
            table.add_row(
                encoder,
                name,
                f"{m['accuracy']:.2%}",
                f"{m['majority_accuracy']:.2%}",
                f"{m['roc_auc']:.3f}",
            )
    console.print(table)
    console.print(f"report: {report}")


def _variants(names: list[str], whiten: WhitenMode, pools: list[int], flip: bool):
    """(encoder, options) pairs of the named encoders (see `encoder_variants`)."""
    from facerep.api import load_encoder
    from facerep.eval.harness import encoder_variants

    return encoder_variants([load_encoder(name) for name in names], whiten, pools, flip)


def register(app: typer.Typer) -> None:
    """Add the evaluation command to the CLI."""
    app.command("eval")(eval_command)
