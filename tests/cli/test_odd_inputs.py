"""prepare, gallery add and cluster walk a folder by one set of rules, through the real CLI: a
file name that is not UTF-8, a link loop and a GIF are handled alike, and no one file sinks a run.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from tests.cli.test_app import facerep

# A Latin-1 file name: the byte 0xff is not UTF-8 (Python holds it as the surrogate \udcff).
ODD = os.fsdecode(b"x\xff.pgm")
SHOWN = "x\\xff.pgm"  # how every command writes and prints it


@pytest.fixture(scope="module")
def photos(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ORL people, one photo with a non-UTF-8 name, one GIF, a link loop and a folder loop."""
    root = tmp_path_factory.mktemp("odd") / "photos"
    orl = shared_data / "orl"
    for person in ("s1", "s2"):
        (root / person).mkdir(parents=True)
        for n in (1, 2):
            shutil.copy(orl / person / f"{n}.pgm", root / person / f"{n}.pgm")
    shutil.copy(orl / "s1" / "3.pgm", root / "s1" / ODD)
    Image.open(orl / "s2" / "3.pgm").save(root / "s2" / "wave.gif")
    (root / "s2" / "loop.jpg").symlink_to("loop.jpg")
    (root / "s2" / "up").symlink_to("..")
    return root


def test_prepare(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = facerep("prepare", str(photos), str(out), "--json")
    assert result.returncode == 1, result.stderr  # the loop is unreadable; the rest go on
    summary = json.loads(result.stdout)
    assert summary["outcomes"] == {"ok": 6, "unreadable": 1, "ignored": 1}
    assert summary["errors"] == [f"{photos}/s2/loop.jpg: unreadable (Too many levels of "
                                 "symbolic links)"]
    with sqlite3.connect(out / "manifest.sqlite") as db:
        stored = dict(db.execute("SELECT key, status FROM files"))
    assert stored[f"s1/{SHOWN}"] == "ok" and stored["s2/wave.gif"] == "ok"
    report = list(csv.reader((out / "report.csv").read_text("utf-8").splitlines()))
    assert [row[1:] for row in report[1:]] == [
        ["ignored", "link to a folder above it (a loop)"],
        ["unreadable", "unreadable (Too many levels of symbolic links)"],
    ]
    again = facerep("prepare", str(photos), str(out))  # the escaped name is recognised again
    assert again.returncode == 1 and "6 already done" in again.stdout, again.stdout
    assert "Traceback" not in again.stderr and SHOWN not in again.stderr


def test_gallery_add(photos: Path, tmp_path: Path) -> None:
    gallery = tmp_path / "g"
    result = facerep("gallery", "add", str(gallery), str(photos), "--json")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["added"] == 6 and summary["labels"] == {"s1": 3, "s2": 3}
    assert [(Path(f["source"]).name, f["reason"]) for f in summary["failures"]] == [
        ("loop.jpg", "unreadable (Too many levels of symbolic links)")
    ]
    with sqlite3.connect(gallery / "gallery.sqlite") as db:
        sources = {Path(source).name for (source,) in db.execute("SELECT source FROM faces")}
    assert {SHOWN, "wave.gif"} <= sources
    text = facerep("gallery", "add", str(gallery), str(photos))  # tables and messages print
    assert text.returncode == 1 and "6 already enrolled" in text.stdout
    assert "loop.jpg: unreadable" in text.stderr
    found = facerep("search", str(gallery), str(photos / "s1" / ODD), "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["source"] == f"{photos}/s1/{SHOWN}"


def test_cluster(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "people"
    result = facerep("cluster", str(photos), "--out", str(out), "--json")
    assert "Traceback" not in result.stderr and result.returncode in (0, 1), result.stderr
    summary = json.loads(result.stdout)
    assert summary["faces"] == 6 and len(summary["people"]) == 2
    assert [(Path(f["source"]).name, f["reason"]) for f in summary["failures"]] == [
        ("loop.jpg", "unreadable (Too many levels of symbolic links)")
    ]
    rows = list(csv.DictReader((out / "clusters.csv").read_text("utf-8").splitlines()))
    placed = {row["source"].removeprefix(f"{photos}/"): row["folder"] for row in rows}
    assert placed[f"s1/{SHOWN}"] == placed["s1/1.pgm"] != placed["s2/wave.gif"]
    linked = out / placed[f"s1/{SHOWN}"] / SHOWN
    assert linked.read_bytes() == (photos / "s1" / ODD).read_bytes()


def test_what_is_printed_from_user_data_is_escaped(photos: Path, tmp_path: Path) -> None:
    # A file name with an ANSI escape and rich markup: printed as written, never interpreted.
    folder = tmp_path / "odd names"
    folder.mkdir()
    (folder / "a\x1b[31m[red].jpg").write_bytes(b"not an image")
    prepared = facerep("prepare", str(folder), str(tmp_path / "data"))
    assert prepared.returncode == 1 and "Traceback" not in prepared.stderr, prepared.stderr
    assert "a\\x1b[31m[red].jpg: not an image" in prepared.stderr
    assert "\x1b" not in prepared.stderr + prepared.stdout
    missing = facerep("prepare", str(tmp_path / "[/x]"), str(tmp_path / "data"))
    assert missing.returncode == 2 and "[/x]: no such folder" in missing.stderr, missing.stderr
    # A label that is markup (a valid label) lists, searches and removes as written.
    gallery = str(tmp_path / "g")
    added = facerep("gallery", "add", gallery, str(photos / "s1"), "--label", "[/x] Zoë")
    assert added.returncode == 0, added.stderr
    listed = facerep("gallery", "list", gallery)
    assert listed.returncode == 0 and "[/x] Zoë" in listed.stdout, listed.stderr
    removed = facerep("gallery", "remove", gallery, "--label", "[/x] Zoë", "--no-compact")
    assert removed.returncode == 0 and "removed 3 faces (label '[/x] Zoë')" in removed.stdout


@pytest.mark.parametrize(
    ("label", "shown"),
    [("\x1b[2Jeve", "'\\x1b[2Jeve'"), ("x" * 100_000, "… (100,000 characters)")],
)
def test_a_bad_label_is_refused_in_one_short_line_before_any_work(
    photos: Path, tmp_path: Path, label: str, shown: str
) -> None:
    gallery = tmp_path / "g"
    result = facerep("gallery", "add", str(gallery), str(photos / "s1"), "--label", label)
    assert result.returncode == 2 and shown in result.stderr, result.stderr
    assert len(result.stderr) < 300 and "\x1b" not in result.stderr
    assert "no control characters" in result.stderr
    assert not gallery.exists()  # refused before the gallery was made or a face detected
