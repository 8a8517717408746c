"""The prepared-dataset store: round trip, crash leftovers, locking, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerep.data.store import (
    CROPS_FILE,
    DatasetError,
    DatasetWriter,
    FaceRow,
    FileRecord,
    open_dataset,
)

SIZE = 8


def record(name: str, n_faces: int, identity: str | None = "ann", fill: int = 7) -> FileRecord:
    faces = [
        FaceRow(
            np.full((SIZE, SIZE, 3), fill + i, np.uint8),
            i,
            [0.0, 0.0, 4.0, 4.0],
            1.5,
            [[float(i), 1.0]] * 5,
            [1.0, 2.0, 3.0],
        )
        for i in range(n_faces)
    ]
    status = "ok" if n_faces else "no_face"
    return FileRecord(name, f"hash-{name}", status, None, identity, None, faces)


def test_round_trip(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path, SIZE, {}) as writer:
        writer.add([record("a.jpg", 2, fill=10), record("b.jpg", 0)])
        writer.add([record("c.jpg", 1, identity="bob", fill=50)])
        assert writer.known_inputs() == [
            (f"hash-{n}", n, n, status)
            for n, status in (("a.jpg", "ok"), ("b.jpg", "no_face"), ("c.jpg", "ok"))
        ]
        writer.write_report()
    data = open_dataset(tmp_path)
    assert len(data) == 3 and data.crops.shape == (3, SIZE, SIZE, 3)
    assert [int(c[0, 0, 0]) for c in data.crops] == [10, 11, 50]
    assert list(data.identities) == ["ann", "ann", "bob"]
    assert list(data.face_index) == [0, 1, 0]
    assert data.landmarks.shape == (3, 5, 2) and data.poses.tolist()[0] == [1.0, 2.0, 3.0]
    assert data.failures() == {"no_face": 1}
    assert (tmp_path / "report.csv").read_text().splitlines()[1].startswith("b.jpg,no_face")
    assert data.files[1].path == "b.jpg" and data.files[1].status == "no_face"
    assert data.files[2].identity == "bob" and data.files[2].faces == 1


def test_duplicates_and_ignored_files_are_not_failures(tmp_path: Path) -> None:
    copy = FileRecord("copy.jpg", "hash-a.jpg", "duplicate", "same content as a.jpg")
    readme = FileRecord("README.md", None, "ignored", "not an image file name")
    broken = FileRecord("broken.jpg", "hash-broken", "corrupt", "truncated")
    with DatasetWriter(tmp_path, SIZE, {}) as writer:
        writer.add([record("a.jpg", 1), record("b.jpg", 0), copy, readme, broken])
    data = open_dataset(tmp_path)
    assert data.failures() == {"no_face": 1, "corrupt": 1}
    assert data.outcomes() == {"ok": 1, "no_face": 1, "duplicate": 1, "ignored": 1, "corrupt": 1}


def test_unreadable_and_refused_inputs_are_retried_and_replaced(tmp_path: Path) -> None:
    unreadable = FileRecord("gone.jpg", None, "unreadable", "permission denied")
    refused = FileRecord("huge.jpg", "hash-huge", "refused", "exceeds the limit")
    with DatasetWriter(tmp_path, SIZE, {}) as writer:
        writer.add([record("a.jpg", 1), unreadable, refused])
        # Only outcomes that stand are known: the other two are tried again by the next run.
        assert writer.known_inputs() == [("hash-a.jpg", "a.jpg", "a.jpg", "ok")]
        writer.add([record("gone.jpg", 0), record("huge.jpg", 1)])
    data = open_dataset(tmp_path)
    assert [(f.path, f.status) for f in data.files] == [
        ("a.jpg", "ok"),
        ("gone.jpg", "no_face"),
        ("huge.jpg", "ok"),
    ]


def test_bytes_left_by_a_crash_are_dropped(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path, SIZE, {}) as writer:
        writer.add([record("a.jpg", 1, fill=1)])
    with open(tmp_path / CROPS_FILE, "ab") as f:  # a crash after the crops, before the commit
        f.write(b"\xff" * SIZE * SIZE * 3 * 2)
    assert len(open_dataset(tmp_path)) == 1
    with DatasetWriter(tmp_path, SIZE, {}) as writer:
        writer.add([record("b.jpg", 1, fill=2)])
    data = open_dataset(tmp_path)
    assert [int(c[0, 0, 0]) for c in data.crops] == [1, 2]
    assert (tmp_path / CROPS_FILE).stat().st_size == 2 * SIZE * SIZE * 3


def test_a_different_crop_size_or_detector_is_refused(tmp_path: Path) -> None:
    DatasetWriter(tmp_path, SIZE, {"detector": "hog"}).close()
    with pytest.raises(DatasetError, match="prepared with size=8, not 16"):
        DatasetWriter(tmp_path, 16, {})
    with pytest.raises(DatasetError, match='prepared with detector="hog", not "cnn"'):
        DatasetWriter(tmp_path, SIZE, {"detector": "cnn"})
    # Every meta key is checked; one an older dataset lacks is recorded by the next writer.
    DatasetWriter(tmp_path, SIZE, {"min_face": 0}).close()
    DatasetWriter(tmp_path, SIZE, {"min_face": 0.0, "detector": "hog"}).close()  # the same
    with pytest.raises(DatasetError, match=r"prepared with min_face=0, not 12\.5"):
        DatasetWriter(tmp_path, SIZE, {"min_face": 12.5})


def test_a_failed_commit_does_not_shift_later_crops(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path, SIZE, {}) as writer:
        writer.add([record("a.jpg", 1, fill=1)])
        broken = record("b.jpg", 1, fill=2)
        broken.status = None  # violates NOT NULL: the transaction fails after the crop is written
        with pytest.raises(Exception, match="NOT NULL"):
            writer.add([broken])
        writer.add([record("c.jpg", 1, fill=3)])
    assert [int(c[0, 0, 0]) for c in open_dataset(tmp_path).crops] == [1, 3]


def test_only_one_writer_at_a_time(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path, SIZE, {}), pytest.raises(DatasetError, match="another"):
        DatasetWriter(tmp_path, SIZE, {})


def test_open_refuses_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a prepared dataset"):
        open_dataset(tmp_path)
