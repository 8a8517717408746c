"""Occlusion maps, anomaly scores and occlusion-robust verification, with the truth known.

The recipe, reproducible from a clean clone with the shared data beside it:
1. prepare faces_unlabeled, ORL and cs131_faces at 64 px and pretrain the run (skipped when its
   folder holds a finished run), as `bench/representation_quality.py` does; the default run is
   `bench/recipes/mae_pixels.toml` (vit-tiny MAE on raw pixels);
2. fit its occlusion prior on 2,000 of its own training faces (never the held-out identities),
   again when the stored one has no token prior (fitted before they were);
3. on the held-out identities of ORL and cs131_faces (seed 0, half), paste synthetic occluders
   at known places, drawn from each face's landmarks with a seeded generator:
   - `sunglasses`: a dark bar over both eyes, along the eye line;
   - `hand`: a skin-coloured, shaded ellipse over the mouth, a cheek or the nose;
   - `texture`: a rectangle cut from scikit-image's sample photos (brick, grass, gravel, ...);
   - `rectangle`: a flat rectangle of a random colour, anywhere on the face;
   and report mask IoU and F1 against the pasted region, and the anomaly AUC of occluded
   against clean faces, each with the prior and without it (each face against itself); the
   AUC with the prior is the shipped score's (the encoder tokens'), `AUC, pixels` beside it
   the prior's mean normalised residual, the score before token priors;
4. manipulated faces (blur, JPEG at quality 10, Gaussian noise, the right half from another
   identity, eyes or mouth from another identity): anomaly AUC against clean, both ways;
5. verification (10-fold) on held-out pairs whose second face carries one of the occluders:
   the run's plain embedding, with `ignore_occluded`, and dlib's, beside the clean pairs.

    python bench/occlusion.py [--run NAME:RECIPE:EPOCHS] [--work runs]

Results go to bench/results/occlusion.{json,md}.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from machine import code_version, describe_code, describe_machine, write_results
from PIL import Image, ImageDraw, ImageFilter
from representation_quality import DATA, ROOT, prepare_all, pretrain_run
from sklearn.metrics import roc_auc_score

from facerep.data.splits import identity_split_indices
from facerep.data.store import open_dataset
from facerep.encoders.registry import load_encoder
from facerep.eval.verification import Pairs, evaluate_verification, make_pairs
from facerep.tasks.occlusion import OcclusionMapper, fit_run_prior, region_discs
from facerep.tasks.occlusion_prior import load_prior

RESULTS = ROOT / "bench" / "results"
DEFAULT_RUN = "mae-px-12:mae_pixels:12"
GOAL = {"iou": 0.6, "auc": 0.9, "recovered": 0.5}
TEXTURES = ("brick", "grass", "gravel", "coffee", "rocket", "immunohistochemistry")
SEED = 0

Occluder = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def eye_geometry(landmarks: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Eye midpoint, inter-ocular distance and eye-line angle (radians) of `[5, 2]` points."""
    right, left = landmarks[0:2].mean(0), landmarks[2:4].mean(0)
    delta = right - left
    return (left + right) / 2, float(np.hypot(*delta)), float(math.atan2(delta[1], delta[0]))


