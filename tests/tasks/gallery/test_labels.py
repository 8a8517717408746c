"""Labels: the gallery's rule refuses control characters, and a bad label is quoted short."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from facerep.tasks.enrol import labelled_photos
from facerep.tasks.gallery import is_valid_label
from facerep.tasks.gallery.labels import check_label, quote_label

REFUSED = [
    "",
    "   ",
    "two\nlines",
    "nul\0",
    "red\x1b[31m",  # an ANSI escape would recolour (or clear) the terminal of whoever lists it
    "tab\there",
    "bidi\u202eevil",  # a right-to-left override reorders the printed line
    os.fsdecode(b"Jos\xe9"),  # a surrogate escape: a folder name's byte that is not UTF-8
    "x" * 201,
]


@pytest.mark.parametrize("label", REFUSED)
def test_control_characters_and_blank_or_long_labels_are_refused(label: str) -> None:
    assert not is_valid_label(label)
    with pytest.raises(ValueError, match="no control characters"):
        check_label(label)


NAMES = [
    "Zoë O'Brien", "李小龙", "José (2019)", "[/b] tag", "x" * 200,
    # A Persian name (Mohammad-Reza) with the zero-width non-joiner it is spelled with.
    "\u0645\u062d\u0645\u062f\u200c\u0631\u0636\u0627",
    "\U0001f469\u200d\U0001f4bb",  # an emoji sequence joined by a zero-width joiner
]  # fmt: skip


@pytest.mark.parametrize("label", NAMES)
def test_names_people_have_are_labels(label: str) -> None:
    assert is_valid_label(label) and check_label(label) == label


def test_a_long_label_is_quoted_short_with_its_length() -> None:
    quoted = quote_label("\x1b[2J" + "x" * 100_000)
    assert quoted.startswith("'\\x1b[2Jxxx") and quoted.endswith("… (100,004 characters)")
    assert len(quoted) < 80 and "\x1b" not in quoted


def test_person_folders_are_checked_before_any_photo_is_read(tmp_path: Path) -> None:
    bad = tmp_path / "people" / "eve\x1b[31m"
    bad.mkdir(parents=True)
    (bad / "1.jpg").write_bytes(b"not even an image")
    with pytest.raises(ValueError, match=r"person folder 'eve\\x1b\[31m': must be"):
        labelled_photos(tmp_path / "people")
    with pytest.raises(ValueError, match=r"label 'a\\tb': must be"):
        labelled_photos(tmp_path / "people", "a\tb")
