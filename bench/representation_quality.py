"""What facerep's self-supervised encoders are worth, against pixels, eigenfaces and dlib.

The whole recipe, reproducible from a clean clone with the shared data beside it:
1. prepare faces_unlabeled (flat), ORL and cs131_faces at 64x64;
2. pretrain each requested run (skipped when its run directory already holds a finished run)
   on the unlabeled corpus plus the *training* identities of ORL and cs131 (seed 0, half),
   from a recipe in bench/recipes/ (a `facerep pretrain --config` file);
3. evaluate every run and the baselines on the held-out identities of ORL and cs131 (the same
   split), and the attribute probes (gender, age group) on the UTKFace part of the corpus;
4. write bench/results/representation_quality.{json,md} with the date and the machine.

    python bench/representation_quality.py --run instance-60m:instance:32
    python bench/representation_quality.py --run mae-15m:mae:6 --run inst-15m:instance:8 ...
    python bench/representation_quality.py --run instance-30m:instance:16 --no-attributes \
        --name representation_curve --curve-with bench/results/representation_quality.json

`--curve-with` adds the runs recorded in an earlier results file to the budget curve (a recipe's
runs are seeded, so a point measured before stands), each marked with the file it came from.

A run spec is NAME:RECIPE:EPOCHS; runs live in --work. Each run is reported as shipped (its
encoder whitened on its own unlabelled training faces where it has a whitening: what `verify`,
galleries and the service use), raw (`:raw`, where that differs), and raw with whitening
fitted on the evaluation's training identities (`:raw+whiten`, the protocol of earlier
tables); an `--all-heldout` table beside it evaluates on every identity with nothing fitted by
the evaluation (the runs saw the faces of the training half, unlabelled, in pretraining).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import time
from pathlib import Path

from machine import describe_machine, write_results

from facerep.data.prepare import PrepareOptions, prepare_dataset
from facerep.encoders.registry import load_encoder
from facerep.eval.harness import (
    encoder_variants,
    evaluate_all,
    evaluate_attributes,
    load_attribute_data,
    load_eval_data,
)
from facerep.eval.report import attribute_table, markdown_table
from facerep.train.config import load_config
from facerep.train.loop import pretrain
from facerep.train.whiten import whiten_run
from facerep.whitening import load_whitening

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
RECIPES = ROOT / "bench" / "recipes"
BASELINES = ("pixels", "pca", "dlib")
UNFITTED_BASELINES = ("pixels", "dlib")  # what the all-held-out protocol can evaluate
HEADLINE = (
    "verification_accuracy",
    "verification_std",
    "roc_auc",
    "rank1",
    "pairwise_f1",
    "linear_5shot",
)

# The report's probe columns at this page's precision: fractions to 4 places, no face count.
ATTRIBUTE_COLUMNS = [
    ("accuracy", "accuracy", "{:.4f}"),
    ("majority_accuracy", "majority", "{:.4f}"),
    ("roc_auc", "AUC", "{:.4f}"),
]


def prepare_all(data_dir: Path, work: Path) -> dict[str, Path]:
    """The three datasets at 64x64 (incremental: a finished folder is only checked)."""
    sources = {
        "unlabeled": ("faces_unlabeled", "flat"),
        "orl": ("orl", "auto"),
        "cs131": ("cs131_faces", "auto"),
    }
    out = {}
    for name, (folder, layout) in sources.items():
        out[name] = work / "data" / f"{name}_64"
        prepare_dataset(
            data_dir / folder, out[name], PrepareOptions(size=64), workers=2, layout=layout
        )
    return out


RECIPE_KEYS = ("model", "epochs", "batch_size", "threads", "teacher_centred")  # shown per run


def pretrain_run(spec: str, datasets: dict[str, Path], runs: Path) -> tuple[Path, dict]:
    """Train one run from its recipe unless its directory already holds a finished one.

    Returns the run and its summary, with the recipe. A run trained before runs stored their
    whitening gets it fitted here, on its own training faces (as pretraining now does).
    """
    name, recipe, epochs = spec.split(":")
    run = runs / name
    if not (run / "summary.json").is_file():
        config = load_config(
            RECIPES / f"{recipe}.toml",
            datasets=tuple(str(p) for p in datasets.values()),
            out=str(run),
            epochs=int(epochs),
        )
        pretrain(config, overwrite=True)
    summary = json.loads((run / "summary.json").read_text())
    # Only a run older than stored whitening has no entry; others decided (and a distilled
    # student in its teacher's space fits none).
    if load_whitening(run) is None and "whitening" not in summary:
        start = time.perf_counter()
        whitening = whiten_run(run)
        summary["whitening"] = {
            "components": whitening.dim,
            "faces": whitening.faces,
            "seconds": round(time.perf_counter() - start, 1),
            "note": "fitted by the bench after training",
        }
    train = json.loads((run / "config.json").read_text())["train"]
    summary["recipe"] = {
        "file": f"bench/recipes/{recipe}.toml",
        **{key: train.get(key) for key in RECIPE_KEYS},
        "objective": train.get("objective", "reconstruction"),  # runs before objectives
    }
    return run, summary


def run_encoders(runs: list[Path]) -> list:
    """Each run as shipped (whitened on its own faces where it has a whitening) and raw."""
    encoders = []
    for run in runs:
        shipped = load_encoder(run)
        encoders += [shipped, load_encoder(run, whiten=False)] if shipped.whitened else [shipped]
    return encoders


def identity_tables(
    datasets: dict[str, Path], runs: list[Path], all_heldout: bool = False
) -> dict[str, dict]:
    """Every encoder on the held-out identities of ORL and cs131: shipped, raw and whitened.

    With `all_heldout`, every identity is evaluated and nothing is fitted on evaluation faces
    (no eigenfaces, no whitening but the runs' own).
    """
    tables = {}
    for name in ("orl", "cs131"):
        data = load_eval_data(datasets[name], 0.5, 0, all_heldout=all_heldout)
        baselines = UNFITTED_BASELINES if all_heldout else BASELINES
        encoders = [*map(load_encoder, baselines), *run_encoders(runs)]
        variants = encoder_variants(encoders, whiten="off" if all_heldout else "both")
        results = evaluate_all(data, variants, seed=0)
        tables[name] = {r.name: r.metrics for r in results}
    return tables


def attribute_probes(datasets: dict[str, Path], runs: list[Path]) -> dict[str, dict]:
    """Gender and age-group probes on the UTKFace faces of the unlabeled corpus."""
    data = load_attribute_data(datasets["unlabeled"], "utkface", ["gender", "age_group"])
    encoders = [*map(load_encoder, BASELINES), *(load_encoder(run) for run in runs)]
    return evaluate_attributes(data, encoder_variants(encoders, whiten="off"))


def curve_points(report: dict, source: str) -> list[dict]:
    """One budget-curve point per run of `report`: its recipe, minutes, epochs and accuracy."""
    return [
        {
            "recipe": summary["recipe"]["file"],
            "run": Path(run).name,
            "minutes": round(summary["seconds_this_session"] / 60, 1),
            "epochs": len(summary["epoch_losses"]),
            **{d: report["identity"][d][Path(run).name]["verification_accuracy"]
               for d in ("orl", "cs131")},
            "source": source,
        }
        for run, summary in report["runs"].items()
    ]  # fmt: skip


def earlier_points(files: list[Path], names: set[str]) -> list[dict]:
    """Curve points of runs recorded in earlier results files, except runs measured now."""
    points = []
    for file in files:
        recorded = json.loads(file.read_text())
        source = f"{file.name}, {recorded['machine']['date'][:10]}"
        points += [p for p in curve_points(recorded, source) if p["run"] not in names]
    return points


def budget_curve(points: list[dict]) -> list[str]:
    """Shipped verification accuracy against training minutes, per recipe run more than once."""
    by_recipe: dict[str, list[dict]] = {}
    for point in points:
        by_recipe.setdefault(point["recipe"], []).append(point)
    lines = []
    for recipe, runs in by_recipe.items():
        if len(runs) < 2:
            continue
        rows = [
            [p["run"], f"{p['minutes']:.1f}", str(p["epochs"]), f"{p['orl']:.4f}",
             f"{p['cs131']:.4f}", p["source"]]
            for p in sorted(runs, key=lambda p: p["minutes"])
        ]  # fmt: skip
        lines += ["", f"## Budget curve: `{recipe}` (shipped encoder, held-out identities)", "",
                  *markdown_table(["run", "minutes", "epochs", "orl", "cs131", "measured"], rows)]
    return lines


def markdown(report: dict) -> str:
    """The human-readable tables."""
    m = report["machine"]
    lines = [
        "# Representation quality",
        "",
        f"{m['date']} · {m['nproc']} cores ({m['cpu']}) · {m['device']} · torch {m['torch']}",
        "",
        "Held-out identities (seeded identity-disjoint split, seed 0, half held out); "
        "runs pretrained on faces_unlabeled + the training identities of ORL and cs131.",
        "",
    ]
    for run, summary in report["runs"].items():
        losses, recipe = summary["epoch_losses"], summary["recipe"]
        whitening = summary.get("whitening") or {}
        shipped = (
            f"no whitening ({whitening['skipped']})" if "skipped" in whitening else
            f"whitening {whitening.get('components')} components on {whitening.get('faces')} "
            "of its training faces"
        )  # fmt: skip
        lines.append(
            f"- `{Path(run).name}`: {recipe['objective']} on {recipe['model']} "
            f"(`{recipe['file']}`), {len(losses)} epochs, {summary['steps']} steps of "
            f"{recipe['batch_size']}, {summary['seconds_this_session'] / 60:.1f} min at "
            f"{summary['images_per_sec']} images/s on {summary['device']}; loss "
            f"{losses[0]:.3f} -> {losses[-1]:.3f}; {shipped}"
        )
    lines += [
        "",
        "`RUN` is the run's encoder as shipped (whitened on its own unlabelled training faces);"
        " `RUN:raw` its pooled features; `+whiten` adds whitening fitted on the evaluation's "
        "training identities (earlier tables' protocol).",
    ]
    sections = [("identity", "held-out identities"), ("all_heldout", "all identities, "
                "nothing fitted by the evaluation (--all-heldout; the runs saw the training "
                "half's faces, unlabelled)")]
    for key, title in sections:
        for dataset, table in report.get(key, {}).items():
            rows = [
                [encoder, *(f"{m[k]:.4f}" if isinstance(m.get(k), float) else "-"
                            for k in HEADLINE)]
                for encoder, m in table.items()
            ]
            lines += ["", f"## {dataset}: {title}", "",
                      *markdown_table(["encoder", *HEADLINE], rows)]
    lines += budget_curve(report["curve"])
    if report["attributes"]:
        lines += [
            "",
            "## Attribute probes (UTKFace part of faces_unlabeled, a third held out)",
            "",
            *markdown_table(*attribute_table(report["attributes"], ATTRIBUTE_COLUMNS)),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", default=[], help="NAME:RECIPE:EPOCHS")
    parser.add_argument("--no-attributes", action="store_true", help="skip the attribute probes")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=ROOT / "runs")
    parser.add_argument("--name", default="representation_quality", help="results file stem")
    parser.add_argument(
        "--curve-with", type=Path, action="append", default=[],
        help="an earlier results JSON whose runs join the budget curve (seeded runs of a recipe)",
    )
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: shared face data not found")
    start = time.perf_counter()
    datasets = prepare_all(args.data, args.work)
    trained = [pretrain_run(spec, datasets, args.work) for spec in args.run]
    runs = [run for run, _ in trained]
    report = {
        "machine": describe_machine(),
        "runs": {str(run): s for run, s in trained},
        "identity": identity_tables(datasets, runs),
        "all_heldout": identity_tables(datasets, runs, all_heldout=True),
        "attributes": {} if args.no_attributes else attribute_probes(datasets, runs),
    }
    measured_now = curve_points(report, "this run")
    names = {p["run"] for p in measured_now}
    report["curve"] = measured_now + earlier_points(args.curve_with, names)
    report["seconds"] = round(time.perf_counter() - start, 1)
    text = markdown(report)
    write_results(RESULTS, args.name, report, text)
    print(text)


if __name__ == "__main__":
    main()
