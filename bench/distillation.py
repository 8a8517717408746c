"""Distilling dlib into a fast student: accuracy, speed and end-to-end latency, side by side.

The whole recipe, reproducible from a clean clone with the shared data beside it:
1. prepare faces_unlabeled, ORL and cs131_faces at 64x64 (as representation_quality.py);
2. build dlib's cache of fixed views for each (`facerep teacher-cache`; about an hour of both
   cores for the 15,000 unlabeled faces x 4 views, resumable, reused by later runs);
3. train each requested run (NAME:RECIPE:EPOCHS, skipped when finished) on the unlabeled
   corpus plus the training identities of ORL and cs131, and export it to ONNX;
4. verification (10-fold accuracy, TAR at FAR 1e-3) and rank-1 on the held-out identities:
   the teacher, each student as shipped (PyTorch and onnxruntime; raw beside it where it
   ships whitened) and flip-averaged, eigenfaces;
5. embedding speed on aligned 64-px crops at batch 1 and 32, in one run on this CPU: dlib's
   ResNet, each student in PyTorch and in onnxruntime (1 and 2 threads);
6. end-to-end latency per photo (load, detect, align, embed) with each encoder, against the
   per-face budgets of WebFace260M's FRUITS protocol (100, 500 and 1,000 ms);
7. each student's agreement with dlib (cosine, the teacher's mean removed) on faces it
   trained on and on held-out identities: how much is fit and how much carries over;
8. write bench/results/distillation.{json,md} with the date and the machine.

    python bench/distillation.py --run mimic-30m:mimic:20
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import time
from pathlib import Path

import numpy as np
from machine import code_version, describe_code, describe_machine, write_results
from representation_quality import DATA, RESULTS, prepare_all, pretrain_run

from facerep.data.splits import identity_split_indices
from facerep.data.store import open_dataset
from facerep.encoders.onnx import OnnxEncoder
from facerep.encoders.onnx_export import export_onnx
from facerep.encoders.registry import load_encoder
from facerep.encoders.run import RunEncoder
from facerep.eval.harness import encoder_variants, evaluate_all, load_eval_data
from facerep.eval.report import markdown_table
from facerep.train.teacher import build_teacher_cache, load_teacher_targets

ROOT = Path(__file__).resolve().parents[1]
VIEWS = 4
FRUITS_BUDGETS_MS = (100, 500, 1000)
SPEED_FACES = 256  # crops embedded per speed measurement (after a warm-up)
PHOTOS = 40  # ORL photos timed end to end per encoder
COLUMNS = ("verification_accuracy", "tar_at_far_1e-3", "roc_auc", "rank1")


def build_caches(datasets: dict[str, Path]) -> dict[str, float]:
    """dlib's views of every dataset (only what is missing); seconds spent on each."""
    spent = {}
    for name, path in datasets.items():
        start = time.perf_counter()
        build_teacher_cache(path, "dlib", VIEWS, workers=2)
        spent[name] = round(time.perf_counter() - start, 1)
    return spent


def export_runs(runs: list[Path]) -> list[Path]:
    """Each run's shipped encoder as RUN.onnx beside it (exported again every time)."""
    files = []
    for run in runs:
        path = run.with_suffix(".onnx")
        export_onnx(run, path, overwrite=True)
        files.append(path)
    return files


def identity_tables(datasets: dict[str, Path], runs: list[Path], onnx: list[Path]) -> dict:
    """Teacher, students (shipped, onnxruntime, raw where they ship whitened, flip-averaged)
    and eigenfaces on the held-out half."""
    encoders, students = [load_encoder("dlib"), load_encoder("pca")], []
    for run, path in zip(runs, onnx, strict=True):
        shipped = load_encoder(run)
        students.append(shipped)
        encoders += [shipped, OnnxEncoder(path)]
        encoders += [load_encoder(run, whiten=False)] if shipped.whitened else []
    # Averaging each face with its mirror image (LFW's test-time habit) costs a second pass.
    variants = encoder_variants(encoders, whiten="off")
    variants += encoder_variants(students, whiten="off", flip=True)
    tables = {}
    for name in ("orl", "cs131"):
        data = load_eval_data(datasets[name], 0.5, 0)
        results = evaluate_all(data, variants, seed=0)
        tables[name] = {r.name: r.metrics for r in results}
    return tables


