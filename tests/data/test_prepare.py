"""Ingest: faces found and stored, incremental re-runs, duplicates, bad files, kill -9 safety."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerep.data import prepare
from facerep.data.info import describe_dataset
from facerep.data.prepare import PrepareOptions, prepare_dataset
from facerep.data.store import FAILED_STATUSES, MANIFEST_FILE, DatasetError, open_dataset
from facerep.faces.find import find_faces
from facerep.images import load_image
from tests.conftest import write_face_folder

SMALL = PrepareOptions(size=32)


def read_report(out: Path) -> dict[str, tuple[str, str]]:
    with open(out / "report.csv") as f:
        return {Path(r["path"]).name: (r["status"], r["reason"]) for r in csv.DictReader(f)}


@pytest.fixture
def faces_dir(tmp_path: Path, lfw_faces: np.ndarray) -> Path:
    """12 real LFW faces in 4 identity folders."""
    return write_face_folder(tmp_path / "src", lfw_faces[:12], per_identity=3)


def test_faces_are_found_aligned_and_labelled(faces_dir: Path, tmp_path: Path) -> None:
    summary = prepare_dataset(faces_dir, tmp_path / "out", SMALL)
    data = open_dataset(tmp_path / "out")
    assert summary.outcomes["ok"] >= 10 and len(data) == summary.outcomes["ok"]
    assert set(data.identities) <= {"id0", "id1", "id2", "id3"}
    assert data.crops.shape[1:] == (32, 32, 3) and data.crops.std() > 10
    # Landmarks are stored in crop pixels: they sit near the alignment template.
    template = np.array(open_dataset(tmp_path / "out").meta["template"])
    assert np.abs(data.landmarks - template).mean() < 3.0


def test_rerun_skips_done_files_and_completes_new_ones(faces_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = prepare_dataset(faces_dir, out, SMALL)
    again = prepare_dataset(faces_dir, out, SMALL)
    assert again.already_done == 12 and again.faces_added == 0
    shutil.copy(faces_dir / "id0" / "0.png", faces_dir / "id0" / "copy.png")
    Image.fromarray(np.fliplr(load_image(faces_dir / "id1" / "0.png"))).save(
        faces_dir / "id1" / "new.png"
    )
    third = prepare_dataset(faces_dir, out, SMALL)
    assert third.already_done == 12
    assert third.outcomes == {"duplicate": 1, "ok": 1}  # a copy of an earlier run's file
    assert third.faces_added == 1
    assert len(open_dataset(out)) == first.total_faces + 1
    assert prepare_dataset(faces_dir, out, SMALL).already_done == 14


def test_rerun_with_another_spelling_of_the_source_skips_everything(
    faces_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_dataset(faces_dir, tmp_path / "out", SMALL)
    monkeypatch.chdir(faces_dir.parent)
    again = prepare_dataset(Path("src"), tmp_path / "out", SMALL)
    assert again.already_done == 12 and again.outcomes.get("duplicate", 0) == 0


def test_a_run_adding_faces_found_or_cut_otherwise_is_refused(
    tmp_path: Path, lfw_faces: np.ndarray
) -> None:
    src, out = write_face_folder(tmp_path / "src", lfw_faces[:1], per_identity=1), tmp_path / "out"
    options = PrepareOptions(size=32, upsample=0, min_face=0.0, faces="auto")
    prepare_dataset(src, out, options)
    meta = open_dataset(out).meta
    recorded = dict(size=32, padding=0.25, detector="hog", upsample=0, min_face=0.0, faces="auto")
    assert {key: meta[key] for key in recorded} == recorded and "max_pixels" not in meta
    for change, message in (
        ({"upsample": 1}, "prepared with upsample=0, not 1"),
        ({"min_face": 20.0}, "prepared with min_face=0.0, not 20.0"),
        ({"faces": "all"}, 'prepared with faces="auto", not "all"'),
        ({"padding": 0.3}, "prepared with padding=0.25, not 0.3"),
    ):
        with pytest.raises(DatasetError, match=re.escape(message)):
            prepare_dataset(src, out, replace(options, **change))
    # The same settings spelled otherwise, and another decoding limit, add to it.
    same = replace(options, min_face=0, max_pixels=options.max_pixels // 2)
    assert prepare_dataset(src, out, same).already_done == 1


def test_exact_duplicates_are_kept_once_and_reported(faces_dir: Path, tmp_path: Path) -> None:
    shutil.copy(faces_dir / "id0" / "0.png", faces_dir / "id2" / "dup.png")
    summary = prepare_dataset(faces_dir, tmp_path / "out", SMALL)
    assert summary.outcomes["duplicate"] == 1
    status, reason = read_report(tmp_path / "out")["dup.png"]
    assert status == "duplicate" and reason.startswith("same content as") and "0.png" in reason
    assert list(open_dataset(tmp_path / "out").sources).count(str(faces_dir / "id2/dup.png")) == 0


def test_every_bad_file_is_reported_and_the_rest_processed(faces_dir: Path, tmp_path: Path) -> None:
    (faces_dir / "id0" / "empty.jpg").write_bytes(b"")
    (faces_dir / "id0" / "text.png").write_text("not a picture")
    good = (faces_dir / "id1" / "0.png").read_bytes()
    (faces_dir / "id1" / "cut.png").write_bytes(good[: len(good) // 2])
    Image.new("RGB", (300, 300), (128, 128, 128)).save(faces_dir / "id2" / "blank.png")
    Image.new("RGB", (6, 6)).save(faces_dir / "id2" / "tiny.png")
    Image.new("RGB", (2000, 1000)).save(faces_dir / "id3" / "huge.png")
    (faces_dir / "notes.txt").write_text("hello")
    shutil.copy(faces_dir / "id0" / "0.png", faces_dir / "id3" / "copy.png")
    options = PrepareOptions(size=32, max_pixels=1_000_000)
    summary = prepare_dataset(faces_dir, tmp_path / "out", options)
    report = read_report(tmp_path / "out")
    assert report["empty.jpg"][0] == "corrupt" and "empty" in report["empty.jpg"][1]
    assert report["text.png"] == ("corrupt", "not an image (unrecognised format)")
    assert report["cut.png"][0] == "corrupt" and "truncated" in report["cut.png"][1]
    assert report["blank.png"] == ("no_face", "no face found")
    assert report["tiny.png"] == ("too_small", "image too small to hold a face (6x6 px)")
    assert report["huge.png"][0] == "refused" and "exceeds the limit" in report["huge.png"][1]
    assert report["notes.txt"] == ("ignored", "not an image file name")
    assert report["copy.png"][0] == "duplicate"
    assert summary.outcomes["ok"] >= 10  # the good faces were all still processed
    assert len(summary.errors) == 4 and all("\n" not in e for e in summary.errors)
    # Six inputs failed (a duplicate and a README did not), and `info` says the same.
    assert summary.failed == 6 + (12 - summary.outcomes["ok"])
    assert summary.duplicates == 1 and summary.outcomes["ignored"] == 1
    info = describe_dataset(tmp_path / "out")
    assert info["failures"] == summary.failed
    assert info["failures_by_reason"] == {
        status: n for status, n in summary.outcomes.items() if status in FAILED_STATUSES
    }
    assert info["duplicates"] == summary.duplicates and info["ignored"] == 1
    assert info["images"] == summary.outcomes["ok"] and info["faces"] == summary.total_faces


def test_two_workers_give_the_same_dataset_as_one(
    faces_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prepare, "FILES_PER_WORKER", 1)  # use the pool even for 12 files
    shutil.copy(faces_dir / "id0" / "0.png", faces_dir / "id3" / "9.png")  # a duplicate
    (faces_dir / "id1" / "bad.jpg").write_bytes(b"not a jpeg")
    for workers, out in ((1, "one"), (2, "two")):
        prepare_dataset(faces_dir, tmp_path / out, SMALL, workers=workers, commit_every=3)
    one, two = open_dataset(tmp_path / "one"), open_dataset(tmp_path / "two")
    assert list(one.sources) == list(two.sources)
    np.testing.assert_array_equal(np.asarray(one.crops), np.asarray(two.crops))
    assert one.files == two.files  # every outcome, in source order
    assert read_report(tmp_path / "two")["9.png"][0] == "duplicate"


def test_workers_start_only_when_the_inputs_pay_for_them() -> None:
    assert prepare._useful_workers(8, 50) == 1
    assert prepare._useful_workers(2, 400) == 2
    assert prepare._useful_workers(8, 350) == 3


def manifest_faces(out: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{out / MANIFEST_FILE}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_kill_9_loses_nothing_committed_and_a_rerun_completes(
    tmp_path: Path, lfw_faces: np.ndarray
) -> None:
    # Large images make each file slow enough that the kill lands mid-run.
    rng = np.random.default_rng(0)
    faces = np.concatenate([lfw_faces[:93]] * 2)
    noisy = np.clip(faces + rng.integers(-3, 4, faces.shape), 0, 255).astype(np.uint8)
    src = write_face_folder(tmp_path / "src", noisy, per_identity=1000, upscale=16)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "facerep",
        "prepare",
        str(src),
        str(out),
        "--size",
        "32",
        "--commit-every",
        "4",
        "--quiet",
    ]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while manifest_faces(out) < 12 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "prepare finished before it could be killed"

    interrupted = open_dataset(out)
    assert 12 <= len(interrupted) < len(faces)
    assert all(crop.std() > 5 for crop in interrupted.crops)  # every listed row has its crop
    rerun = prepare_dataset(src, out, PrepareOptions(size=32))
    assert rerun.already_done > 0
    done = open_dataset(out)
    assert len(done) == rerun.total_faces >= len(interrupted)
    assert len(set(zip(done.sources, done.face_index, strict=True))) == len(done)
    for row in (0, len(interrupted) - 1, len(done) - 1):  # rows still match their sources
        expected = find_faces(load_image(done.sources[row]), size=32)[done.face_index[row]]
        np.testing.assert_array_equal(done.crops[row], expected.crop)


def test_an_image_refused_for_its_size_is_taken_once_the_limit_is_raised(
    faces_dir: Path, tmp_path: Path
) -> None:
    big = Image.open(faces_dir / "id0" / "0.png").resize((1200, 1200))
    big.save(faces_dir / "id0" / "big.png")
    strict = prepare_dataset(faces_dir, tmp_path / "out", PrepareOptions(size=32, max_pixels=10**6))
    assert strict.outcomes["refused"] == 1
    again = prepare_dataset(faces_dir, tmp_path / "out", PrepareOptions(size=32))
    assert again.already_done == 12 and again.outcomes == {"ok": 1}
    assert read_report(tmp_path / "out").get("big.png") is None  # no stale refusal left
    assert len(open_dataset(tmp_path / "out")) == strict.total_faces + 1
