"""The evaluation report: results.json, a Markdown and an HTML page, and their figures.

Figures: ROC curves of every encoder on one plot, a 2-D t-SNE of each encoder's embeddings
coloured by identity, and nearest-neighbour strips (a query face, then its closest faces,
framed green when they are the same person and red when not).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facerep.files import atomic_write
from facerep.outputs import claim_output

if TYPE_CHECKING:
    from facerep.eval.harness import EncoderResult, EvalData

COLUMNS = [  # (key, header, format)
    ("dim", "dim", "{:d}"),
    ("verification_accuracy", "verif. acc", "{:.2%}"),
    ("verification_std", "± std", "{:.2%}"),
    ("roc_auc", "AUC", "{:.3f}"),
    ("eer", "EER", "{:.2%}"),
    ("tar_at_far_1e-2", "TAR@1e-2", "{:.2%}"),
    ("rank1", "rank-1", "{:.2%}"),
    ("rank5", "rank-5", "{:.2%}"),
    ("pairwise_f1", "pair F1", "{:.3f}"),
    ("bcubed_f1", "BCubed F1", "{:.3f}"),
    ("nmi", "NMI", "{:.3f}"),
    ("clusters", "clusters", "{:d}"),
    ("linear_1shot", "1-shot lin", "{:.2%}"),
    ("linear_5shot", "5-shot lin", "{:.2%}"),
    ("knn_5shot", "5-shot kNN", "{:.2%}"),
]
ATTRIBUTE_COLUMNS = [  # (key, header, format) of the attribute-probe table
    ("accuracy", "accuracy", "{:.2%}"),
    ("majority_accuracy", "majority", "{:.2%}"),
    ("roc_auc", "AUC", "{:.3f}"),
    ("test_faces", "test faces", "{:d}"),
]
STRIP_QUERIES = 6
STRIP_NEIGHBOURS = 5


# The terminal shows the headline columns; the reports show them all.
SUMMARY_KEYS = (
    "verification_accuracy",
    "verification_std",
    "roc_auc",
    "tar_at_far_1e-2",
    "rank1",
    "pairwise_f1",
    "nmi",
    "linear_5shot",
)


def results_table(
    results: list[EncoderResult], keys: tuple[str, ...] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table (all columns, or those in `keys`)."""
    columns = [c for c in COLUMNS if keys is None or c[0] in keys]
    header = ["encoder", *(title for _, title, _ in columns)]
    rows = [
        [r.name, *(_format(r.metrics.get(key), fmt) for key, _, fmt in columns)] for r in results
    ]
    return header, rows


def attribute_table(
    results: dict[str, dict[str, dict[str, float]]],
    columns: list[tuple[str, str, str]] = ATTRIBUTE_COLUMNS,
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the attribute-probe table: a row per encoder variant and attribute.

    Args:
        results: {variant: {attribute: probe metrics}}, as `evaluate_attributes` returns.
        columns: (key, header, format) of each metric column.
    """
    header = ["encoder", "attribute", *(title for _, title, _ in columns)]
    rows = [
        [encoder, name, *(_format(metrics.get(key), fmt) for key, _, fmt in columns)]
        for encoder, per_attribute in results.items()
        for name, metrics in per_attribute.items()
    ]
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _format(value: object, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def write_report(results: list[EncoderResult], data: EvalData, out: str | Path) -> Path:
    """Write results.json, report.md, report.html and the figures into `out`."""
    out = claim_output(out, kind="eval")
    payload = {r.name: {**r.metrics, "split": data.split} for r in results}
    with atomic_write(out / "results.json", "w") as f:
        json.dump(payload, f, indent=2, default=float)
    figures = {
        "ROC curves": plot_roc(results, out / "roc.png"),
        "t-SNE of the held-out faces": plot_tsne(results, data, out / "tsne.png"),
    }
    for result in results:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in result.name)
        figures[f"Nearest neighbours: {result.name}"] = plot_neighbours(
            result, data, out / f"neighbours_{safe}.png"
        )
    _write_markdown(results, data, figures, out / "report.md")
    _write_html(results, data, figures, out / "report.html")
    return out


def _intro(data: EvalData) -> str:
    split = data.split
    how = (
        "every identity held out"
        if split["all_heldout"]
        else f"seeded identity-disjoint split (seed {split['seed']}, "
        f"{1 - split['train_fraction']:.0%} of identities held out)"
    )
    return (
        f"Dataset `{split['dataset']}`: {len(split['heldout_identities'])} held-out identities, "
        f"{split['heldout_faces']} faces; {how}. Training identities: "
        f"{len(split['train_identities'])} ({split['train_faces']} faces), used only to fit "
        "eigenfaces and whitening."
    )


def pairs_note(results: list[EncoderResult]) -> str | None:
    """One sentence on the pairs of an official list that could not be scored, if any."""
    verification = results[0].verification if results else None
    if verification is None or not verification.missing:
        return None
    how = (
        "counted as errors, as a score on the whole list would"
        if verification.strict
        else "dropped from the score"
    )
    return (
        f"Pairs: {verification.n_pairs} scored; {verification.missing} of the list could not "
        f"be, as a photo gave no face: {how} (accuracy on the scored pairs alone: "
        f"{verification.accuracy_scored:.2%} for {results[0].name})."
    )


def _write_markdown(results, data, figures: dict[str, Path], path: Path) -> None:
    note = pairs_note(results)
    lines = ["# facerep evaluation", "", _intro(data), "", *([note, ""] if note else [])]
    lines += markdown_table(*results_table(results))
    lines += [
        "",
        "Verification: 10-fold accuracy (threshold chosen on 9 folds). Clustering: "
        "agglomerative, cosine, at the verification threshold. Few-shot: logistic "
        "regression and kNN on k faces per identity.",
        "",
    ]
    for title, figure in figures.items():
        lines += [f"## {title}", "", f"![{title}]({figure.name})", ""]
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines))


def _write_html(results, data, figures: dict[str, Path], path: Path) -> None:
    header, rows = results_table(results)
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    images = "".join(
        f"<h2>{html.escape(title)}</h2><img src='{figure.name}' alt=''>"
        for title, figure in figures.items()
    )
    note = pairs_note(results)
    page = (
        "<!doctype html><meta charset='utf-8'><title>facerep evaluation</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child{text-align:left}img{max-width:100%}</style>"
        f"<h1>facerep evaluation</h1><p>{html.escape(_intro(data))}</p>"
        + (f"<p>{html.escape(note)}</p>" if note else "")
        + f"<table><tr>{cells}</tr>{body}</table>{images}"
    )
    with atomic_write(path, "w") as f:
        f.write(page)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", bbox_inches="tight")
    _pyplot().close(figure)
    return path


def plot_roc(results: list[EncoderResult], path: Path) -> Path:
    """Every encoder's ROC curve on one log-FAR plot."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4.5), dpi=110)
    for result in results:
        v = result.verification
        axis.plot(np.maximum(v.fpr, 1e-4), v.tpr, label=f"{result.name} (AUC {v.roc_auc:.3f})")
    axis.set_xscale("log")
    axis.set_xlim(1e-4, 1)
    axis.set_xlabel("false accept rate")
    axis.set_ylabel("true accept rate")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8, loc="lower right")
    return _save(figure, path)


