"""verify, gallery, search, cluster and calibrate through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.cli.test_app import facerep
from tests.conftest import link_orl


@pytest.fixture(scope="module")
def photos(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 ORL people x 4 photos in person folders, plus a wall with no face."""
    root = link_orl(
        shared_data, tmp_path_factory.mktemp("cli") / "photos", range(1, 7), range(1, 5)
    )
    Image.new("RGB", (160, 160), (40, 80, 120)).save(root / "s6" / "wall.png")
    return root


@pytest.mark.parametrize(
    "command", [["verify"], ["search"], ["cluster"], ["calibrate"], ["gallery", "add"]]
)
def test_help(command: list[str]) -> None:
    result = facerep(*command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_verify_json_and_text(photos: Path) -> None:
    same = facerep("verify", str(photos / "s1" / "1.pgm"), str(photos / "s1" / "2.pgm"), "--json")
    assert same.returncode == 0, same.stderr
    verdict = json.loads(same.stdout)
    assert verdict["same"] is True and verdict["distance"] <= verdict["threshold"] == 0.08
    other = facerep("verify", str(photos / "s1" / "1.pgm"), str(photos / "s2" / "1.pgm"))
    assert other.returncode == 0 and other.stdout.startswith("different people (distance")


def test_verify_prints_distances_in_0_to_2_and_small_thresholds_readably(photos: Path) -> None:
    photo = str(photos / "s1" / "1.pgm")
    itself = facerep("verify", photo, photo, "--json")
    assert itself.returncode == 0, itself.stderr
    assert json.loads(itself.stdout)["distance"] == 0.0  # 1 - cos rounds to -3.6e-09
    strict = facerep("verify", photo, photo, "--threshold", "3.6e-05")
    assert strict.stdout.strip() == "same person (distance 0.0000 <= threshold 3.6e-05)"


def test_verify_errors_are_one_line(photos: Path, tmp_path: Path) -> None:
    wall = facerep("verify", str(photos / "s6" / "wall.png"), str(photos / "s1" / "1.pgm"))
    assert wall.returncode == 2 and wall.stderr.strip().endswith("wall.png: no face found")
    assert len(wall.stderr.strip().splitlines()) == 1
    missing = facerep("verify", str(tmp_path / "nope.jpg"), str(photos / "s1" / "1.pgm"))
    assert (
        missing.returncode == 2
        and "nope.jpg" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_gallery_add_search_remove(photos: Path, shared_data: Path, tmp_path: Path) -> None:
    gallery = str(tmp_path / "g")
    added = facerep("gallery", "add", gallery, str(photos), "--json")
    assert added.returncode == 0  # the wall gave no face: a result, listed; the rest added
    summary = json.loads(added.stdout)
    assert summary["added"] == 24 and summary["faces"] == 24
    assert [Path(f["source"]).name for f in summary["failures"]] == ["wall.png"]
    extra = facerep("gallery", "add", gallery, str(photos / "s1"), "--label", "ann", "-q")
    assert extra.returncode == 0, extra.stderr

    missing = facerep("search", gallery, str(tmp_path / "probe.pgm"), "--json")
    assert missing.returncode == 2 and "probe.pgm" in missing.stderr
    probe = shared_data / "orl" / "s3" / "9.pgm"  # a photo the gallery has not seen
    matches = json.loads(facerep("search", gallery, str(probe), "-k", "3", "--json").stdout)
    assert [m["label"] for m in matches] == ["s3"] * 3 and matches[0]["same"] is True
    assert {"id", "distance", "source", "box"} <= matches[0].keys()
    table = facerep("search", gallery, str(probe), "-k", "1")
    assert table.returncode == 0 and "same person" in table.stdout
    assert " s3 " in table.stdout and " yes " in table.stdout

    removed = facerep("gallery", "remove", gallery, "--label", "s3", "--json")
    assert json.loads(removed.stdout) == {"removed": 4, "compacted": True}
    after = json.loads(facerep("search", gallery, str(probe), "-k", "30", "--json").stdout)
    assert "s3" not in {m["label"] for m in after} and len(after) == 24
    labels = json.loads(facerep("gallery", "list", gallery, "--json").stdout)
    assert labels == {"ann": 4, **{f"s{i}": 4 for i in (1, 2, 4, 5, 6)}}
    info = json.loads(facerep("gallery", "info", gallery, "--json").stdout)
    assert info["encoder"] == "dlib" and info["faces"] == 24 and info["index"] == "exact"
    both = facerep("gallery", "remove", gallery, "--label", "x", "--id", "3")
    assert both.returncode == 2 and "exactly one of" in both.stderr


def test_a_gallery_refuses_an_other_encoder(photos: Path, tiny_run: Path, tmp_path: Path) -> None:
    gallery = str(tmp_path / "g")
    facerep("gallery", "add", gallery, str(photos / "s1"), "--label", "s1", "-q")
    other = facerep(
        "gallery", "add", gallery, str(photos / "s2"), "--label", "s2", "-e", str(tiny_run)
    )
    assert other.returncode == 2 and "holds dlib embeddings (128-D)" in other.stderr


def test_cluster_writes_person_folders(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "people"
    result = facerep("cluster", str(photos), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["faces"] == 24 and len(summary["people"]) == 6
    assert (out / "clusters.csv").is_file() and (out / "person-006").is_dir()
    again = facerep("cluster", str(photos), "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_calibrate_then_verify_with_a_run(
    shared_data: Path, tiny_run: Path, tmp_path: Path
) -> None:
    import shutil

    run = shutil.copytree(tiny_run, tmp_path / "run")
    folder = link_orl(shared_data, tmp_path / "orl", range(1, 17), range(1, 9))
    result = facerep("calibrate", str(folder), "-e", str(run), "--far", "1e-2", "--json")
    assert result.returncode == 0, result.stderr
    calibration = json.loads(result.stdout)
    assert calibration["far"] <= 1e-2 and calibration["identities"] == 8
    assert Path(calibration["stored"]) == run / "calibration.json"
    verdict = facerep(
        "verify",
        str(folder / "s1" / "1.pgm"),
        str(folder / "s1" / "2.pgm"),
        "-e",
        str(run),
        "--json",
    )
    assert json.loads(verdict.stdout)["threshold"] == calibration["threshold"]
    too_strict = facerep("calibrate", str(folder), "-e", str(run), "--far", "1e-5")
    assert too_strict.returncode == 2 and "impostor pairs" in too_strict.stderr


def test_list_encoders_names_what_encoder_takes() -> None:
    result = facerep("list-encoders")
    assert result.returncode == 0, result.stderr
    lines = {line.split(":")[0].split()[0]: line for line in result.stdout.splitlines()}
    assert set(lines) == {"dlib", "pca", "pixels", "RUN", "FILE.onnx"}
    assert "eval only" in lines["pca"] and "eval only" not in lines["dlib"]


@pytest.mark.parametrize(
    "command",
    [["verify", "{a}", "{b}"], ["gallery", "add", "{out}/g", "{photos}"],
     ["cluster", "{photos}", "--out", "{out}/c"], ["calibrate", "{photos}"]],
)  # fmt: skip
def test_an_encoder_that_must_be_fitted_is_refused_by_the_face_tools(
    photos: Path, tmp_path: Path, command: list[str]
) -> None:
    names = {"a": photos / "s1" / "1.pgm", "b": photos / "s1" / "2.pgm", "photos": photos,
             "out": tmp_path}  # fmt: skip
    result = facerep(*(part.format(**names) for part in command), "--encoder", "pca")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # after any progress bar
    assert last.startswith("error: encoder pca must be fitted on labelled faces first")
    assert "use one of: dlib, pixels, RUN" in result.stderr and "fit()" not in result.stderr
    assert not (tmp_path / "g").exists() and not (tmp_path / "c").exists()


@pytest.fixture
def copied_photos(shared_data: Path, tmp_path: Path) -> Path:
    """The issue's folder: copies (not links) of 3 photos of s1 and 2 of s2 in x/."""
    import shutil

    for person, numbers in (("s1", (1, 2, 3)), ("s2", (1, 2))):
        (tmp_path / "x" / person).mkdir(parents=True)
        for n in numbers:
            shutil.copy(shared_data / "orl" / person / f"{n}.pgm", tmp_path / "x" / person)
    return tmp_path / "x"


def _photo_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.pgm") if p.is_file())


@pytest.mark.parametrize(
    ("out", "reason"),
    [("x", "is the input"), (".", "contains the input"), ("x/by-person", "is inside the input")],
)
def test_cluster_never_writes_over_or_into_its_photos(
    copied_photos: Path, tmp_path: Path, out: str, reason: str
) -> None:
    before = _photo_files(copied_photos)
    result = facerep("cluster", str(copied_photos), "--out", str(tmp_path / out), "--overwrite")
    assert result.returncode == 2 and reason in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert _photo_files(copied_photos) == before == [
        "s1/1.pgm", "s1/2.pgm", "s1/3.pgm", "s2/1.pgm", "s2/2.pgm"
    ]
    assert not (copied_photos / "by-person").exists()


def test_cluster_overwrite_replaces_only_its_own_output(
    copied_photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "by-person"
    assert facerep("cluster", str(copied_photos), "--out", str(out), "-q").returncode == 0
    again = facerep("cluster", str(copied_photos), "--out", str(out), "--overwrite", "--copy")
    assert again.returncode == 0, again.stderr
    assert (out / "clusters.csv").is_file() and not (out / "person-001" / "1.pgm").is_symlink()

    (out / "notes.txt").write_text("the user's own file")
    kept = facerep("cluster", str(copied_photos), "--out", str(out), "--overwrite")
    assert kept.returncode == 2 and "notes.txt was not written by facerep" in kept.stderr
    assert (out / "notes.txt").read_text() == "the user's own file"

    foreign = tmp_path / "holiday"
    foreign.mkdir()
    (foreign / "beach.jpg").write_bytes(b"not facerep's")
    refused = facerep("cluster", str(copied_photos), "--out", str(foreign), "--overwrite")
    assert refused.returncode == 2 and "not written by facerep cluster" in refused.stderr
    assert (foreign / "beach.jpg").read_bytes() == b"not facerep's"


def _unusable_photos(root: Path) -> Path:
    root.mkdir()
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    Image.new("RGB", (1, 1)).save(root / "dot.png")
    Image.new("RGB", (160, 160), (40, 80, 120)).save(root / "wall.png")
    return root


def test_cluster_without_any_face_writes_an_empty_result(tmp_path: Path) -> None:
    folder = _unusable_photos(tmp_path / "photos")
    result = facerep("cluster", str(folder), "--out", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr  # broken.jpg could not be read
    assert "Traceback" not in result.stderr and "reshape" not in result.stderr
    assert "no faces found in 3 photos" in result.stdout and "empty result" in result.stdout
    assert "skipped" in result.stderr and "broken.jpg" in result.stderr
    failures = (tmp_path / "out" / "failures.csv").read_text().splitlines()
    assert failures[0] == "source,reason" and len(failures) == 4
    assert len((tmp_path / "out" / "clusters.csv").read_text().splitlines()) == 1

    (tmp_path / "empty").mkdir()
    empty = facerep("cluster", str(tmp_path / "empty"), "--out", str(tmp_path / "o2"), "--json")
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["faces"] == 0 and (tmp_path / "o2" / "failures.csv").exists()


@pytest.mark.parametrize("bad", ["wall.png", "broken.jpg"])
def test_one_exit_code_rule_for_every_command(
    shared_data: Path, tmp_path: Path, bad: str
) -> None:
    # A photo without a face is a result (listed, exit 0); one that cannot be read is an
    # input left out (listed, exit 1); the same in every command that reads a folder.
    folder = link_orl(shared_data, tmp_path / "people", range(1, 4), range(1, 3))
    spare = _unusable_photos(tmp_path / "spare")
    (spare / bad).rename(folder / "s1" / bad)
    expected = 0 if bad == "wall.png" else 1
    runs = {
        "prepare": ["prepare", str(folder), str(tmp_path / "data"), "--size", "32"],
        "cluster": ["cluster", str(folder), "--out", str(tmp_path / "clusters")],
        "gallery add": ["gallery", "add", str(tmp_path / "gallery"), str(folder)],
        "calibrate": ["calibrate", str(folder), "--all-identities", "--far", "0.2"],
    }
    for name, args in runs.items():
        result = facerep(*args, "-q")
        assert result.returncode == expected, (name, result.stderr)
        assert "Traceback" not in result.stderr


def test_calibrate_on_photos_without_faces_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "people"
    folder.mkdir()
    _unusable_photos(folder / "bob")
    result = facerep("calibrate", str(folder), "--all-identities", "-q")
    assert result.returncode == 2 and "reshape" not in result.stderr
    assert result.stderr.strip().endswith("calibration needs an identity with two or more faces")
