"""Clustering a photo folder by person: ORL identities recovered, the folders written safely."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import facerep
from facerep.eval.clustering import pairwise_scores
from facerep.outputs import OutputError
from facerep.tasks.cluster import UNMATCHED, Clustering, _person_labels, write_clusters
from tests.conftest import link_orl


def test_groups_are_numbered_by_size_and_loners_are_unmatched() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16))
    sizes = [2, 5, 1]
    x = np.concatenate(
        [
            np.repeat(c[None], n, 0) + 0.05 * rng.standard_normal((n, 16))
            for c, n in zip(centres, sizes, strict=True)
        ]
    )
    labels = _person_labels(x / np.linalg.norm(x, axis=1, keepdims=True), threshold=0.2)
    assert labels.tolist() == [1, 1, 0, 0, 0, 0, 0, UNMATCHED]
    assert _person_labels(np.zeros((0, 16)), 0.2).shape == (0,)


def test_the_threshold_is_the_cosine_distance_faces_join_below() -> None:
    # Two pairs of faces on opposite sides of the circle, 0.15 and 0.25 apart in cosine distance.
    angles = [0.0, np.arccos(1 - 0.15), np.pi, np.pi + np.arccos(1 - 0.25)]
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert _person_labels(x, threshold=0.2).tolist() == [0, 0, UNMATCHED, UNMATCHED]
    assert _person_labels(x, threshold=0.3).tolist() == [0, 0, 1, 1]
    assert _person_labels(x, threshold=0.1).tolist() == [UNMATCHED] * 4


@pytest.fixture(scope="module")
def orl_folder(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 ORL people x 5 photos, plus a photo with no face and a corrupt one."""
    root = link_orl(
        shared_data, tmp_path_factory.mktemp("cluster") / "photos", range(1, 9), range(1, 6)
    )
    Image.new("RGB", (200, 200), (90, 90, 90)).save(root / "wall.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def test_clustering_orl_recovers_the_people(orl_folder: Path, tmp_path: Path) -> None:
    clustering = facerep.cluster(orl_folder)
    truth = [Path(face.source).parent.name for face in clustering.faces]
    predicted = [
        face.cluster if face.cluster != UNMATCHED else -1 - i
        for i, face in enumerate(clustering.faces)
    ]
    _, _, f1 = pairwise_scores(np.unique(truth, return_inverse=True)[1], np.array(predicted))
    assert len(clustering.faces) == 40 and f1 >= 0.9
    assert sorted(Path(s).name for s, _ in clustering.failures) == ["broken.jpg", "wall.png"]

    out = write_clusters(clustering, tmp_path / "people")
    rows = list(csv.DictReader((out / "clusters.csv").read_text().splitlines()))
    assert len(rows) == 40 and {r["folder"] for r in rows} == {
        f"person-{i:03d}" for i in range(1, 9)
    }
    for row in rows:
        placed = out / row["folder"] / row["file"]
        assert placed.is_symlink() and placed.resolve() == Path(row["source"]).resolve()
    failures = list(csv.DictReader((out / "failures.csv").read_text().splitlines()))
    assert {Path(r["source"]).name: r["reason"] for r in failures}["wall.png"] == "no face found"

    with pytest.raises(OutputError, match="not empty"):
        write_clusters(clustering, out)
    write_clusters(clustering, out, mode="copy", overwrite=True)
    assert not (out / "person-001").iterdir().__next__().is_symlink()


def test_an_out_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(OutputError, match="taken: exists and is not a folder"):
        write_clusters(Clustering([], 0.1), tmp_path / "taken")