def plot_tsne(results: list[EncoderResult], data: EvalData, path: Path) -> Path:
    """A t-SNE map of each encoder's held-out embeddings, one colour per identity."""
    from sklearn.manifold import TSNE

    plt = _pyplot()
    colours = np.unique(data.identities.astype(str), return_inverse=True)[1]
    figure, axes = plt.subplots(
        1, len(results), figsize=(4 * len(results), 4), dpi=100, squeeze=False
    )
    for axis, result in zip(axes[0], results, strict=True):
        perplexity = max(2.0, min(30.0, (len(result.embeddings) - 1) / 3))
        points = TSNE(
            2, perplexity=perplexity, init="pca", random_state=0, metric="cosine"
        ).fit_transform(result.embeddings)
        axis.scatter(points[:, 0], points[:, 1], c=colours, cmap="tab20", s=8)
        axis.set_title(result.name, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    return _save(figure, path)


def plot_neighbours(result: EncoderResult, data: EvalData, path: Path) -> Path:
    """Rows of a query face followed by its nearest held-out faces, framed by correctness."""
    plt = _pyplot()
    rng = np.random.default_rng(0)
    queries = rng.choice(len(data.faces), size=min(STRIP_QUERIES, len(data.faces)), replace=False)
    similarity = result.embeddings[queries] @ result.embeddings.T
    similarity[np.arange(len(queries)), queries] = -np.inf
    neighbours = np.argsort(-similarity, axis=1)[:, :STRIP_NEIGHBOURS]
    figure, axes = plt.subplots(
        len(queries),
        STRIP_NEIGHBOURS + 1,
        figsize=(1.3 * (STRIP_NEIGHBOURS + 1), 1.3 * len(queries)),
        dpi=90,
        squeeze=False,
    )
    for row, query in enumerate(queries):
        _show_face(axes[row][0], data.faces[query], "black")
        for col, index in enumerate(neighbours[row], start=1):
            same = data.identities[index] == data.identities[query]
            _show_face(axes[row][col], data.faces[index], "green" if same else "red")
    axes[0][0].set_title("query", fontsize=8)
    return _save(figure, path)


def _show_face(axis, face: np.ndarray, colour: str) -> None:
    axis.imshow(face)
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)


def write_attribute_report(
    results: dict[str, dict[str, dict[str, float]]], source: str, out: str | Path
) -> Path:
    """attributes.json and attributes.md: probe accuracy and AUC per encoder and attribute."""
    out = claim_output(out, kind="eval")
    with atomic_write(out / "attributes.json", "w") as f:
        json.dump({"labels": source, "results": results}, f, indent=2, default=float)
    lines = [
        "# facerep attribute probes",
        "",
        f"Labels: `{source}`. Linear probe (logistic regression on standardised "
        "embeddings), a seeded third of the faces held out.",
        "",
        *markdown_table(*attribute_table(results)),
    ]
    with atomic_write(out / "attributes.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    return out / "attributes.md"
