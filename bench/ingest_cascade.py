"""Ingest under hard light, tilted heads and small faces: the detection cascade against today's.

Sets: ORL, cs131_faces, faces_unlabeled and the built-in LFW sample as they are, and copies of
ORL and cs131_faces made here, deterministically, with a known geometry:
- relit: gamma 0.3 and 0.5 (`out = in ** gamma` on [0, 1], scikit-image's `adjust_gamma`
  convention: washed out), brightness at 10%, and one-sided shading from each of 4 directions
  (the light falls from full on one edge to 5% on the other);
- rotated: roll +-20 and +-35 degrees (turned about the centre on a mirror-padded canvas, so
  no black corners give the turn away);
- small: the photo scaled so its face box is 48 px wide and pasted into a 640x640 background
  (scikit-image's sample photos without faces, seeded positions).

Configurations, each on every set in the same run: `today` (the first stage alone: HOG on the
photo and its margin retry, the code before the cascade, plus the landmark check), `cascade`
(every stage), and `cascade+cropped` (with `assume_cropped`, for the sets of pre-cropped faces).
Reported per set: the aligned share, the stage that found each face, and the landmark error:
the landmarks found on a copy, against those of its unaltered original (found by `today`)
mapped through the copy's known transform, in pixels of a 112-px aligned crop.

Time per image (detection, landmarks, check and alignment; decoding is done before timing) on the
ordinary sets, `today` against `cascade`, interleaved and repeated, best of the repeats.

Run: `python bench/ingest_cascade.py [--data DIR] [--every N] [--repeats K]`; results go to
bench/results/ingest_cascade.{json,md}.
"""

from __future__ import annotations

import os

# Spinning OpenMP threads steal the shared cores; one thread, one process.
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from machine import code_version, describe_code, describe_machine, write_results
from PIL import Image
from prepare_throughput import evenly_spaced

from facerep.data.sources import walk_source
from facerep.faces.align import apply_transform, estimate_alignment, translation
from facerep.faces.detect import STAGES
from facerep.faces.find import search_and_align
from facerep.images import load_image

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CROP = 112
SMALL_FACE = 48
CANVAS = 640
GOAL_SHARE = 0.99
GOAL_ERROR = 3.0
GOAL_SLOWDOWN = 1.2
CONFIGS = {
    "today": {"cascade": False},
    "cascade": {"cascade": True},
    "cascade+cropped": {"cascade": True, "assume_cropped": True},
}

Transform = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class Photo:
    """One benchmark input: its pixels and the map from its original's pixels to its own."""

    name: str
    image: np.ndarray
    from_original: np.ndarray  # 3x3
    original: int  # index of the unaltered photo in its base set


@dataclass
class Outcome:
    """What one configuration did on one set."""

    images: int = 0
    aligned: int = 0
    stages: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)  # status of the photos with no face
    errors: list[float] = field(default_factory=list)  # landmark error per face, crop pixels
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        errors = np.array(self.errors) if self.errors else np.zeros(0)
        return {
            "images": self.images,
            "aligned": self.aligned,
            "share": self.aligned / max(self.images, 1),
            "stages": dict(self.stages),
            "refused": dict(self.refused),
            "landmark_error_mean": float(errors.mean()) if len(errors) else None,
            "landmark_error_p95": float(np.percentile(errors, 95)) if len(errors) else None,
            "ms_per_image": 1000 * self.seconds / max(self.images, 1),
        }


# --- the altered copies -------------------------------------------------------------------------


def relit(kind: str) -> Transform:
    """A lighting change: gamma G, dim (10% brightness) or shade from L, R, T or B."""

    def apply(image: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        x = image.astype(np.float32) / 255.0
        height, width = x.shape[:2]
        if kind.startswith("gamma"):
            out = x ** float(kind[5:])
        elif kind == "dim":
            out = x * 0.1
        else:
            ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
            ramp = {
                "L": 1 - xs / (width - 1),
                "R": xs / (width - 1),
                "T": 1 - ys / (height - 1),
                "B": ys / (height - 1),
            }[kind[-1]]
            out = x * (0.05 + 0.95 * ramp)[..., None]
        return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8), np.eye(3)

    return apply


