"""Ingest with the detection cascade: stages in the manifest, implausible alignments refused,
`retry_failed` re-runs that find what an earlier run missed without storing any face twice."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerep.data.info import describe_dataset
from facerep.data.prepare import PrepareOptions, prepare_dataset
from facerep.data.store import FAILED_STATUSES, MANIFEST_FILE, DatasetError, open_dataset
from tests.conftest import turned, write_face_folder
from tests.data.test_prepare import read_report

FIRST_LOOK = PrepareOptions(size=32, cascade=False)
CASCADE = PrepareOptions(size=32)


@pytest.fixture
def faces_dir(tmp_path: Path, lfw_faces: np.ndarray) -> Path:
    """6 real LFW faces in 2 identity folders, and a rolled head in a third."""
    root = write_face_folder(tmp_path / "src", lfw_faces[:6], per_identity=3)
    (root / "rolled").mkdir()
    from skimage.data import astronaut

    rolled, _ = turned(astronaut(), -45)  # beyond HOG's own templates: the rotated stage's
    Image.fromarray(rolled).save(root / "rolled" / "astronaut.png")
    return root


def test_each_face_records_the_stage_that_found_it(faces_dir: Path, tmp_path: Path) -> None:
    summary = prepare_dataset(faces_dir, tmp_path / "out", CASCADE)
    data = open_dataset(tmp_path / "out")
    stages = dict(zip(data.sources, data.stages, strict=True))
    assert stages[str(faces_dir / "rolled" / "astronaut.png")] == "rotated"
    assert summary.stages["rotated"] == 1 and summary.stages["photo"] == len(data) - 1
    assert describe_dataset(tmp_path / "out")["stages"] == dict(summary.stages)


def test_retry_failed_finds_what_the_first_look_missed_and_stores_nothing_twice(
    faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = prepare_dataset(faces_dir, out, FIRST_LOOK)
    assert read_report(out)["astronaut.png"] == ("no_face", "no face found")
    with pytest.raises(DatasetError, match="prepared with cascade=false"):
        prepare_dataset(faces_dir, out, CASCADE)  # other search options need --retry-failed
    again = prepare_dataset(faces_dir, out, FIRST_LOOK)
    assert again.already_done == first.found and again.faces_added == 0

    retried = prepare_dataset(faces_dir, out, CASCADE, retry_failed=True)
    data = open_dataset(out)
    assert retried.faces_added == 1 and retried.stages == {"rotated": 1}
    assert len(data) == first.total_faces + 1
    assert len(set(data.sources)) == len(data)  # one face per photo, none stored twice
    assert "astronaut.png" not in read_report(out)
    assert [f.status for f in data.files if f.path.endswith("astronaut.png")] == ["ok"]
    assert data.meta["cascade"] is True  # the search options of the latest run
    # Nothing left to retry: a second retry adds nothing.
    assert prepare_dataset(faces_dir, out, CASCADE, retry_failed=True).faces_added == 0


def test_implausible_alignments_are_refused_with_their_own_reason(
    faces_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facerep.faces import detect

    def refuse_rolled(landmarks, box, shape, size, padding):
        eyes = landmarks[0:2].mean(0) - landmarks[2:4].mean(0)
        roll = math.degrees(math.atan2(eyes[1], eyes[0]))
        return f"implausible landmarks: roll {roll:+.0f} degrees" if abs(roll) > 20 else None

    monkeypatch.setattr(detect, "implausible_reason", refuse_rolled)
    summary = prepare_dataset(faces_dir, tmp_path / "out", CASCADE)
    status, reason = read_report(tmp_path / "out")["astronaut.png"]
    assert status == "implausible_landmarks" and reason.startswith("implausible landmarks: roll")
    assert "implausible_landmarks" in FAILED_STATUSES
    assert summary.outcomes["implausible_landmarks"] == 1
    assert describe_dataset(tmp_path / "out")["failures_by_reason"]["implausible_landmarks"] == 1


def test_a_dataset_from_before_the_cascade_opens_and_grows(faces_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_dataset(faces_dir / "id0", out, FIRST_LOOK)
    with sqlite3.connect(out / MANIFEST_FILE) as db:  # as facerep wrote it before the cascade
        db.execute("ALTER TABLE faces DROP COLUMN stage")
        db.execute("DELETE FROM meta WHERE key IN ('cascade', 'assume_cropped')")
    old = open_dataset(out)
    assert len(old) == 3 and list(old.stages) == [None] * 3
    assert describe_dataset(out)["stages"] == {"unrecorded": 3}
    prepare_dataset(faces_dir, out, CASCADE)
    grown = open_dataset(out)
    assert list(grown.stages[:3]) == [None] * 3 and set(grown.stages[3:]) == {"photo", "rotated"}


def test_the_cascade_finds_more_of_the_builtin_sample(tmp_path: Path) -> None:
    first = prepare_dataset("builtin:lfw-sample", tmp_path / "first", FIRST_LOOK)
    cascade = prepare_dataset("builtin:lfw-sample", tmp_path / "cascade", CASCADE)
    assert first.outcomes["ok"] == 92 and cascade.outcomes["ok"] >= 96
    assert cascade.stages["photo"] == 92  # the first look's faces are the same faces
    first_data, cascade_data = open_dataset(tmp_path / "first"), open_dataset(tmp_path / "cascade")
    photo = cascade_data.stages == "photo"
    np.testing.assert_array_equal(first_data.crops, cascade_data.crops[photo])