def teacher_agreement(datasets: dict[str, Path], trained: list[tuple[Path, dict]]) -> dict:
    """Each student's mean cosine to dlib on view 0 with the teacher's mean taken away (what
    tells faces apart), on faces it trained on and on held-out identities: the gap between
    the two is what more faces or views would buy, the level on the first what capacity would.

    Students with a projection head (another embedding size) are left out: their embedding is
    not the teacher's space.
    """
    unlabeled = len(open_dataset(datasets["unlabeled"]))
    rows = {"unlabeled (trained)": ("unlabeled", np.sort(np.random.default_rng(0).choice(
        unlabeled, min(800, unlabeled), replace=False)))}  # fmt: skip
    for name in ("orl", "cs131"):
        train, held = identity_split_indices(open_dataset(datasets[name]).identities, 0.5, 0)
        rows[f"{name} train ids"], rows[f"{name} held-out"] = (name, train), (name, held)
    # Each part's crops and teacher rows are read once, for every student.
    crops = {p: np.asarray(open_dataset(datasets[d]).crops[r]) for p, (d, r) in rows.items()}
    teacher = {
        part: load_teacher_targets(datasets[d], "dlib", VIEWS, r).embeddings[:, 0].numpy()
        for part, (d, r) in rows.items()
    }
    # One mean for every part (the unlabeled sample's), so the levels compare.
    mean = teacher["unlabeled (trained)"].mean(axis=0)
    table = {}
    for run, summary in trained:
        encoder = load_encoder(run, whiten=False)  # the distilled embedding itself
        if encoder.dim != mean.shape[0]:
            continue
        # A student of centred targets already embeds in the centred space.
        offset = 0.0 if summary["recipe"].get("teacher_centred") else mean
        table[run.name] = {
            part: round(_mean_cosine(encoder.embed(crops[part]) - offset, teacher[part] - mean), 4)
            for part in rows
        }
    return table


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def speed_table(faces: np.ndarray, runs: list[Path], onnx: list[Path]) -> list[dict]:
    """Faces/s and ms a face at batch 1 and 32 for each encoder, in this one run."""
    encoders = [("dlib ResNet (dlib's own threading)", load_encoder("dlib"))]
    for run, path in zip(runs, onnx, strict=True):
        encoders += [
            (f"{run.name} PyTorch (2 threads)", RunEncoder(run, device="cpu")),
            (f"{run.name} onnxruntime (1 thread)", OnnxEncoder(path, threads=1)),
            (f"{run.name} onnxruntime (2 threads)", OnnxEncoder(path, threads=2)),
        ]
    rows = []
    for label, encoder in encoders:
        row = {"encoder": label}
        for batch in (1, 32):
            row[f"batch{batch}_faces_per_s"], row[f"batch{batch}_ms_per_face"] = _time_embed(
                encoder, faces, batch
            )
        rows.append(row)
    return rows


def _time_embed(encoder, faces: np.ndarray, batch: int) -> tuple[float, float]:
    count = SPEED_FACES if batch > 1 else SPEED_FACES // 4
    encoder.embed(faces[:batch])  # warm-up: sessions, caches, lazy loads
    start = time.perf_counter()
    for begin in range(0, count, batch):
        encoder.embed(faces[begin : begin + batch])
    seconds = time.perf_counter() - start
    return round(count / seconds, 1), round(1000 * seconds / count, 2)


def end_to_end(photos: list[Path], encoders: list[tuple[str, object]]) -> list[dict]:
    """Mean and 95th-percentile ms per photo from the file to its embedding."""
    import facerep

    rows = []
    for label, encoder in encoders:
        facerep.embed(photos[0], encoder)  # warm-up: the detector and landmark models
        times = []
        for photo in photos:
            start = time.perf_counter()
            facerep.embed(photo, encoder)
            times.append(1000 * (time.perf_counter() - start))
        mean, p95 = float(np.mean(times)), float(np.percentile(times, 95))
        rows.append({
            "encoder": label, "mean_ms": round(mean, 1), "p95_ms": round(p95, 1),
            **{f"within_{b}ms": bool(p95 <= b) for b in FRUITS_BUDGETS_MS},
        })  # fmt: skip
    return rows


def _threads(recipe: dict) -> str:
    return f" ({recipe['threads']} threads)" if recipe.get("threads") else ""