def rotated(degrees: float) -> Transform:
    """Roll by `degrees` about the centre, on a mirror-padded canvas holding the whole photo."""

    def apply(image: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        height, width = image.shape[:2]
        theta = math.radians(degrees)
        c, s = abs(math.cos(theta)), abs(math.sin(theta))
        out_w, out_h = math.ceil(width * c + height * s), math.ceil(width * s + height * c)
        pad = max(out_w, out_h)
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
        c, s = math.cos(theta), math.sin(theta)
        # Output pixel -> original pixel, both about their centres.
        back = (
            translation((width - 1) / 2, (height - 1) / 2)
            @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
            @ translation(-(out_w - 1) / 2, -(out_h - 1) / 2)
        )
        half = translation(0.5, 0.5)
        sample = half @ translation(pad, pad) @ back @ np.linalg.inv(half)
        out = Image.fromarray(padded).transform(
            (out_w, out_h),
            Image.Transform.AFFINE,
            tuple(sample[:2].reshape(-1)),
            Image.Resampling.BICUBIC,
        )
        return np.asarray(out), np.linalg.inv(back)

    return apply


def small_in_background(boxes: list[float | None]) -> Transform:
    """Scale the photo so its face box is 48 px wide and paste it into a 640x640 scene."""
    from skimage import data

    # Scenes in which the cascade finds no face of their own (the astronaut has one).
    scenes = [data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry()]
    scenes = [np.asarray(Image.fromarray(s).resize((CANVAS, CANVAS))) for s in scenes]

    def apply(image: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        width = boxes[seed]
        scale = SMALL_FACE / width
        height_px, width_px = image.shape[:2]
        size = (max(1, round(width_px * scale)), max(1, round(height_px * scale)))
        face = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
        rng = np.random.default_rng(seed)
        canvas = scenes[seed % len(scenes)].copy()
        left = int(rng.integers(0, CANVAS - size[0]))
        top = int(rng.integers(0, CANVAS - size[1]))
        canvas[top : top + size[1], left : left + size[0]] = face
        sx, sy = size[0] / width_px, size[1] / height_px
        forward = translation(left, top) @ np.array(
            [[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]]
        )
        return canvas, forward

    return apply


# --- the sets ------------------------------------------------------------------------------------


def load_folder(folder: Path, every: int) -> list[np.ndarray]:
    items, _ = walk_source(folder, layout="flat")
    return [load_image(item.path) for item in items[::every]]


def base_sets(root: Path, every: int) -> dict[str, list[np.ndarray]]:
    """The unaltered sets, decoded (every `every`-th image)."""
    from facerep.data.builtin import builtin_items

    lfw = [load_image(item.load_array()) for item in builtin_items("lfw-sample")]
    return {
        "orl": load_folder(root / "orl", every),
        "cs131_faces": load_folder(root / "cs131_faces", every),
        "faces_unlabeled": load_folder(root / "faces_unlabeled", every),
        "lfw_sample": lfw[::every],
    }


def copies(images: list[np.ndarray], widths: list[float | None]) -> dict[str, list[Photo]]:
    """The altered copies of one base set, with the maps from each original."""
    transforms: dict[str, Transform] = {
        "gamma0.3": relit("gamma0.3"),
        "gamma0.5": relit("gamma0.5"),
        "dim10%": relit("dim"),
        **{f"shade{d}": relit(f"shade{d}") for d in "LRTB"},
        **{f"roll{a:+d}": rotated(a) for a in (20, -20, 35, -35)},
        "small48": small_in_background(widths),
    }
    out = {}
    for name, transform in transforms.items():
        photos = []
        for i, image in enumerate(images):
            if name == "small48" and widths[i] is None:
                continue  # no face box to scale by: the original gave no face
            pixels, forward = transform(image, i)
            photos.append(Photo(f"{name}/{i}", pixels, forward, i))
        out[name] = photos
    return out


# --- measuring -----------------------------------------------------------------------------------


def search(image: np.ndarray, config: dict) -> tuple[list, object]:
    return search_and_align(image, size=CROP, max_faces=1, **config)


def run_set(
    photos: list[Photo], config: dict, reference: list[np.ndarray | None] | None
) -> Outcome:
    """One configuration over one set, with landmark errors against `reference` when given."""
    outcome = Outcome(images=len(photos))
    start = time.perf_counter()
    for photo in photos:
        faces, found = search(photo.image, config)
        if not faces:
            outcome.refused[found.failure()[0]] += 1
            continue
        outcome.aligned += 1
        outcome.stages[faces[0].stage] += 1
        if reference is not None and reference[photo.original] is not None:
            expected = apply_transform(photo.from_original, reference[photo.original])
            to_crop = estimate_alignment(expected, CROP)
            scale = float(np.hypot(to_crop[0, 0], to_crop[1, 0]))
            error = np.linalg.norm(faces[0].landmarks - expected, axis=1).mean() * scale
            outcome.errors.append(float(error))
    outcome.seconds = time.perf_counter() - start
    return outcome


def timed(images: list[np.ndarray], config: dict) -> tuple[float, dict[str, dict]]:
    """Seconds per image, and per stage: the share of images it ran on and its ms per image."""
    stage_seconds: Counter[str] = Counter()
    stage_runs: Counter[str] = Counter()
    start = time.perf_counter()
    for image in images:
        _, found = search(image, config)
        stage_seconds.update(found.seconds)
        stage_runs.update(found.seconds.keys())
    count = max(len(images), 1)
    stages = {
        stage: {"ran_on": stage_runs[stage] / count, "ms_per_image": 1000 * seconds / count}
        for stage, seconds in stage_seconds.items()
    }
    return (time.perf_counter() - start) / count, stages


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--every", type=int, default=1, help="every N-th image of each set")
    parser.add_argument("--repeats", type=int, default=2, help="timing runs; the best counts")
    parser.add_argument(
        "--timing-images",
        type=int,
        default=2000,
        help="images per ordinary set in the timing runs (evenly spaced)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--timing-only",
        action="store_true",
        help="measure the time again, keeping the recorded shares (for a quieter machine)",
    )
    args = parser.parse_args()
    missing = [n for n in ("orl", "cs131_faces", "faces_unlabeled") if not (args.data / n).is_dir()]
    if missing:
        sys.exit(f"data folder missing under {args.data}: {', '.join(missing)}")
    return args


def main() -> None:
    args = parse_args()
    machine, code = describe_machine(), code_version()
    bases = base_sets(args.data, args.every)
    if args.timing_only:
        retime(bases, args, machine, code)
        return
    results: dict[str, dict[str, dict]] = {}
    for name, images in bases.items():
        photos = [Photo(f"{name}/{i}", im, np.eye(3), i) for i, im in enumerate(images)]
        results[name] = {}
        for config_name, config in CONFIGS.items():
            outcome = run_set(photos, config, None)
            results[name][config_name] = outcome.summary()
            print(name, config_name, results[name][config_name], flush=True)
        if name not in ("orl", "cs131_faces"):
            continue
        reference, widths = _reference(photos)
        for copy_name, copy_photos in copies(images, widths).items():
            key = f"{name}:{copy_name}"
            results[key] = {}
            for config_name, config in CONFIGS.items():
                if config_name == "cascade+cropped" and copy_name == "small48":
                    continue  # a face in a scene is not a pre-cropped face
                outcome = run_set(copy_photos, config, reference)
                results[key][config_name] = outcome.summary()
                print(key, config_name, results[key][config_name], flush=True)
    timing = time_ordinary(bases, args)
    report = {
        "machine": machine,
        "code": code,
        "sets": results,
        "timing": timing,
        "goal": {"share": GOAL_SHARE, "landmark_error": GOAL_ERROR, "slowdown": GOAL_SLOWDOWN},
    }
    write_results(args.out, "ingest_cascade", report, markdown(report))
    print(markdown(report))


def retime(bases: dict, args: argparse.Namespace, machine: dict, code: dict) -> None:
    """Measure the time again (on a quiet machine) and keep the recorded aligned shares."""
    import json

    path = args.out / "ingest_cascade.json"
    if not path.is_file():
        sys.exit(f"{path}: no recorded results to retime; run the whole bench first")
    report = json.loads(path.read_text())
    report["timing"] = time_ordinary(bases, args)
    report["timing_run"] = {"machine": machine, "code": code}
    write_results(args.out, "ingest_cascade", report, markdown(report))
    print(markdown(report))


def _reference(photos: list[Photo]) -> tuple[list, list]:
    """The landmarks and box width `today` finds on each unaltered photo (None where none)."""
    landmarks, widths = [], []
    for photo in photos:
        faces, _ = search(photo.image, CONFIGS["today"])
        landmarks.append(faces[0].landmarks if faces else None)
        widths.append(faces[0].box.width if faces else None)
    return landmarks, widths


def time_ordinary(bases: dict[str, list[np.ndarray]], args: argparse.Namespace) -> dict:
    """Per-image time of `today` and `cascade` on the ordinary sets, interleaved, best of K."""
    timing = {}
    for name, images in bases.items():
        sample = evenly_spaced(images, args.timing_images)
        best = {"today": math.inf, "cascade": math.inf}
        stages: dict[str, dict] = {}
        for _ in range(args.repeats):
            for config_name in best:
                seconds, per_stage = timed(sample, CONFIGS[config_name])
                if config_name == "cascade" and seconds < best[config_name]:
                    stages = per_stage
                best[config_name] = min(best[config_name], seconds)
        timing[name] = {
            "images": len(sample),
            "today_ms": 1000 * best["today"],
            "cascade_ms": 1000 * best["cascade"],
            "ratio": best["cascade"] / best["today"],
            "cascade_stages": stages,
        }
        print(name, timing[name], flush=True)
    return timing


def markdown(report: dict) -> str:
    m, goal = report["machine"], report["goal"]
    lines = [
        "# Ingest cascade: aligned share, stages, landmark error and time",
        "",
        f"{m['date']}, {m['cpu']} ({m['nproc']} cores), one process, one thread; "
        f"{describe_code(report['code'])}.",
        f"Goal: at least {goal['share']:.0%} aligned on every set, mean landmark error under "
        f"{goal['landmark_error']} px at {CROP}-px crops, at most {goal['slowdown']}x today's "
        "time on the ordinary sets.",
        "",
        "| set | images | today | cascade | cascade+cropped | found by (cascade) | refused "
        "(cascade) | landmark error, mean / p95 px (cascade) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, configs in report["sets"].items():
        cascade = configs["cascade"]
        cropped = configs.get("cascade+cropped")
        stages = ", ".join(f"{k} {v}" for k, v in sorted(cascade["stages"].items()))
        refused = ", ".join(f"{k} {v}" for k, v in sorted(cascade["refused"].items())) or "-"
        error = (
            f"{cascade['landmark_error_mean']:.2f} / {cascade['landmark_error_p95']:.2f}"
            if cascade["landmark_error_mean"] is not None
            else "-"
        )
        lines.append(
            f"| {name} | {cascade['images']} | {configs['today']['share']:.1%} | "
            f"{cascade['share']:.1%} | {cropped['share']:.1%} | "
            if cropped
            else f"| {name} | {cascade['images']} | {configs['today']['share']:.1%} | "
            f"{cascade['share']:.1%} | - | "
        )
        lines[-1] += f"{stages} | {refused} | {error} |"
    timing_run = report.get("timing_run")
    when = (
        f" (measured again: {timing_run['machine']['date']}, {describe_code(timing_run['code'])})"
        if timing_run
        else ""
    )
    lines += [
        "",
        f"Time per image on the ordinary sets{when}: decoded beforehand; best of the repeats, "
        "interleaved. `later stages` is today's time plus what the cascade's later stages took "
        "per image of the set, against today's time:",
        "",
        "| set | images | today ms | cascade ms | ratio | later stages |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in report["timing"].items():
        stages = t["cascade_stages"]
        later = sum(s["ms_per_image"] for name, s in stages.items() if name != "photo")
        lines.append(
            f"| {name} | {t['images']} | {t['today_ms']:.2f} | {t['cascade_ms']:.2f} | "
            f"{t['ratio']:.2f}x | {1 + later / t['today_ms']:.2f}x |"
        )
    lines += [
        "",
        "Where the cascade's time goes (the best cascade run): per stage, the share of images it "
        "ran on and its ms per image of the set:",
        "",
        "| set | " + " | ".join(STAGES[:-1]) + " |",
        "|---|" + "---|" * (len(STAGES) - 1),
    ]
    for name, t in report["timing"].items():
        cells = [_stage_cell(t["cascade_stages"].get(stage)) for stage in STAGES[:-1]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _stage_cell(stage: dict | None) -> str:
    if stage is None:
        return "-"
    return f"{stage['ran_on']:.1%}, {stage['ms_per_image']:.2f} ms"


if __name__ == "__main__":
    main()
