"""Run every protocol for every encoder on one seeded identity-disjoint split.

The same held-out identities, pairs and trials serve every encoder, so the numbers in a report
compare representations and nothing else. Anything fitted (eigenfaces, PCA whitening) sees only
the training identities.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from facerep.data.splits import split_identities
from facerep.data.store import open_dataset
from facerep.encoders.base import Encoder, Fittable, TokenEncoder, is_whitened
from facerep.eval.attributes import MISSING, match_labels, read_attribute_labels, utkface_labels
from facerep.eval.clustering import evaluate_clustering
from facerep.eval.embedding import EmbedOptions, raw_features
from facerep.eval.identification import evaluate_identification
from facerep.eval.probes import attribute_probe, few_shot_probes
from facerep.eval.verification import (
    Pairs,
    VerificationResult,
    evaluate_verification,
    make_pairs,
    read_lfw_pairs,
)
from facerep.whitening import fit_whitening

# Which variants of each encoder to report: raw and whitened, whitened only, or raw only.
WhitenMode = Literal["both", "on", "off"]


@dataclass
class EvalData:
    """Faces of the held-out identities (evaluated) and of the training identities (fitting)."""

    faces: np.ndarray
    identities: np.ndarray
    sources: np.ndarray
    train_faces: np.ndarray
    train_identities: np.ndarray
    split: dict


def load_eval_data(
    dataset: str | Path,
    train_fraction: float = 0.5,
    split_seed: int = 0,
    all_heldout: bool = False,
) -> EvalData:
    """Split a prepared identity dataset into training and held-out identities (seeded)."""
    data = open_dataset(dataset)
    labelled = np.array([name is not None for name in data.identities])
    if labelled.sum() == 0:
        raise ValueError(f"{dataset}: has no identities; evaluation needs identity folders")
    identities = data.identities
    if all_heldout:
        train_names, held_names = [], sorted(set(identities[labelled]))
    else:
        train_names, held_names = split_identities(identities[labelled], train_fraction, split_seed)
    held = np.isin(identities, held_names) & labelled
    train = np.isin(identities, train_names) & labelled
    split = {
        "dataset": str(dataset),
        "seed": split_seed,
        "train_fraction": train_fraction,
        "all_heldout": all_heldout,
        "train_identities": train_names,
        "heldout_identities": held_names,
        "heldout_faces": int(held.sum()),
        "train_faces": int(train.sum()),
    }
    return EvalData(
        np.asarray(data.crops[held]),
        identities[held],
        data.sources[held],
        np.asarray(data.crops[train]),
        identities[train],
        split,
    )


@dataclass
class EncoderResult:
    """One encoder variant's metrics, plus what the report plots."""

    name: str
    metrics: dict[str, float | int | None]
    verification: VerificationResult
    embeddings: np.ndarray = field(repr=False)


def encoder_variants(
    encoders: Sequence[Encoder],
    whiten: WhitenMode = "both",
    pools: Sequence[int] = (),
    flip: bool = False,
) -> list[tuple[Encoder, EmbedOptions]]:
    """(encoder, options) pairs: each encoder raw and/or whitened, at each pooling grid.

    An encoder whose embeddings are already whitened (`whitened` true, as eigenfaces are) is
    reported once, unwhitened: a second whitening would change nothing. Grid pooling needs
    patch tokens, so only token encoders (a `tokens` method: facerep runs) are pooled; every
    encoder is reported at grid 1 (its own embedding).

    Raises:
        ValueError: a pooling grid below 1, or grids asked for and no encoder has tokens.
    """
    if any(grid < 1 for grid in pools):
        raise ValueError(f"pooling grid {min(pools)}: must be 1 or more")
    grids = list(dict.fromkeys([1, *pools]))  # 1 first, each grid once
    if len(grids) > 1 and not any(_has_tokens(e) for e in encoders):
        names = ", ".join(e.name for e in encoders)
        raise ValueError(
            f"pooling grid {grids[1]}: needs patch tokens, which only facerep runs have, "
            f"not {names}"
        )
    whitening = {"both": [False, True], "on": [True], "off": [False]}[whiten]
    variants = []
    for encoder in encoders:
        variants += [
            (encoder, EmbedOptions(flip=flip, pool_grid=grid, whiten=w))
            for grid in (grids if _has_tokens(encoder) else [1])
            # Grid-pooled tokens are never the encoder's own (whitened) embedding.
            for w in ([False] if is_whitened(encoder) and grid == 1 else whitening)
        ]
    return variants