def paste(face: np.ndarray, mask: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """`face` with `pixels` where `mask` is set."""
    out = face.copy()
    out[mask] = pixels[mask]
    return out


def polygon_mask(size: int, points: list[tuple[float, float]]) -> np.ndarray:
    layer = Image.new("L", (size, size))
    ImageDraw.Draw(layer).polygon(points, fill=255)
    return np.asarray(layer) > 127


def sunglasses(face: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator):
    """A dark bar over both eyes, along the eye line: 2x the eye distance wide, 0.55x tall."""
    centre, distance, angle = eye_geometry(landmarks)
    half_w, half_h = distance * rng.uniform(0.95, 1.1), distance * rng.uniform(0.25, 0.32)
    c, s = math.cos(angle), math.sin(angle)
    corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    points = [(centre[0] + x * c - y * s, centre[1] + x * s + y * c) for x, y in corners]
    mask = polygon_mask(face.shape[0], points)
    colour = rng.uniform(0, 45, 3)
    return paste(face, mask, np.broadcast_to(colour, face.shape).astype(np.uint8)), mask


def hand(face: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator):
    """A skin-coloured ellipse, lit from one side, over the mouth, a cheek or the nose."""
    size = face.shape[0]
    centre, distance, _ = eye_geometry(landmarks)
    nose = landmarks[4]
    down = nose - centre
    spots = [nose + 0.9 * down, nose + 0.3 * down + [0.8 * distance, 0], nose - [0.8 * distance, 0]]
    cx, cy = spots[rng.integers(len(spots))] + rng.normal(0, 0.1 * distance, 2)
    rx, ry = distance * rng.uniform(0.55, 0.8), distance * rng.uniform(0.4, 0.6)
    ys, xs = np.mgrid[0:size, 0:size]
    mask = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
    skin = np.array([rng.uniform(150, 235), rng.uniform(100, 180), rng.uniform(80, 150)])
    shade = 0.75 + 0.35 * (xs - cx + rx) / (2 * rx)  # light from one side
    pixels = np.clip(skin * shade[..., None], 0, 255).astype(np.uint8)
    return paste(face, mask, pixels), mask


def texture_patch(face: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator):
    """A rectangle cut from one of scikit-image's sample photos, on the face."""
    import skimage.data

    source = getattr(skimage.data, TEXTURES[rng.integers(len(TEXTURES))])()
    if source.ndim == 2:
        source = np.repeat(source[..., None], 3, axis=2)
    mask, (top, left, h, w) = random_rectangle(face.shape[0], rng)
    y, x = rng.integers(0, source.shape[0] - 64), rng.integers(0, source.shape[1] - 64)
    cut = Image.fromarray(source[y : y + 64, x : x + 64, :3]).resize((w, h))
    pixels = np.zeros_like(face)
    pixels[top : top + h, left : left + w] = np.asarray(cut)
    return paste(face, mask, pixels), mask


def rectangle(face: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator):
    """A flat rectangle of a random colour."""
    mask, _ = random_rectangle(face.shape[0], rng)
    colour = rng.uniform(0, 255, 3)
    return paste(face, mask, np.broadcast_to(colour, face.shape).astype(np.uint8)), mask


def random_rectangle(size: int, rng: np.random.Generator):
    """A rectangle of 22-38% of the side each way, inside the central 80% of the crop."""
    h, w = (int(size * rng.uniform(0.22, 0.38)) for _ in range(2))
    top = int(rng.integers(int(0.1 * size), int(0.9 * size) - h))
    left = int(rng.integers(int(0.1 * size), int(0.9 * size) - w))
    mask = np.zeros((size, size), bool)
    mask[top : top + h, left : left + w] = True
    return mask, (top, left, h, w)


OCCLUDERS: dict[str, Occluder] = {
    "sunglasses": sunglasses,
    "hand": hand,
    "texture": texture_patch,
    "rectangle": rectangle,
}


def blurred(face: np.ndarray, other: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(face).filter(ImageFilter.GaussianBlur(1.2)))


def jpeg10(face: np.ndarray, other: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(face).save(buffer, format="JPEG", quality=10)
    return np.asarray(Image.open(buffer).convert("RGB"))


def noisy(face: np.ndarray, other: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    noise = np.random.default_rng(int(face.sum()) % 2**32).normal(0, 12, face.shape)
    return np.clip(face + noise, 0, 255).astype(np.uint8)


def half_swap(face: np.ndarray, other: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    out = face.copy()
    out[:, face.shape[1] // 2 :] = other[:, face.shape[1] // 2 :]
    return out


def region_swap(region: str):
    def swap(face: np.ndarray, other: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        disc = region_discs(landmarks, face.shape[0])[region]
        return paste(face, disc, other)

    return swap


MANIPULATIONS = {
    "blur": blurred,
    "jpeg10": jpeg10,
    "noise": noisy,
    "half_swap": half_swap,
    "eyes_swap": region_swap("eyes"),
    "mouth_swap": region_swap("mouth"),
}


def heldout_faces(datasets: dict[str, Path]) -> dict[str, dict[str, np.ndarray]]:
    """Per identity set, the held-out identities' crops, landmarks and identities."""
    sets = {}
    for name in ("orl", "cs131"):
        data = open_dataset(datasets[name])
        _, held = identity_split_indices(data.identities, 0.5, SEED)
        sets[name] = {
            "crops": np.asarray(data.crops[held]),
            "landmarks": data.landmarks[held],
            "identities": data.identities[held],
        }
    return sets


def occluded_copies(faces: dict[str, np.ndarray], kind: str, seed: int):
    """Every face with an occluder of `kind`, and the truth masks."""
    rng = np.random.default_rng(seed)
    pairs = [
        OCCLUDERS[kind](crop, lm, rng)
        for crop, lm in zip(faces["crops"], faces["landmarks"], strict=True)
    ]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def manipulated_copies(faces: dict[str, np.ndarray], kind: str, seed: int) -> np.ndarray:
    """Every face manipulated by `kind`, with a face of another identity as the donor."""
    rng = np.random.default_rng(seed)
    crops, ids = faces["crops"], faces["identities"]
    out = []
    for i, (crop, lm) in enumerate(zip(crops, faces["landmarks"], strict=True)):
        others = np.flatnonzero(ids != ids[i])
        out.append(MANIPULATIONS[kind](crop, crops[rng.choice(others)], lm))
    return np.stack(out)


def mask_scores(maps: list, truth: np.ndarray) -> dict[str, float]:
    """Mean IoU and F1 of the outlier masks against the pasted regions (at the maps' size)."""
    truth = resize_masks(truth, maps[0].mask.shape[0])
    ious, f1s = [], []
    for m, t in zip(maps, truth, strict=True):
        hit = (m.mask & t).sum()
        ious.append(hit / max((m.mask | t).sum(), 1))
        f1s.append(2 * hit / max(m.mask.sum() + t.sum(), 1))
    return {"iou": float(np.mean(ious)), "f1": float(np.mean(f1s))}


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    if masks.shape[1] == size:
        return masks
    layers = [Image.fromarray(m.astype(np.uint8) * 255).resize((size, size)) for m in masks]
    return np.stack([np.asarray(layer) > 127 for layer in layers])


def anomaly_auc(clean: list, altered: list, score=lambda m: m.score) -> float:
    scores = [score(m) for m in clean] + [score(m) for m in altered]
    labels = [0] * len(clean) + [1] * len(altered)
    return float(roc_auc_score(labels, scores))


def pixel_score(occlusion_map) -> float:
    """The score before token priors: the mean normalised residual, shown beside the score."""
    return float(occlusion_map.normalised.mean())


def aucs(clean: dict, altered: dict) -> dict[str, float]:
    """AUC of each way's score against clean faces, and of the prior's pixel residual."""
    out = {way: anomaly_auc(clean[way], maps) for way, maps in altered.items()}
    out["pixels"] = anomaly_auc(clean["prior"], altered["prior"], pixel_score)
    return out


def explain(mappers: dict, faces: dict, seed: int) -> dict[str, dict]:
    """Mask scores and AUCs per occluder and manipulation, with and without the prior."""
    results: dict[str, dict] = {"occluders": {}, "manipulations": {}}
    clean = {way: m.maps(faces["crops"], faces["landmarks"]) for way, m in mappers.items()}
    results["clean_outlier_fraction"] = {
        way: float(np.mean([m.outlier_fraction for m in maps])) for way, maps in clean.items()
    }
    for k, kind in enumerate(OCCLUDERS):
        crops, truth = occluded_copies(faces, kind, seed + k)
        maps = {way: m.maps(crops, faces["landmarks"]) for way, m in mappers.items()}
        auc = aucs(clean, maps)
        row = {way: {**mask_scores(maps[way], truth), "auc": auc[way]} for way in mappers}
        row["prior"]["auc_pixels"] = auc["pixels"]
        results["occluders"][kind] = row
        print(kind, row, flush=True)
    for k, kind in enumerate(MANIPULATIONS):
        crops = manipulated_copies(faces, kind, seed + 100 + k)
        row = aucs(clean, {way: m.maps(crops, faces["landmarks"]) for way, m in mappers.items()})
        results["manipulations"][kind] = row
        print(kind, row, flush=True)
    return results


def occluded_verification(run: Path, mapper: OcclusionMapper, faces: dict) -> dict[str, dict]:
    """10-fold accuracy on held-out pairs, clean and with an occluder on each pair's second face.

    Each face's occluded copy carries one of the occluders (in turn); the first face of a pair
    stays clean, so a pair compares a clean photo against a covered one.
    """
    from facerep.encoders.run import RunEncoder

    rng = np.random.default_rng(SEED + 7)
    kinds = list(OCCLUDERS)
    covered = np.stack(
        [
            OCCLUDERS[kinds[i % len(kinds)]](crop, lm, rng)[0]
            for i, (crop, lm) in enumerate(zip(faces["crops"], faces["landmarks"], strict=True))
        ]
    )
    pairs = make_pairs(faces["identities"], seed=SEED)
    n = len(faces["crops"])
    against_covered = Pairs(pairs.left, pairs.right + n, pairs.same)
    run_encoder, dlib = RunEncoder(run), load_encoder("dlib")
    clean = {"run": run_encoder.embed(faces["crops"]), "dlib": dlib.embed(faces["crops"])}
    occluded = {
        "run": run_encoder.embed(covered),
        "run ignore_occluded": mapper.embed_ignoring_occluders(run_encoder, covered),
        "dlib": dlib.embed(covered),
    }
    results = {}
    for name, vectors in occluded.items():
        base = clean["dlib" if name == "dlib" else "run"]
        results[name] = {
            "clean": evaluate_verification(base, pairs).accuracy,
            "occluded": evaluate_verification(
                np.concatenate([base, vectors]), against_covered
            ).accuracy,
        }
    plain = results["run"]
    cost = plain["clean"] - plain["occluded"]
    ignoring = results["run ignore_occluded"]["occluded"]
    # Under half a point of cost, the share recovered is noise: not reported.
    results["recovered"] = (ignoring - plain["occluded"]) / cost if cost >= 0.005 else None
    print(results, flush=True)
    return results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=DEFAULT_RUN, help="NAME:RECIPE:EPOCHS (bench/recipes/)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--prior-faces", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    machine, code = describe_machine(), code_version()
    datasets = prepare_all(args.data, args.work)
    run, summary = pretrain_run(args.run, datasets, args.work)
    prior = load_prior(run)
    if prior is None or prior.tokens is None:  # none yet, or fitted before token priors
        fit_run_prior(run, max_faces=args.prior_faces)
    mappers = {
        "prior": OcclusionMapper(run, prior=True),
        "no prior": OcclusionMapper(run, prior=False),
    }
    sets = heldout_faces(datasets)
    report = {
        "machine": machine,
        "code": code,
        "run": {"name": run.name, "summary": summary, "prior_faces": load_prior(run).faces},
        "goal": GOAL,
        "sets": {},
    }
    for k, (name, faces) in enumerate(sets.items()):
        print(name, len(faces["crops"]), "held-out faces", flush=True)
        report["sets"][name] = {
            "faces": len(faces["crops"]),
            **explain(mappers, faces, SEED + 1000 * k),
            "verification": occluded_verification(run, mappers["prior"], faces),
        }
    write_results(args.out, "occlusion", report, markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    m, run = report["machine"], report["run"]
    recipe = run["summary"].get("recipe", {})
    lines = [
        "# Occlusion maps, anomaly scores and occlusion-robust verification",
        "",
        f"{m['date']}, {m['cpu']} ({m['nproc']} cores); {describe_code(report['code'])}.",
        f"Run `{run['name']}`: {recipe.get('objective')} on {recipe.get('model')} "
        f"({recipe.get('file')}, {recipe.get('epochs')} epochs); occlusion prior on "
        f"{run['prior_faces']} of its training faces. Held-out identities (seed 0, half).",
        f"Goal: mask IoU >= {GOAL['iou']}, anomaly AUC >= {GOAL['auc']} (occluded vs clean), "
        f"ignore_occluded recovering >= {GOAL['recovered']:.0%} of what occluders cost.",
    ]
    for name, result in report["sets"].items():
        fractions = result["clean_outlier_fraction"]
        lines += [
            "",
            f"## {name}: {result['faces']} held-out faces",
            "",
            f"Clean faces' mean outlier share: {fractions['prior']:.3f} with the prior, "
            f"{fractions['no prior']:.3f} without.",
            "",
            "| occluder | IoU | F1 | AUC | AUC, pixels | IoU, no prior | F1, no prior | "
            "AUC, no prior |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for kind, row in result["occluders"].items():
            p, q = row["prior"], row["no prior"]
            lines.append(
                f"| {kind} | {p['iou']:.3f} | {p['f1']:.3f} | {p['auc']:.3f} | "
                f"{p['auc_pixels']:.3f} | {q['iou']:.3f} | {q['f1']:.3f} | {q['auc']:.3f} |"
            )
        lines += ["", "| manipulation | AUC | AUC, pixels | AUC, no prior |", "|---|---|---|---|"]
        for kind, row in result["manipulations"].items():
            lines.append(
                f"| {kind} | {row['prior']:.3f} | {row['pixels']:.3f} | {row['no prior']:.3f} |"
            )
        verification = result["verification"]
        lines += [
            "",
            "| encoder | clean pairs | one face occluded |",
            "|---|---|---|",
        ]
        for encoder in ("run", "run ignore_occluded", "dlib"):
            row = verification[encoder]
            lines.append(f"| {encoder} | {row['clean']:.4f} | {row['occluded']:.4f} |")
        recovered = verification["recovered"]
        if recovered is None:
            lines.append("\nOccluders cost the run under half a point here: nothing to recover.")
        else:
            lines.append(
                f"\nignore_occluded recovers {recovered:.0%} of what occluders cost the run."
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
