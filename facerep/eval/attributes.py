"""Attribute labels for probes: CelebA's attribute file, plain CSVs and UTKFace file names.

CelebA is Liu et al. (2015), "Deep learning face attributes in the wild"; UTKFace is Zhang,
Song and Qi (2017), "Age progression/regression by conditional adversarial autoencoder", whose
file names carry the labels: `<age>_<gender>_<race>_<date>.jpg`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Life stages with enough UTKFace faces in each to probe: minors, young adults, middle age and
# older adults (the 55+ bin pools the sparse tail up to 116).
AGE_BINS = (18, 35, 55)  # group g holds ages in [AGE_BINS[g-1], AGE_BINS[g]): 0-17 ... 55+
UTKFACE_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_\d+")
MISSING = -1


def read_attribute_labels(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Image file names and one label column per attribute, from CelebA's format or a CSV.

    CelebA's `list_attr_celeba.txt`: line 1 the image count, line 2 the attribute names, then
    `000001.jpg  -1  1 ...`; its -1/1 become 0/1. A CSV has a header whose first column is the
    image file name; a column of only -1 and 1 (Kaggle's CelebA CSV) becomes 0/1 too, other
    integer columns stay integers and anything else stays text.

    Raises:
        ValueError: one line naming the file and line that is malformed.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    first = lines[0].strip() if lines else ""
    if first.isdigit():
        return _read_celeba(path, lines)
    return _read_csv(path, lines)


def utkface_labels(file_names: Sequence[str]) -> dict[str, np.ndarray]:
    """`gender` (0 male, 1 female), `age_group` and `race` (0-4) per name.

    Age groups number the AGE_BINS: 0 is ages 0-17, 1 is 18-34, 2 is 35-54 and 3 is 55 and over.

    Race follows UTKFace: 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others. A few UTKFace names
    lack a field (e.g. `61_1_20170109142408075.jpg.chip.jpg`); their columns are -1, for the
    caller to drop.
    """
    columns = {
        name: np.full(len(file_names), MISSING, np.int64)
        for name in ("gender", "age_group", "race")
    }
    for row, file_name in enumerate(file_names):
        match = UTKFACE_NAME.match(_basename(file_name))
        if match is None:
            continue
        age, gender, race = (int(field) for field in match.groups())
        columns["gender"][row] = gender
        columns["age_group"][row] = int(np.searchsorted(AGE_BINS, age, side="right"))
        columns["race"][row] = race
    return columns


def match_labels(
    dataset_sources: Sequence[str], names: Sequence[str], columns: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Dataset rows whose source file has a label, and the label columns in those rows' order.

    Matching is by file basename, so `img_align_celeba/000001.jpg` finds `000001.jpg`. Every
    face of a photo gets the photo's labels.

    Returns:
        rows: `[M]` indices into the dataset; labels: each column as `[M]`, aligned to rows.
    """
    label_row: dict[str, int] = {}
    for i, name in enumerate(names):
        key = _basename(name)
        if key in label_row:
            raise ValueError(f"labels name {key} twice (rows {label_row[key] + 1} and {i + 1})")
        label_row[key] = i
    pairs = [(row, label_row.get(_basename(source))) for row, source in enumerate(dataset_sources)]
    rows = np.array([row for row, hit in pairs if hit is not None], dtype=np.int64)
    hits = np.array([hit for _, hit in pairs if hit is not None], dtype=np.int64)
    return rows, {name: np.asarray(column)[hits] for name, column in columns.items()}


def _read_celeba(path: Path, lines: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    if len(lines) < 2:
        raise ValueError(f"{path}:2: attribute names missing after the image count")
    attributes = lines[1].split()
    names, values = [], []
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != len(attributes) + 1:
            raise ValueError(
                f"{path}:{number}: expected a file name and {len(attributes)} "
                f"attribute values, found {len(fields)} fields"
            )
        if any(field not in ("-1", "1") for field in fields[1:]):
            raise ValueError(f"{path}:{number}: attribute values must be -1 or 1")
        names.append(fields[0])
        values.append([field == "1" for field in fields[1:]])
    if int(lines[0]) != len(names):
        raise ValueError(f"{path}:1: says {int(lines[0])} images but the file lists {len(names)}")
    table = np.array(values, dtype=np.int64).reshape(len(names), len(attributes))
    return names, {name: table[:, j] for j, name in enumerate(attributes)}


def _read_csv(path: Path, lines: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    rows = list(csv.reader(lines))
    if not rows or len(rows[0]) < 2:
        raise ValueError(f"{path}:1: expected a header: image file name, then attribute names")
    header = [field.strip() for field in rows[0]]
    names, cells = [], []
    for number, row in enumerate(rows[1:], start=2):
        if not any(field.strip() for field in row):
            continue
        if len(row) != len(header):
            raise ValueError(
                f"{path}:{number}: expected {len(header)} fields like the header, found {len(row)}"
            )
        if any(not field.strip() for field in row):
            raise ValueError(f"{path}:{number}: empty field")
        names.append(row[0].strip())
        cells.append([field.strip() for field in row[1:]])
    table = np.array(cells, dtype=object).reshape(len(names), len(header) - 1)
    return names, {name: _typed_column(table[:, j]) for j, name in enumerate(header[1:])}


def _typed_column(cells: np.ndarray) -> np.ndarray:
    try:
        numbers = np.array([int(cell) for cell in cells], dtype=np.int64)
    except ValueError:
        return cells.astype(str).astype(object)
    if len(numbers) and np.isin(numbers, (-1, 1)).all():
        return (numbers == 1).astype(np.int64)  # CelebA's -1/1 flags, as 0/1
    return numbers


def _basename(path: str) -> str:
    # Split on both separators, so sources recorded on Windows match names from a Linux file.
    return str(path).replace("\\", "/").rsplit("/", 1)[-1]
