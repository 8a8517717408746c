"""What facerep's self-supervised encoders are worth, against pixels, eigenfaces and dlib.

The whole recipe, reproducible from a clean clone with the shared data beside it:
1. prepare faces_unlabeled (flat), ORL and cs131_faces at 64x64;
2. pretrain each requested run (skipped when its run directory already holds a finished run)
   on the unlabeled corpus plus the *training* identities of ORL and cs131 (seed 0, half);
3. evaluate every run and the baselines on the held-out identities of ORL and cs131 (the same
   split), and the attribute probes (gender, age group) on the UTKFace part of the corpus;
4. write bench/results/representation_quality.{json,md} with the date and the machine.

    python bench/representation_quality.py --run vit-tiny-random:random:20
    python bench/representation_quality.py --run a:random:4 --run b:face-regions:4 ...

A run spec is NAME:MASKING:EPOCHS (model vit-tiny unless --model); runs live in --runs-dir.
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
from facerep.train.config import TrainConfig
from facerep.train.loop import pretrain

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
BASELINES = ("pixels", "pca", "dlib")
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


def pretrain_run(spec: str, model: str, datasets: dict[str, Path], runs: Path) -> tuple[Path, dict]:
    """Train one run unless its directory already holds a finished one; returns its summary."""
    name, masking, epochs = spec.split(":")
    run = runs / name
    if not (run / "summary.json").is_file():
        config = TrainConfig(
            datasets=tuple(str(p) for p in datasets.values()),
            out=str(run),
            model=model,
            masking=masking,
            epochs=int(epochs),
        )
        pretrain(config, overwrite=True)
    return run, json.loads((run / "summary.json").read_text())


def identity_tables(datasets: dict[str, Path], runs: list[Path]) -> dict[str, dict]:
    """Every encoder, raw and whitened, on the held-out identities of ORL and cs131."""
    tables = {}
    for name in ("orl", "cs131"):
        data = load_eval_data(datasets[name], train_fraction=0.5, split_seed=0)
        encoders = [load_encoder(name) for name in [*BASELINES, *map(str, runs)]]
        results = evaluate_all(data, encoder_variants(encoders, whiten="both"), seed=0)
        tables[name] = {r.name: r.metrics for r in results}
    return tables


def attribute_probes(datasets: dict[str, Path], runs: list[Path]) -> dict[str, dict]:
    """Gender and age-group probes on the UTKFace faces of the unlabeled corpus."""
    data = load_attribute_data(datasets["unlabeled"], "utkface", ["gender", "age_group"])
    encoders = [load_encoder(name) for name in [*BASELINES, *map(str, runs)]]
    return evaluate_attributes(data, encoder_variants(encoders, whiten="off"))


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
        losses = summary["epoch_losses"]
        lines.append(
            f"- `{run}`: {summary['steps']} steps, {len(losses)} epochs, loss "
            f"{losses[0]:.3f} -> {losses[-1]:.3f} ({summary['loss_fall']:.0%} lower), "
            f"{summary['images_per_sec']} images/s, {summary['seconds_this_session']} s"
            f" on {summary['device']}"
        )
    for dataset, table in report["identity"].items():
        rows = [
            [encoder, *(f"{m[k]:.4f}" if isinstance(m.get(k), float) else "-" for k in HEADLINE)]
            for encoder, m in table.items()
        ]
        lines += ["", f"## {dataset}", "", *markdown_table(["encoder", *HEADLINE], rows)]
    lines += [
        "",
        "## Attribute probes (UTKFace part of faces_unlabeled, a third held out)",
        "",
        *markdown_table(*attribute_table(report["attributes"], ATTRIBUTE_COLUMNS)),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", default=[], help="NAME:MASKING:EPOCHS")
    parser.add_argument("--model", default="vit-tiny")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=ROOT / "runs")
    parser.add_argument("--name", default="representation_quality", help="results file stem")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: shared face data not found")
    start = time.perf_counter()
    datasets = prepare_all(args.data, args.work)
    trained = [pretrain_run(spec, args.model, datasets, args.work) for spec in args.run]
    runs = [run for run, _ in trained]
    report = {
        "machine": describe_machine(),
        "runs": {str(run): s for run, s in trained},
        "identity": identity_tables(datasets, runs),
        "attributes": attribute_probes(datasets, runs),
    }
    report["seconds"] = round(time.perf_counter() - start, 1)
    text = markdown(report)
    write_results(RESULTS, args.name, report, text)
    print(text)


if __name__ == "__main__":
    main()
