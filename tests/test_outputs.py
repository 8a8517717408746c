"""The output-folder rule: never into an input, never over files facerep did not write."""

from __future__ import annotations

from pathlib import Path

import pytest

from facerep.outputs import MARKER_FILE, OutputError, check_output, claim_output


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    (tmp_path / "x" / "s1").mkdir(parents=True)
    (tmp_path / "x" / "s1" / "1.pgm").write_bytes(b"P5 photo")
    return tmp_path / "x"


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        ("x", "is the input"),
        (".", "contains the input"),
        ("x/s1", "is inside the input"),
        ("x/new", "is inside the input"),
    ],
)
def test_an_output_never_overlaps_an_input(
    photos: Path, tmp_path: Path, out: str, reason: str
) -> None:
    with pytest.raises(OutputError, match=reason):
        check_output(tmp_path / out, [photos], kind="cluster", overwrite=True)
    assert (photos / "s1" / "1.pgm").read_bytes() == b"P5 photo"


def test_symlinks_are_resolved_on_both_sides(photos: Path, tmp_path: Path) -> None:
    (tmp_path / "alias").symlink_to(photos)
    with pytest.raises(OutputError, match="is the input"):
        check_output(tmp_path / "alias", [photos], kind="prepare")
    with pytest.raises(OutputError, match="is inside the input"):
        check_output(tmp_path / "alias" / "out", [photos], kind="prepare")
    # A folder of links to photos elsewhere holds the links themselves: they are inputs too.
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "a.pgm").symlink_to(photos / "s1" / "1.pgm")
    with pytest.raises(OutputError, match="contains the input"):
        check_output(tmp_path, [tmp_path / "linked" / "a.pgm"], kind="cluster")


def test_a_foreign_folder_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.pdf").write_text("years of work")
    for kind in ("cluster", "prepare", "pretrain", "eval"):
        with pytest.raises(OutputError, match="not written by facerep"):
            check_output(tmp_path / "mine", kind=kind, overwrite=True)
    assert (tmp_path / "mine" / "thesis.pdf").exists()


def test_facerep_folders_are_recognised_by_marker_or_signature(tmp_path: Path) -> None:
    claimed = claim_output(tmp_path / "new", kind="eval")
    assert (claimed / MARKER_FILE).is_file()
    (claimed / "report.md").write_text("x")
    assert check_output(claimed, kind="eval") == claimed
    with pytest.raises(OutputError, match="not written by facerep prepare"):
        check_output(claimed, kind="prepare")
    old = tmp_path / "old-dataset"  # written before markers existed
    old.mkdir()
    (old / "manifest.sqlite").write_bytes(b"")
    assert check_output(old, kind="prepare") == old


def test_a_replaced_folder_needs_overwrite_and_only_facerep_entries(tmp_path: Path) -> None:
    out = claim_output(tmp_path / "people", kind="cluster")
    (out / "person-001").mkdir()
    (out / "clusters.csv").write_text("source\n")
    with pytest.raises(OutputError, match="pass --overwrite"):
        check_output(out, kind="cluster")
    assert check_output(out, kind="cluster", overwrite=True) == out
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"notes\.txt was not written by facerep"):
        check_output(out, kind="cluster", overwrite=True)


def test_a_file_is_not_an_output_folder(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(OutputError, match="taken: exists and is not a folder"):
        check_output(tmp_path / "taken", kind="eval")


def test_inputs_that_are_not_on_disk_are_skipped(tmp_path: Path) -> None:
    assert check_output(tmp_path / "o", ["builtin:lfw-sample"], kind="prepare") == tmp_path / "o"