def _has_tokens(encoder: Encoder) -> bool:
    return isinstance(encoder, TokenEncoder)


def evaluation_pairs(data: EvalData, lfw_pairs: str | Path | None, seed: int) -> Pairs:
    """LFW's official pairs when given, else seeded genuine and equal impostor pairs."""
    if lfw_pairs is not None:
        training = [str(name) for name in data.split.get("train_identities", [])]
        return read_lfw_pairs(lfw_pairs, list(data.sources), excluded_people=training)
    try:
        return make_pairs(data.identities, seed=seed)
    except ValueError as e:
        split = data.split
        raise ValueError(
            f"{split['dataset']}: too few held-out identities to evaluate "
            f"({len(split['heldout_identities'])}, with {split['heldout_faces']} faces): {e}; "
            "hold out more identities (a lower train fraction) or use a dataset with more"
        ) from None


def evaluate_embeddings(
    name: str,
    embeddings: np.ndarray,
    data: EvalData,
    pairs: Pairs,
    seed: int = 0,
    strict_pairs: bool = True,
) -> EncoderResult:
    """Every protocol on one encoder variant's `[N, D]` embeddings of the held-out faces.

    `strict_pairs`: pairs of an official list whose photo gave no face count as errors (see
    `evaluate_verification`); False drops them from the score.
    """
    verification = evaluate_verification(embeddings, pairs, seed=seed, strict=strict_pairs)
    metrics: dict[str, float | int | None] = {
        "dim": int(embeddings.shape[1]),
        "verification_accuracy": verification.accuracy,
        "verification_std": verification.accuracy_std,
        "roc_auc": verification.roc_auc,
        "eer": verification.eer,
        "threshold": verification.threshold,
        "pairs": verification.n_pairs,
        # Pairs of the list that could not be scored, and the accuracy without them.
        "pairs_missing": verification.missing,
        "verification_accuracy_scored": verification.accuracy_scored,
        **{
            f"tar_at_far_{far:.0e}".replace("e-0", "e-"): tar
            for far, tar in verification.tar_at_far.items()
        },
        **evaluate_identification(embeddings, data.identities, seed=seed, keys=data.sources),
        **_clustering_metrics(embeddings, data.identities, verification.threshold),
        **few_shot_probes(embeddings, data.identities, seed=seed),
    }
    return EncoderResult(name, metrics, verification, embeddings)


class _RawFeatures:
    """Raw features of one set of faces per encoder variant, computed on first use: the raw
    and whitened variants of an encoder share one forward pass."""

    def __init__(self, faces: np.ndarray):
        self.faces = faces
        self._features: dict[tuple[int, bool, int], np.ndarray] = {}

    def __call__(self, encoder: Encoder, options: EmbedOptions) -> np.ndarray:
        # What `raw_features` reads of the options; whitening comes after.
        key = (id(encoder), options.flip, options.pool_grid)
        if key not in self._features:
            self._features[key] = raw_features(encoder, self.faces, options)
        return self._features[key]


def _fit_once(encoder: Encoder, faces: np.ndarray, fitted: set[int]) -> None:
    """Fit an estimator encoder (eigenfaces) on `faces` unless it is in `fitted` already.

    Whatever the encoder was fitted on before is replaced, so a fit on other data is never
    reused; `fitted` holds the ids of encoders this evaluation has fitted.
    """
    if not isinstance(encoder, Fittable) or id(encoder) in fitted:
        return
    if len(faces) < 2:
        raise ValueError(f"{encoder.name} is fitted on training identities: drop --all-heldout")
    encoder.fit(faces)
    fitted.add(id(encoder))


def _clustering_metrics(
    embeddings: np.ndarray, identities: np.ndarray, threshold: float
) -> dict[str, float | int]:
    """Agglomerative results under the plain names the report table uses, HDBSCAN prefixed."""
    results = evaluate_clustering(embeddings, identities, threshold)
    flat = dict(results["agglomerative"])
    flat.update({f"hdbscan_{key}": value for key, value in results["hdbscan"].items()})
    return flat


