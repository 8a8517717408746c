"""Folder layouts: which files are ingested, with which identity and split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from facerep.data.sources import path_text, walk_source
from facerep.images import load_image


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_identity_folders_name_the_identity(tmp_path: Path) -> None:
    touch(tmp_path, "alice/1.jpg", "alice/2.png", "bob/1.pgm", "README.md")
    items, ignored = walk_source(tmp_path)
    assert [(Path(i.name).name, i.identity, i.split) for i in items] == [
        ("1.jpg", "alice", None),
        ("2.png", "alice", None),
        ("1.pgm", "bob", None),
    ]
    assert [(Path(f.name).name, f.reason) for f in ignored] == [
        ("README.md", "not an image file name")
    ]


def test_flat_folder_has_no_identities(tmp_path: Path) -> None:
    touch(tmp_path, "a.jpg", "b.JPEG", "c.webp")
    items, _ = walk_source(tmp_path)
    assert len(items) == 3
    assert all(item.identity is None for item in items)


def test_split_folders_above_identities_are_recognised(tmp_path: Path) -> None:
    touch(tmp_path, "train/ann/1.jpg", "train/bob/1.jpg", "test/ann/1.jpg")
    items, _ = walk_source(tmp_path)
    assert {(i.split, i.identity) for i in items} == {
        ("train", "ann"),
        ("train", "bob"),
        ("test", "ann"),
    }
    only_train, _ = walk_source(tmp_path, split="train")
    assert {i.split for i in only_train} == {"train"} and len(only_train) == 2


def test_unknown_split_is_a_clear_error(tmp_path: Path) -> None:
    touch(tmp_path, "train/ann/1.jpg")
    with pytest.raises(ValueError, match="no split folder named 'val'"):
        walk_source(tmp_path, split="val")


def test_hidden_files_and_folders_are_skipped(tmp_path: Path) -> None:
    touch(tmp_path, "ann/1.jpg", "ann/._1.jpg", ".git/x.jpg", ".DS_Store")
    items, ignored = walk_source(tmp_path)
    assert [Path(i.name).name for i in items] == ["1.jpg"] and ignored == []


def test_explicit_layout_must_fit(tmp_path: Path) -> None:
    touch(tmp_path, "a.jpg")
    with pytest.raises(ValueError, match="--layout identity needs"):
        walk_source(tmp_path, layout="identity")


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such folder or file"):
        walk_source(tmp_path / "nope")


def test_builtin_sample_lists_100_faces() -> None:
    from skimage.data import lfw_subset

    items, _ = walk_source("builtin:lfw-sample")
    assert len(items) == 100
    assert items[0].name == items[0].key == "builtin:lfw-sample/000.png"
    assert items[99].name == items[99].key == "builtin:lfw-sample/099.png"
    assert items[0].load_array().shape == (25, 25)
    # load_image alone converts scikit-image's [0, 1] floats: the pixels (and so the content
    # hashes of datasets prepared before) are scikit-image's, rounded.
    raw = items[7].load_array()
    assert raw.dtype.kind == "f" and 0.0 <= raw.min() <= raw.max() <= 1.0
    expected = np.round(lfw_subset()[7] * 255).astype(np.uint8)
    np.testing.assert_array_equal(load_image(raw), np.repeat(expected[:, :, None], 3, axis=2))
    raw[:] = 0.5  # a caller's change does not reach the cached sample
    np.testing.assert_array_equal(load_image(items[7].load_array())[:, :, 0], expected)
    with pytest.raises(ValueError, match="unknown built-in sample"):
        walk_source("builtin:nope")


def test_folders_too_big_for_one_person_are_read_as_flat(tmp_path: Path) -> None:
    touch(tmp_path, *[f"celeba/{i}.jpg" for i in range(1001)], "utk/1.jpg")
    items, _ = walk_source(tmp_path)
    assert all(item.identity is None for item in items)
    forced, _ = walk_source(tmp_path, layout="identity")
    assert {item.identity for item in forced} == {"celeba", "utk"}


def test_a_name_that_is_not_utf8_is_text_for_storing_and_the_path_for_reading(
    tmp_path: Path,
) -> None:
    # Python holds the byte 0xff of a Latin-1 name as the surrogate escape \udcff (PEP 383).
    folder, photo = os.fsdecode(b"Jos\xe9"), os.fsdecode(b"x\xff.jpg")
    touch(tmp_path, f"{folder}/{photo}", f"{folder}/1.jpg")
    items, _ = walk_source(tmp_path)
    odd = next(item for item in items if item.path.name == photo)
    assert odd.key == "Jos\\xe9/x\\xff.jpg" and odd.identity == "Jos\\xe9"
    assert odd.name == str(tmp_path / "Jos\\xe9" / "x\\xff.jpg")
    odd.name.encode("utf-8")  # what a database or CSV file takes
    assert odd.path.read_bytes() == b"x"
    assert path_text("plain/ünïcode.jpg") == "plain/ünïcode.jpg"


def test_links_loops_and_gifs_follow_one_set_of_rules(tmp_path: Path) -> None:
    touch(tmp_path, "ann/1.jpg", "ann/wave.gif", "elsewhere/bob/2.png")
    (tmp_path / "ann" / "loop.jpg").symlink_to("loop.jpg")  # a link to itself
    (tmp_path / "ann" / "up").symlink_to("..")  # a folder link back above itself
    (tmp_path / "bob").symlink_to(tmp_path / "elsewhere" / "bob")  # a linked person folder
    items, ignored = walk_source(tmp_path / "ann" / "..", layout="identity")
    # bob/ is a link to a folder walked already: its photos come once, where they are.
    assert sorted(item.key for item in items) == [
        "ann/1.jpg", "ann/loop.jpg", "ann/wave.gif", "elsewhere/bob/2.png"
    ]
    assert [(Path(f.name).name, f.reason) for f in ignored] == [
        ("up", "link to a folder above it (a loop)"), ("bob", "link to a folder walked already")
    ]
    lone, _ = walk_source(tmp_path / "ann" / "wave.gif")
    assert [item.key for item in lone] == ["wave.gif"]


def test_a_folder_that_cannot_be_listed_is_reported_and_the_rest_walked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path, "ann/1.jpg", "locked/2.jpg")
    scandir = os.scandir

    def refuse_locked(path):  # as for a folder of another user's (root reads them all)
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_locked)
    items, ignored = walk_source(tmp_path)
    assert [item.key for item in items] == ["ann/1.jpg"]
    assert [(Path(f.name).name, f.reason) for f in ignored] == [
        ("locked", "unreadable folder (Permission denied)")
    ]


def test_a_link_out_of_the_folder_never_walks_the_rest_of_the_disk(tmp_path: Path) -> None:
    touch(tmp_path, "photos/alice/a.jpg", "private/secret.jpg")
    (tmp_path / "photos" / "alice" / "up").symlink_to("../..")  # above the folder walked
    (tmp_path / "photos" / "root").symlink_to("/")
    items, ignored = walk_source(tmp_path / "photos", layout="flat")
    assert [item.key for item in items] == ["alice/a.jpg"]
    assert {(Path(f.name).name, f.reason) for f in ignored} == {
        ("up", "link to a folder above it (a loop)"), ("root", "link to a folder above it (a loop)")
    }
