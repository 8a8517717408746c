"""The report's tables: one attribute-probe table for the report, the CLI and the bench."""

from __future__ import annotations

from facerep.eval.report import attribute_table, markdown_table

PROBES = {
    "pixels": {
        "gender": {"accuracy": 0.75, "majority_accuracy": 0.5, "roc_auc": 0.8125, "test_faces": 9},
        "age_group": {"accuracy": 0.5, "majority_accuracy": 0.4, "roc_auc": None, "test_faces": 8},
    },
    "dlib+whiten": {
        "gender": {"accuracy": 1.0, "majority_accuracy": 0.5, "roc_auc": 1.0, "test_faces": 9},
    },
}


def test_attribute_table_has_a_row_per_variant_and_attribute() -> None:
    header, rows = attribute_table(PROBES)
    assert header == ["encoder", "attribute", "accuracy", "majority", "AUC", "test faces"]
    assert rows == [
        ["pixels", "gender", "75.00%", "50.00%", "0.812", "9"],
        ["pixels", "age_group", "50.00%", "40.00%", "-", "8"],
        ["dlib+whiten", "gender", "100.00%", "50.00%", "1.000", "9"],
    ]
    header, rows = attribute_table(PROBES, [("roc_auc", "AUC", "{:.4f}")])
    assert header == ["encoder", "attribute", "AUC"] and rows[0] == ["pixels", "gender", "0.8125"]


def test_markdown_table() -> None:
    assert markdown_table(["a", "b"], [["1", "2"]]) == ["| a | b |", "|---|---|", "| 1 | 2 |"]