def evaluate_all(
    data: EvalData,
    encoders: list[tuple[Encoder, EmbedOptions]],
    *,
    lfw_pairs: str | Path | None = None,
    seed: int = 0,
    on_encoder: Callable[[str], None] | None = None,
    strict_pairs: bool = True,
) -> list[EncoderResult]:
    """Every encoder variant on the same pairs and trials (`strict_pairs`: see
    `evaluate_embeddings`).

    Each estimator encoder (eigenfaces) is fitted once, on the training identities; each
    forward pass runs once, however many variants (raw, whitened) share it. A variant's
    `seconds` counts what it ran itself: a whitened variant after its raw one only whitens.
    """
    pairs = evaluation_pairs(data, lfw_pairs, seed)
    heldout, train = _RawFeatures(data.faces), _RawFeatures(data.train_faces)
    fitted: set[int] = set()
    results = []
    for encoder, options in encoders:
        name = encoder.name + options.suffix()
        if on_encoder:
            on_encoder(name)
        start = time.perf_counter()
        _fit_once(encoder, data.train_faces, fitted)
        embeddings = heldout(encoder, options)
        if options.whiten:
            if len(data.train_faces) < 2:
                raise ValueError("whitening needs training identities: drop --all-heldout")
            whitening = fit_whitening(train(encoder, options), options.whiten_components)
            embeddings = whitening.apply(embeddings)
        result = evaluate_embeddings(name, embeddings, data, pairs, seed, strict_pairs)
        result.metrics["seconds"] = round(time.perf_counter() - start, 2)
        results.append(result)
    return results


@dataclass
class AttributeData:
    """Faces with attribute labels, split into a probe-training part and a held-out third."""

    faces: np.ndarray
    labels: dict[str, np.ndarray]
    train: np.ndarray  # row indices into faces
    test: np.ndarray
    source: str


def load_attribute_data(
    dataset: str | Path,
    attributes: str,
    columns: list[str] | None = None,
    test_fraction: float = 1 / 3,
    seed: int = 0,
) -> AttributeData:
    """Faces of `dataset` matched to attribute labels, with a seeded held-out share of images.

    Args:
        dataset: a prepared dataset.
        attributes: "utkface" (labels from UTKFace file names) or a CelebA-format / CSV file.
        columns: the attributes to probe (all when None).
        test_fraction: share of labelled faces held out for testing the probes.
        seed: seed of that split.
    """
    data = open_dataset(dataset)
    if attributes == "utkface":
        rows, labels = np.arange(len(data)), utkface_labels(data.sources)
    else:
        try:
            label_names, table = read_attribute_labels(attributes)
        except OSError as e:
            raise ValueError(f"{attributes}: cannot read labels ({e.strerror})") from None
        rows, labels = match_labels(data.sources, label_names, table)
    unknown = sorted(set(columns or []) - set(labels))
    if unknown:
        raise ValueError(f"no attribute {unknown}; {attributes} has {sorted(labels)}")
    labels = {k: v for k, v in labels.items() if columns is None or k in columns}
    if len(rows) < 10:
        raise ValueError(f"{dataset}: only {len(rows)} faces have labels in {attributes}")
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = round(len(rows) * test_fraction)
    return AttributeData(
        np.asarray(data.crops[rows]), labels, np.sort(order[cut:]), np.sort(order[:cut]), attributes
    )


def evaluate_attributes(
    data: AttributeData, encoders: list[tuple[Encoder, EmbedOptions]]
) -> dict[str, dict[str, dict[str, float]]]:
    """Linear-probe accuracy and AUC of every attribute for every encoder variant.

    Estimator encoders are fitted once, on the probe-training faces; each forward pass runs
    once, however many variants share it.

    Returns:
        {variant name: {attribute: its `attribute_probe` metrics plus test_faces}}.
    """
    features = _RawFeatures(data.faces)
    train_faces = data.faces[data.train]
    fitted: set[int] = set()
    results = {}
    for encoder, options in encoders:
        _fit_once(encoder, train_faces, fitted)
        x = features(encoder, options)
        if options.whiten:
            x = fit_whitening(x[data.train], options.whiten_components).apply(x)
        results[encoder.name + options.suffix()] = _probe_attributes(x, data)
    return results


def _probe_attributes(features: np.ndarray, data: AttributeData) -> dict[str, dict[str, float]]:
    results = {}
    for name, column in data.labels.items():
        known = column.astype(str) != str(MISSING)
        train, test = data.train[known[data.train]], data.test[known[data.test]]
        results[name] = attribute_probe(
            features[train], column[train], features[test], column[test]
        )
        results[name]["test_faces"] = len(test)
    return results
