"""`facerep eval` through the real entry point: the report, its keys and the numbers' order."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from facerep.data.prepare import PrepareOptions, prepare_dataset
from tests.cli.test_app import facerep
from tests.conftest import link_orl

KEYS = {"verification_accuracy", "verification_std", "roc_auc", "tar_at_far_1e-2", "rank1",
        "rank5", "pairwise_f1", "bcubed_f1", "nmi", "split"}


@pytest.fixture(scope="module")
def orl_small(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 ORL identities (all 10 images each) prepared at 48 px."""
    root = tmp_path_factory.mktemp("orl")
    link_orl(shared_data, root / "src", range(1, 13), range(1, 11))
    prepare_dataset(root / "src", root / "data", PrepareOptions(size=48))
    return root / "data"


def test_eval_writes_the_report_and_ranks_the_encoders(orl_small: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = facerep("eval", str(orl_small), "-e", "pixels", "-e", "pca", "-e", "dlib",
                     "--whiten", "off", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "dlib" in result.stdout and "report.html" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"pixels", "pca", "dlib"}
    for metrics in results.values():
        assert metrics.keys() >= KEYS
        assert metrics["split"]["heldout_identities"] == results["dlib"]["split"][
            "heldout_identities"]
    assert len(results["dlib"]["split"]["heldout_identities"]) == 6
    accuracy = {name: m["verification_accuracy"] for name, m in results.items()}
    assert accuracy["dlib"] > 0.97 and accuracy["dlib"] > accuracy["pca"] > 0.6
    for name in ("report.md", "report.html", "roc.png", "tsne.png", "neighbours_dlib.png"):
        assert (out / name).is_file(), name


def test_eval_usage_errors(orl_small: Path, lfw_dataset: Path, tmp_path: Path) -> None:
    unknown = facerep("eval", str(orl_small), "-e", "nonsense", "--out", str(tmp_path / "r"))
    assert unknown.returncode == 2 and "not an encoder name" in unknown.stderr
    flat = facerep("eval", str(lfw_dataset), "-e", "pixels", "--out", str(tmp_path / "r"))
    assert flat.returncode == 2 and "has no identities" in flat.stderr
    pca_alone = facerep("eval", str(orl_small), "-e", "pca", "--all-heldout",
                        "--out", str(tmp_path / "r"))
    assert pca_alone.returncode == 2 and "drop --all-heldout" in pca_alone.stderr
    # Asked-for variants that cannot be made are refused, not silently left out.
    whiten_heldout = facerep("eval", str(orl_small), "-e", "pixels", "--all-heldout",
                             "--whiten", "both", "--out", str(tmp_path / "r"))
    assert whiten_heldout.returncode == 2
    assert "--whiten both: whitening is fitted on training identities" in whiten_heldout.stderr
    assert len(whiten_heldout.stderr.strip().splitlines()) == 1
    pool_pixels = facerep("eval", str(orl_small), "-e", "pixels", "--pool", "2",
                          "--out", str(tmp_path / "r"))
    assert pool_pixels.returncode == 2
    assert "pooling grid 2: needs patch tokens" in pool_pixels.stderr
    assert len(pool_pixels.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_attribute_probes_from_utkface_names(lfw_faces, tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "utk"
    src.mkdir()
    for i, face in enumerate(lfw_faces[:60]):
        # Fake labels: gender alternates, so the probe runs but has nothing real to find.
        name = f"{20 + i}_{i % 2}_{i % 5}_20170101{i:04d}.png"
        Image.fromarray(face).resize((100, 100)).save(src / name)
    (src / "not_utkface.png").write_bytes((src / "20_0_0_201701010000.png").read_bytes()[::-1])
    prepare_dataset(src, tmp_path / "data", PrepareOptions(size=32))
    out = tmp_path / "report"
    result = facerep("eval", str(tmp_path / "data"), "-e", "pixels", "--attributes", "utkface",
                     "--attribute", "gender", "--whiten", "off", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)["pixels"]["gender"]
    assert {"accuracy", "roc_auc", "majority_accuracy", "test_faces"} <= probe.keys()
    assert 15 <= probe["test_faces"] <= 21  # a third of the ~55 labelled faces
    assert (out / "attributes.md").is_file()
    quiet = facerep("eval", str(tmp_path / "data"), "-e", "pixels", "--attributes", "utkface",
                    "--attribute", "gender", "--whiten", "off", "--out", str(out), "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "", quiet.stderr
    table = facerep("eval", str(tmp_path / "data"), "-e", "pixels", "--attributes", "utkface",
                    "--attribute", "gender", "--whiten", "off", "--out", str(out))
    assert table.returncode == 0, table.stderr
    assert "test faces" in table.stdout and "attributes.md" in table.stdout
    missing = facerep("eval", str(tmp_path / "data"), "-e", "pixels", "--attributes",
                      str(tmp_path / "nope.csv"), "--out", str(out))
    assert missing.returncode == 2 and "cannot read labels" in missing.stderr


def test_eval_refuses_its_output_before_the_work(orl_small: Path, tmp_path: Path) -> None:
    taken = tmp_path / "results.html"
    taken.write_text("an existing file")
    started = time.monotonic()
    result = facerep("eval", str(orl_small), "-e", "dlib", "--out", str(taken))
    assert result.returncode == 2 and f"{taken}: exists and is not a folder" in result.stderr
    assert "evaluating" not in result.stderr and time.monotonic() - started < 10
    assert taken.read_text() == "an existing file"
    inside = facerep("eval", str(orl_small), "-e", "pixels", "--out", str(orl_small / "r"))
    assert inside.returncode == 2 and "is inside the input" in inside.stderr


def test_too_few_identities_is_a_user_level_message(orl_small: Path, tmp_path: Path) -> None:
    # 12 identities, 95% for training: one held-out person has no impostor pairs.
    result = facerep("eval", str(orl_small), "-e", "pixels", "--train-fraction", "0.95",
                     "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "too few held-out identities" in result.stderr
    assert "make_pairs" not in result.stderr and "max_genuine" not in result.stderr
    assert "lower train fraction" in result.stderr and not (tmp_path / "r").exists()
