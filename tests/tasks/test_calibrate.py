"""Threshold calibration: the FAR it promises, where it is stored, and who picks it up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import facerep
from facerep.encoders.calibration import calibration_path, current_threshold, load_calibration
from facerep.encoders.registry import resolve_encoder
from facerep.tasks.calibrate import calibrate, calibrate_threshold, calibration_faces
from facerep.train.whiten import whiten_run
from tests.conftest import link_orl


def clustered(n_people: int, per_person: int, spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_people, 32))
    x = np.repeat(centres, per_person, axis=0) + spread * rng.standard_normal(
        (n_people * per_person, 32)
    )
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(n_people), per_person)


@pytest.mark.parametrize("far", [1e-1, 1e-2, 1e-3])
def test_the_threshold_keeps_the_false_accept_rate_within_target(far: float) -> None:
    vectors, ids = clustered(40, 5, spread=1.2)
    result = calibrate_threshold(vectors, ids, far)
    distances = 1 - vectors @ vectors.T
    i, j = np.triu_indices(len(ids), 1)
    impostor = distances[i, j][ids[i] != ids[j]]
    assert result["far"] == pytest.approx(np.mean(impostor <= result["threshold"]))
    assert result["far"] <= far
    # The threshold is the loosest one that keeps the promise: the next impostor breaks it.
    assert np.mean(impostor <= np.min(impostor[impostor > result["threshold"]])) > far
    assert result["impostor_pairs"] == len(impostor) and 0 < result["tar"] <= 1


def test_too_few_impostor_pairs_for_the_far_is_refused() -> None:
    vectors, ids = clustered(3, 3, spread=0.5)
    with pytest.raises(ValueError, match="needs at least 1000 impostor pairs; this data has 27"):
        calibrate_threshold(vectors, ids, 1e-3)
    with pytest.raises(ValueError, match="between 0 and 1"):
        calibrate_threshold(vectors, ids, 0)


def test_a_builtin_encoders_calibration_is_stored_in_facerep_home(facerep_home: Path) -> None:
    encoder = facerep.load_encoder("dlib")
    vectors, ids = clustered(30, 4, spread=0.6)
    result = calibrate(encoder, vectors, ids, 1e-2, "synthetic")
    assert calibration_path(encoder) == facerep_home / "calibration" / "dlib.json"
    assert load_calibration(encoder) == result
    assert current_threshold(facerep.load_encoder("dlib")) == result.threshold
    assert current_threshold(resolve_encoder("dlib")) == result.threshold  # the cached one too
    calibration_path(encoder).unlink()
    assert current_threshold(resolve_encoder("dlib")) == 0.08  # back to dlib's built-in
    calibration_path(encoder).write_text("{broken")
    with pytest.raises(ValueError, match=r"dlib\.json: unreadable calibration"):
        current_threshold(facerep.load_encoder("dlib"))


def test_calibrating_a_run_on_orl_stores_the_threshold_in_the_run(
    tiny_run: Path, shared_data: Path, tmp_path: Path
) -> None:
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))  # the shared run stays uncalibrated
    folder = link_orl(shared_data, tmp_path / "orl", range(1, 21), range(1, 11))
    encoder = facerep.load_encoder(run)
    embeddings, identities, failures = calibration_faces(folder, encoder)
    assert len(set(identities)) == 10 and not failures  # the held-out half only
    result = calibrate(encoder, embeddings, identities, 1e-2, str(folder))
    assert (run / "calibration.json").is_file()
    assert current_threshold(facerep.load_encoder(run)) == result.threshold
    verdict = facerep.verify(folder / "s1" / "1.pgm", folder / "s1" / "2.pgm", run)
    assert verdict.threshold == result.threshold
    # The threshold belongs to these vectors: not to the raw features, nor to a refitted
    # whitening, nor (written before fingerprints) to whitened vectors at all.
    assert current_threshold(facerep.load_encoder(run, whiten=False)) is None
    whiten_run(run, max_faces=60)
    assert current_threshold(facerep.load_encoder(run)) is None
    stored = json.loads((run / "calibration.json").read_text())
    del stored["fingerprint"]
    (run / "calibration.json").write_text(json.dumps(stored))
    assert current_threshold(facerep.load_encoder(run)) is None
    assert current_threshold(facerep.load_encoder(run, whiten=False)) == result.threshold


def test_a_run_is_calibrated_on_the_identities_its_own_split_held_out(
    tiny_run: Path, shared_data: Path, tmp_path: Path
) -> None:
    from facerep.data.splits import split_identities

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    config["train"].update(holdout_fraction=0.25, split_seed=3)
    (run / "config.json").write_text(json.dumps(config))
    folder = link_orl(shared_data, tmp_path / "orl", range(1, 21), range(1, 3))
    _, identities, _ = calibration_faces(folder, facerep.load_encoder(run))
    names = [f"s{i}" for i in range(1, 21)]
    assert sorted(set(identities)) == split_identities(names, 0.75, 3)[1]
    assert len(set(identities)) == 5


def test_a_prepared_dataset_is_embedded_with_progress(
    tmp_path: Path, lfw_faces: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facerep.data.prepare import PrepareOptions, prepare_dataset
    from facerep.data.store import open_dataset
    from facerep.tasks import calibrate as calibration
    from tests.conftest import write_face_folder

    src = write_face_folder(tmp_path / "src", lfw_faces[:8], per_identity=2)
    prepare_dataset(src, tmp_path / "data", PrepareOptions(size=32))
    monkeypatch.setattr(calibration, "EMBED_CHUNK", 3)
    calls: list[tuple[int, int]] = []
    encoder = facerep.load_encoder("pixels")
    embeddings, identities, _ = calibration_faces(
        tmp_path / "data", encoder, held_out_only=False, on_progress=lambda *c: calls.append(c)
    )
    total = len(identities)
    assert total >= 6 and calls[-1] == (total, total) and len(calls) == -(-total // 3)
    whole = encoder.embed(np.asarray(open_dataset(tmp_path / "data").crops))
    assert np.allclose(embeddings, whole)  # every face has an identity: all rows, in order


def test_a_calibration_is_read_once_per_version_of_its_file(
    facerep_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json as jsonlib

    encoder = facerep.load_encoder("dlib")
    calibrate(encoder, *clustered(30, 4, spread=0.6), 1e-2, "synthetic")
    reads = []
    real = jsonlib.loads
    monkeypatch.setattr("facerep.encoders.calibration.json.loads",
                        lambda text: reads.append(1) or real(text))  # fmt: skip
    first = current_threshold(encoder)
    assert [current_threshold(encoder) for _ in range(5)] == [first] * 5 and len(reads) == 1
    calibrate(encoder, *clustered(30, 4, spread=0.3), 1e-2, "again")  # a new file version
    assert current_threshold(encoder) != first and len(reads) == 2
