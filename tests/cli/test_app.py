"""The `facerep` CLI through its real entry point: help, output, JSON, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_face_folder


def facerep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facerep", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "command", [[], ["prepare"], ["info"], ["pretrain"], ["list-models"], ["serve"]]
)
def test_help_on_every_command(command: list[str]) -> None:
    result = facerep(*command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_the_cli_loads_neither_faiss_nor_torch_until_a_command_needs_them() -> None:
    # The whole CLI is imported for any command; FAISS (and its OpenMP runtime) and torch
    # (a second of import) only when a command uses them.
    script = (
        "import sys, facerep, facerep.cli.app; "
        "print('faiss' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False False", done.stderr


def test_prepare_builtin_sample_then_info_json(tmp_path: Path) -> None:
    out = tmp_path / "lfw"
    result = facerep("prepare", "builtin:lfw-sample", str(out), "--size", "32")
    assert result.returncode == 0, result.stderr
    assert "100 images found" in result.stdout
    info = json.loads(facerep("info", str(out), "--json").stdout)
    assert {"faces", "images", "identities", "failures", "size"} <= info.keys()
    assert info["faces"] >= 90 and info["faces"] + info["failures"] == 100
    assert info["identities"] == 0 and info["size"] == 32
    table = facerep("info", str(out))
    assert table.returncode == 0 and "identities" in table.stdout and "duplicates" in table.stdout


def test_info_counts_the_ignored_files_prepare_reported(tmp_path: Path, lfw_faces) -> None:
    src = write_face_folder(tmp_path / "src", lfw_faces[:2], per_identity=2)
    (src / "id0" / "notes.txt").write_text("not a photo")
    prepared = facerep("prepare", str(src), str(tmp_path / "out"), "--size", "32", "--json")
    assert json.loads(prepared.stdout)["outcomes"]["ignored"] == 1
    table = facerep("info", str(tmp_path / "out")).stdout
    [row] = [line for line in table.splitlines() if "ignored (not image names)" in line]
    assert row.split()[-2] == "1"


def test_prepare_json_and_exit_1_when_some_inputs_fail(
    tmp_path: Path, lfw_faces: np.ndarray
) -> None:
    src = write_face_folder(tmp_path / "src", lfw_faces[:4], per_identity=2)
    (src / "id0" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = facerep("prepare", str(src), str(tmp_path / "out"), "--size", "32", "--json")
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["outcomes"]["corrupt"] == 1 and summary["outcomes"]["ok"] >= 3
    [error] = summary["errors"]
    assert error.startswith(f"{src / 'id0' / 'broken.jpg'}: ") and "\n" not in error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "/no/such/folder", "OUT"], "/no/such/folder: no such folder or file"),
        (["info", "/no/such/dataset"], "not a prepared dataset"),
        (["prepare", "builtin:lfw-sample", "OUT", "--detector", "sift"], "sift"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    args = [str(tmp_path / a) if a == "OUT" else a for a in args]
    result = facerep(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_quiet_prints_nothing_on_success(tmp_path: Path) -> None:
    result = facerep("prepare", "builtin:lfw-sample", str(tmp_path / "o"), "--size", "32", "-q")
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_unwritable_output_and_damaged_manifest_are_one_line_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = facerep("prepare", "builtin:lfw-sample", str(blocker / "out"), "-q")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and str(blocker) in result.stderr

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "manifest.sqlite").write_bytes(b"this is not sqlite" * 100)
    info = facerep("info", str(damaged))
    assert info.returncode == 2 and "damaged manifest" in info.stderr
    assert "Traceback" not in info.stderr


def test_prepare_never_writes_into_its_source_or_a_foreign_folder(
    tmp_path: Path, lfw_faces: np.ndarray
) -> None:
    src = write_face_folder(tmp_path / "src", lfw_faces[:2], per_identity=2)
    inside = facerep("prepare", str(src), str(src / "id0" / "data"), "-q")
    assert inside.returncode == 2 and "is inside the input" in inside.stderr
    assert inside.stderr.count("\n") == 1 and not (src / "id0" / "data").exists()
    around = facerep("prepare", str(src), str(tmp_path), "-q")
    assert around.returncode == 2 and "contains the input" in around.stderr
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "report.csv").write_text("the user's own report")
    refused = facerep("prepare", str(src), str(foreign), "-q")
    assert refused.returncode == 2 and "not written by facerep prepare" in refused.stderr
    assert (foreign / "report.csv").read_text() == "the user's own report"


COMMANDS = [["prepare"], ["info"], ["pretrain"], ["list-models"], ["eval"], ["verify"],
            ["search"], ["cluster"], ["calibrate"], ["serve"], ["gallery", "add"],
            ["gallery", "remove"], ["gallery", "list"], ["gallery", "info"],
            ["gallery", "compact"]]


def test_help_fits_80_columns_whole() -> None:
    # Every option name appears whole; flags are flags, not "<bool>" options.
    import os

    env = {**os.environ, "COLUMNS": "80"}
    for command in COMMANDS:
        result = subprocess.run([sys.executable, "-m", "facerep", *command, "--help"],
                                capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, command
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80, command
        assert "…" not in result.stdout and "<bool>" not in result.stdout, command
    serve = subprocess.run([sys.executable, "-m", "facerep", "serve", "--help"],
                           capture_output=True, text=True, env=env, timeout=60).stdout
    assert "--detect-workers" in serve and "--insecure-local" in serve


def test_prepare_retry_failed_and_assume_cropped_from_the_command_line(tmp_path: Path) -> None:
    # A flat grey frame: no detector fires, and --assume-cropped does not take a frame with
    # nothing in it as a face.
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.full((112, 92, 3), 120, np.uint8)).save(src / "grey.png")
    out = str(tmp_path / "out")
    first = facerep("prepare", str(src), out, "--size", "32", "--no-cascade", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["outcomes"] == {"no_face": 1}
    refused = facerep("prepare", str(src), out, "--size", "32", "--json")
    assert refused.returncode == 2 and "cascade" in refused.stderr  # other search options
    retried = facerep(
        "prepare", str(src), out, "--size", "32", "--retry-failed", "--assume-cropped", "--json"
    )
    assert retried.returncode == 0, retried.stderr
    summary = json.loads(retried.stdout)
    assert summary["already_done"] == 0 and summary["outcomes"] == {"no_face": 1}  # retried
    info = json.loads(facerep("info", out, "--json").stdout)
    assert info["failures"] == 1 and info["faces"] == 0
