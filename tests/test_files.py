"""Crash-safe writes."""

from __future__ import annotations

from pathlib import Path

import pytest

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
