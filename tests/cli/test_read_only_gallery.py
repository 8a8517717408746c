"""A gallery on a read-only folder: search, list and info work and write nothing; adds refuse."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_app import facerep
from tests.conftest import link_orl


def read_only_run(gallery: Path, *args: str) -> subprocess.CompletedProcess:
    """`facerep ARGS` with `gallery` read-only: a read-only bind mount as root (who may write
    anything otherwise), write bits taken away for anyone else."""
    command = [sys.executable, "-m", "facerep", *args]
    if os.geteuid() != 0:
        return subprocess.run(command, capture_output=True, text=True, timeout=300)
    if shutil.which("unshare") is None:
        pytest.skip("root, and no unshare(1) to mount the gallery read-only")
    g = str(gallery)
    script = f'mount --bind "{g}" "{g}" && mount -o remount,ro,bind "{g}" && exec "$@"'
    wrapped = ["unshare", "-m", "sh", "-c", script, "sh", *command]
    return subprocess.run(wrapped, capture_output=True, text=True, timeout=300)


@pytest.fixture
def gallery(shared_data: Path, tmp_path: Path) -> Path:
    photos = link_orl(shared_data, tmp_path / "photos", range(1, 4), range(1, 3))
    path = tmp_path / "g"
    added = facerep("gallery", "add", str(path), str(photos), "--json")
    assert added.returncode == 0, added.stderr
    if os.geteuid() != 0:
        for item in [path, *path.iterdir()]:
            item.chmod(item.stat().st_mode & ~0o222)
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_searching_a_gallery_the_user_can_only_read(gallery: Path, shared_data: Path) -> None:
    before = snapshot(gallery)
    probe = str(shared_data / "orl" / "s2" / "9.pgm")
    search = read_only_run(gallery, "search", str(gallery), probe, "-k", "1", "--json")
    assert search.returncode == 0, search.stderr
    assert json.loads(search.stdout)[0]["label"] == "s2"
    listed = read_only_run(gallery, "gallery", "list", str(gallery), "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == {"s1": 2, "s2": 2, "s3": 2}
    info = read_only_run(gallery, "gallery", "info", str(gallery), "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["faces"] == 6
    assert snapshot(gallery) == before  # not a byte written, not a file made


def test_adding_to_a_read_only_gallery_is_a_one_line_error(gallery: Path, tmp_path: Path) -> None:
    add = read_only_run(gallery, "gallery", "add", str(gallery), str(tmp_path / "photos"))
    assert add.returncode == 2 and "Traceback" not in add.stderr
    last = add.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "cannot be written here" in last