def markdown(report: dict) -> str:
    """The human-readable tables."""
    m = report["machine"]
    lines = [
        "# Distillation: dlib into a fast student",
        "",
        f"{m['date']} · {m['nproc']} cores ({m['cpu']}) · {m['device']} · torch {m['torch']} · "
        f"{describe_code(report['code'])}",
        "",
        f"Teacher caches ({VIEWS} fixed views a face): " + ", ".join(
            f"{name} {seconds / 60:.1f} min this run" for name, seconds in report["caches"].items()
        ),
        "",
    ]  # fmt: skip
    for run, summary in report["runs"].items():
        recipe = summary["recipe"]
        lines.append(
            f"- `{Path(run).name}`: {recipe['objective']} on {recipe['model']} "
            f"(`{recipe['file']}`), {len(summary['epoch_losses'])} epochs of "
            f"{recipe['batch_size']}, {summary['seconds_this_session'] / 60:.1f} min at "
            f"{summary['images_per_sec']} images/s on {summary['device']}"
            f"{_threads(recipe)}; last teacher cosine {summary.get('last_teacher_cosine')}"
            f"{' (centred targets)' if recipe.get('teacher_centred') else ''}"
        )
    for dataset, table in report["identity"].items():
        rows = [
            [name, *(f"{row[k]:.4f}" if isinstance(row.get(k), float) else "-" for k in COLUMNS)]
            for name, row in table.items()
        ]
        lines += ["", f"## {dataset}: held-out identities (seed 0, half)", "",
                  *markdown_table(["encoder", *COLUMNS], rows)]  # fmt: skip
    parts = list(next(iter(report["agreement"].values()), {}))
    rows = [[run, *(f"{row[p]:.3f}" for p in parts)] for run, row in report["agreement"].items()]
    lines += ["", "## Student-teacher agreement (cosine to dlib, teacher's mean removed, view 0)",
              "", *markdown_table(["student", *parts], rows)]  # fmt: skip
    keys = ("batch1_faces_per_s", "batch1_ms_per_face", "batch32_faces_per_s",
            "batch32_ms_per_face")  # fmt: skip
    rows = [[r["encoder"], *(str(r[k]) for k in keys)] for r in report["speed"]]
    dlib = report["speed"][0]["batch32_faces_per_s"]
    lines += ["", "## Embedding speed on aligned 64-px crops (this run, this CPU)", "",
              *markdown_table(["encoder", *keys], rows), "",
              "Speed-up over dlib at batch 32: " + ", ".join(
                  f"{r['encoder']} {r['batch32_faces_per_s'] / dlib:.1f}x"
                  for r in report["speed"][1:])]  # fmt: skip
    rows = [
        [r["encoder"], str(r["mean_ms"]), str(r["p95_ms"]),
         *("yes" if r[f"within_{b}ms"] else "no" for b in FRUITS_BUDGETS_MS)]
        for r in report["end_to_end"]
    ]  # fmt: skip
    lines += ["", f"## End to end per photo (load, detect, align, embed; {PHOTOS} ORL photos)",
              "", *markdown_table(["encoder", "mean ms", "p95 ms",
                                   *(f"p95 within {b} ms" for b in FRUITS_BUDGETS_MS)], rows)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", default=[], help="NAME:RECIPE:EPOCHS")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=ROOT / "runs")
    parser.add_argument("--name", default="distillation", help="results file stem")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: shared face data not found")
    start = time.perf_counter()
    datasets = prepare_all(args.data, args.work)
    caches = build_caches(datasets)
    trained = [pretrain_run(spec, datasets, args.work) for spec in args.run]
    runs = [run for run, _ in trained]
    onnx = export_runs(runs)
    crops = np.asarray(open_dataset(datasets["orl"]).crops[:SPEED_FACES])
    photos = sorted((args.data / "orl").glob("s*/*.pgm"))[:PHOTOS]
    chosen = [("dlib", load_encoder("dlib"))]
    chosen += [(f"{p.name} (onnxruntime)", OnnxEncoder(p)) for p in onnx]
    report = {
        "machine": describe_machine(),
        "code": code_version(),
        "caches": caches,
        "runs": {str(run): s for run, s in trained},
        "identity": identity_tables(datasets, runs, onnx),
        "agreement": teacher_agreement(datasets, trained),
        "speed": speed_table(crops, runs, onnx),
        "end_to_end": end_to_end(photos, chosen),
    }
    report["seconds"] = round(time.perf_counter() - start, 1)
    text = markdown(report)
    write_results(RESULTS, args.name, report, text)
    print(text)


if __name__ == "__main__":
    main()
