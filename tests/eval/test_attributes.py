"""Attribute label files (CelebA, CSV), UTKFace names, and matching labels to dataset rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerep.eval.attributes import match_labels, read_attribute_labels, utkface_labels

CELEBA = """3
5_o_Clock_Shadow Arched_Eyebrows Male
000001.jpg -1  1 -1
000002.jpg  1 -1  1
000003.jpg -1 -1  1
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    """`text` written to `tmp_path/name`."""
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_celeba_attribute_file(tmp_path):
    names, columns = read_attribute_labels(write(tmp_path, "list_attr_celeba.txt", CELEBA))
    assert names == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert list(columns) == ["5_o_Clock_Shadow", "Arched_Eyebrows", "Male"]
    assert columns["Male"].tolist() == [0, 1, 1]  # -1/1 become 0/1
    assert columns["Arched_Eyebrows"].tolist() == [1, 0, 0]


@pytest.mark.parametrize(
    ("bad_line", "line", "message"),
    [
        ("000002.jpg  1 -1\n", 4, "found 3 fields"),
        ("000002.jpg  1 -1 2\n", 4, "must be -1 or 1"),
    ],
)
def test_celeba_malformed_line_names_file_and_line(tmp_path, bad_line, line, message):
    lines = CELEBA.splitlines(keepends=True)
    lines[3] = bad_line
    path = write(tmp_path, "list_attr_celeba.txt", "".join(lines))
    with pytest.raises(ValueError, match=rf"list_attr_celeba.txt:{line}: .*{message}"):
        read_attribute_labels(path)


def test_celeba_count_mismatch_names_line_one(tmp_path):
    path = write(tmp_path, "list_attr_celeba.txt", CELEBA.replace("3\n", "4\n", 1))
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt:1: says 4 images"):
        read_attribute_labels(path)


def test_reads_csv_with_flags_integers_and_text(tmp_path):
    text = "image_id,Male,age,hair\na.jpg,1,31,brown\nb.jpg,-1,7,black\n"
    names, columns = read_attribute_labels(write(tmp_path, "labels.csv", text))
    assert names == ["a.jpg", "b.jpg"]
    assert columns["Male"].tolist() == [1, 0]  # Kaggle's CelebA CSV keeps -1/1 flags
    assert columns["age"].tolist() == [31, 7]
    assert columns["hair"].tolist() == ["brown", "black"]


def test_csv_malformed_line_names_file_and_line(tmp_path):
    path = write(tmp_path, "labels.csv", "image_id,Male\na.jpg,1\nb.jpg,1,extra\n")
    with pytest.raises(ValueError, match=r"labels.csv:3: expected 2 fields"):
        read_attribute_labels(path)


def test_utkface_names_parse_into_gender_age_group_race():
    names = [
        "UTKFace/25_1_2_20170116174525125.jpg.chip.jpg",
        "17_0_0_20170110225034233.jpg",
        "18_0_4_20170110225034233.jpg",
        "35_1_1_20170110225034233.jpg",
        "55_0_3_20170110225034233.jpg",
        "61_1_20170109142408075.jpg.chip.jpg",  # a real UTKFace name missing its race
        "portrait.jpg",
    ]
    columns = utkface_labels(names)
    assert columns["gender"].tolist() == [1, 0, 0, 1, 0, -1, -1]
    assert columns["age_group"].tolist() == [1, 0, 1, 2, 3, -1, -1]
    assert columns["race"].tolist() == [2, 0, 4, 1, 3, -1, -1]


def test_match_labels_aligns_by_basename():
    sources = ["celeba/000002.jpg", "other/unknown.jpg", "000001.jpg", "celeba/000002.jpg"]
    names = ["000001.jpg", "000002.jpg"]
    rows, labels = match_labels(sources, names, {"Male": np.array([1, 0])})
    assert rows.tolist() == [0, 2, 3]  # two faces of 000002.jpg both get its labels
    assert labels["Male"].tolist() == [0, 1, 0]


def test_match_labels_refuses_duplicate_names():
    with pytest.raises(ValueError, match=r"a\.jpg twice"):
        match_labels(["a.jpg"], ["x/a.jpg", "y/a.jpg"], {"Male": np.array([0, 1])})
