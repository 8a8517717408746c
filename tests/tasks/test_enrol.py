"""Enrolling photo folders into a gallery with dlib: search finds the right person."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import facerep
from facerep.tasks.enrol import enrol_folder, labelled_photos
from facerep.tasks.gallery import Gallery
from facerep.tasks.gallery.errors import GalleryError
from tests.conftest import link_orl


def test_enrolled_orl_people_are_found_from_new_photos(shared_data: Path, tmp_path: Path) -> None:
    folder = link_orl(shared_data, tmp_path / "enrol", range(1, 11), range(1, 5))
    Image.new("RGB", (120, 120), (200, 10, 10)).save(folder / "s1" / "red.png")
    gallery = facerep.Gallery(tmp_path / "g")
    summary = enrol_folder(gallery, folder)
    assert summary.added == 40 and summary.labels == {f"s{i}": 4 for i in range(1, 11)}
    assert [(Path(s).name, r) for s, r in summary.failures] == [("red.png", "no face found")]
    again = enrol_folder(gallery, folder)  # a re-run adds nothing twice
    assert again.added == 0 and again.already_enrolled == 40 and len(gallery) == 40
    hits = [
        gallery.search(shared_data / "orl" / f"s{p}" / "9.pgm", k=1)[0].label == f"s{p}"
        for p in range(1, 11)
    ]
    assert sum(hits) >= 9
    match = gallery.search(shared_data / "orl" / "s4" / "8.pgm", k=1)[0]
    assert match.same is True and match.source.endswith("s4/" + Path(match.source).name)
    with pytest.raises(facerep.NoFaceError):
        gallery.search(folder / "s1" / "red.png")
    with pytest.raises(facerep.NoFaceError):
        gallery.add([folder / "s2" / "1.pgm", folder / "s1" / "red.png"], "x")
    assert len(gallery) == 40  # a failing add writes nothing


def test_folders_must_be_person_folders_unless_a_label_is_given(tmp_path: Path) -> None:
    (tmp_path / "loose").mkdir()
    Image.new("RGB", (50, 50)).save(tmp_path / "loose" / "a.png")
    with pytest.raises(ValueError, match="photos outside person folders"):
        labelled_photos(tmp_path / "loose")
    assert [label for _, label in labelled_photos(tmp_path / "loose", "ann")] == ["ann"]
    with pytest.raises(ValueError, match="no such folder"):
        labelled_photos(tmp_path / "absent")


def test_a_run_encoder_builds_a_gallery_that_reopens_with_it(
    tiny_run: Path, shared_data: Path, tmp_path: Path
) -> None:
    folder = link_orl(shared_data, tmp_path / "enrol", range(1, 5), range(1, 4))
    gallery = facerep.Gallery(tmp_path / "g", tiny_run)
    assert enrol_folder(gallery, folder).added == 12
    gallery.close()
    reopened = facerep.Gallery(tmp_path / "g")  # the encoder comes back from the gallery
    assert reopened.encoder.dim == facerep.load_encoder(tiny_run).dim
    matches = reopened.search(folder / "s2" / "1.pgm", k=3)
    assert matches[0].label == "s2" and matches[0].distance == pytest.approx(0, abs=1e-5)
    assert matches[0].same is None  # an uncalibrated run has no threshold to judge by
    clustering = facerep.cluster(folder, tiny_run, threshold=0.05)
    assert len(clustering.faces) == 12


def test_a_gallery_refuses_its_run_once_the_run_embeds_otherwise(
    tiny_run: Path, shared_data: Path, tmp_path: Path
) -> None:
    import shutil

    from facerep.encoders import registry
    from facerep.train.whiten import whiten_run
    from facerep.whitening import remove_whitening

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    remove_whitening(run)  # a run from before whitening: its raw vectors fill the gallery
    folder = link_orl(shared_data, tmp_path / "enrol", range(1, 3), range(1, 3))
    with facerep.Gallery(tmp_path / "g", run) as gallery:
        enrol_folder(gallery, folder)
    whiten_run(run)  # now the run embeds whitened, into as many dimensions
    registry._cached_encoder.cache_clear()
    with pytest.raises(GalleryError, match="does not match"):
        facerep.Gallery(tmp_path / "g").search(folder / "s1" / "1.pgm")
    # Its raw features are still the gallery's, under their old fingerprint.
    raw = facerep.load_encoder(run, whiten=False)
    assert facerep.Gallery(tmp_path / "g", raw).search(folder / "s1" / "1.pgm")[0].label == "s1"


def test_two_gallery_adds_of_one_folder_at_once_enrol_each_photo_once(
    shared_data: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    folder = link_orl(shared_data, tmp_path / "people", range(1, 6), range(1, 5))
    command = [sys.executable, "-m", "facerep", "gallery", "add", str(tmp_path / "g"),
               str(folder), "--json"]  # fmt: skip
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    summaries = [json.loads(run.communicate(timeout=300)[0]) for run in runs]
    assert all(run.returncode == 0 for run in runs)
    gallery = Gallery(tmp_path / "g")
    assert len(gallery) == 20 and gallery.labels() == {f"s{i}": 4 for i in range(1, 6)}
    assert sum(s["added"] for s in summaries) == 20
