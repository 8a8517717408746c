"""Crash-safe writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from facerep import files
from facerep.files import atomic_write


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as f:
        f.write("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_atomic_write_gives_ordinary_file_permissions(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "a.csv", "w") as f:
        f.write("x")
    (tmp_path / "b.csv").write_text("x")
    assert (tmp_path / "a.csv").stat().st_mode == (tmp_path / "b.csv").stat().st_mode


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o000])
def test_the_umask_applies_without_being_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    previous = os.umask(umask)
    try:
        # Setting the umask to read it raced with other threads creating files.
        monkeypatch.setattr(os, "umask", lambda _: pytest.fail("atomic_write changed the umask"))
        with atomic_write(tmp_path / "a.csv", "w") as f:
            f.write("x")
        assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o666 & ~umask
        assert (tmp_path / "a.csv").read_text() == "x"
    finally:
        monkeypatch.undo()
        os.umask(previous)


def test_a_taken_temp_name_is_skipped_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = iter(["taken", "free"])
    monkeypatch.setattr(files.secrets, "token_hex", lambda _: next(names))
    other_writer = tmp_path / ".a.csv.taken.tmp"
    other_writer.write_text("another writer's")
    with atomic_write(tmp_path / "a.csv", "w") as f:
        f.write("mine")
    assert (tmp_path / "a.csv").read_text() == "mine"
    assert other_writer.read_text() == "another writer's"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.csv.taken.tmp", "a.csv"]
