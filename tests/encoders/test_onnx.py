"""Export to ONNX: the file alone is the run's encoder (parity, metadata); bad files are named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

import facerep
from facerep.data.store import open_dataset
from facerep.encoders.calibration import Calibration, current_threshold, save_calibration
from facerep.encoders.onnx import OnnxEncoder
from facerep.encoders.onnx_export import export_onnx
from tests.cli.test_app import facerep as facerep_cli
from tests.conftest import link_orl


@pytest.fixture(scope="module")
def calibrated_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = shutil.copytree(tiny_run, tmp_path_factory.mktemp("onnx") / "run")
    encoder = facerep.load_encoder(run)
    save_calibration(encoder, Calibration(
        encoder.name, 0.3125, 1e-3, 8e-4, 0.9, 10, 100, 20, 4, "orl", "2026-12-02",
        encoder.fingerprint,
    ))  # fmt: skip
    return run


@pytest.fixture(scope="module")
def exported(calibrated_run: Path) -> Path:
    path = calibrated_run.parent / "model.onnx"
    export_onnx(calibrated_run, path)
    return path


@pytest.mark.parametrize("count", [1, 37])
def test_onnxruntime_gives_the_runs_embeddings(
    calibrated_run: Path, exported: Path, lfw_dataset: Path, count: int
) -> None:
    crops = np.asarray(open_dataset(lfw_dataset).crops[:count])
    run, shipped = facerep.load_encoder(calibrated_run), facerep.load_encoder(exported)
    assert isinstance(shipped, OnnxEncoder) and shipped.dim == run.dim
    np.testing.assert_allclose(shipped.embed(crops), run.embed(crops), atol=1e-4, rtol=0)


def test_the_file_carries_what_a_user_needs(calibrated_run: Path, exported: Path) -> None:
    run, shipped = facerep.load_encoder(calibrated_run), OnnxEncoder(exported)
    assert shipped.fingerprint == run.fingerprint  # the same vectors: galleries take both
    assert shipped.input_size == 32 and shipped.default_threshold == 0.3125
    assert shipped.whitened and json.loads(shipped.metadata["mean"]) == [0.485, 0.456, 0.406]
    assert shipped.metadata["input"] == "uint8 [N, 32, 32, 3] RGB aligned crops"


def test_bad_files_are_one_line_errors(exported: Path, tmp_path: Path) -> None:
    garbage, torn, foreign = (tmp_path / f"{n}.onnx" for n in ("garbage", "torn", "foreign"))
    garbage.write_bytes(b"not a model at all")
    torn.write_bytes(exported.read_bytes()[: exported.stat().st_size // 2])
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(
        [node], "g", [value("x", onnx.TensorProto.FLOAT, [1])],
        [value("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), foreign)
    for path, reason in [
        (garbage, "not a readable ONNX model"),
        (torn, "not a readable ONNX model"),
        (foreign, "an ONNX model, but not a facerep encoder"),
        (tmp_path / "absent.onnx", "no such ONNX file"),
    ]:
        with pytest.raises(ValueError, match=reason) as error:
            facerep.load_encoder(path)
        assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_export_never_writes_over_a_file_or_outside_dot_onnx(
    calibrated_run: Path, exported: Path, tmp_path: Path
) -> None:
    before = exported.read_bytes()
    with pytest.raises(ValueError, match="already exists"):
        export_onnx(calibrated_run, exported)
    assert exported.read_bytes() == before
    with pytest.raises(ValueError, match=r"must end in \.onnx"):
        export_onnx(calibrated_run, tmp_path / "model.bin")


def test_the_cli_exports_and_every_tool_takes_the_file(
    calibrated_run: Path, shared_data: Path, tmp_path: Path
) -> None:
    path = tmp_path / "cli.onnx"
    result = facerep_cli("export", str(calibrated_run), "--onnx", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["threshold"] == "0.3125"
    photos = link_orl(shared_data, tmp_path / "orl", range(1, 3), range(1, 3))
    verdict = facerep_cli(
        "verify", str(photos / "s1" / "1.pgm"), str(photos / "s1" / "2.pgm"), "-e", str(path),
        "--json",
    )
    assert verdict.returncode == 0, verdict.stderr
    assert json.loads(verdict.stdout)["threshold"] == 0.3125
    gallery = str(tmp_path / "gallery")
    made = facerep_cli("gallery", "add", gallery, str(photos / "s1"), "--label", "s1", "-q",
                       "-e", str(calibrated_run))  # fmt: skip
    assert made.returncode == 0, made.stderr
    more = facerep_cli("gallery", "add", gallery, str(photos / "s2"), "--label", "s2", "-q",
                       "-e", str(path))  # fmt: skip
    assert more.returncode == 0, more.stderr  # the run's vectors: the same gallery
    bad = facerep_cli("verify", str(photos / "s1" / "1.pgm"), str(photos / "s1" / "2.pgm"),
                      "-e", str(tmp_path / "absent.onnx"))  # fmt: skip
    assert bad.returncode == 2 and "absent.onnx: no such ONNX file" in bad.stderr


def test_calibrate_and_serve_take_the_file(
    exported: Path, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from facerep.service import ServiceSettings, create_app

    monkeypatch.setenv("FACEREP_HOME", str(tmp_path / "home"))  # the file's calibration lands here
    folder = link_orl(shared_data, tmp_path / "orl", range(1, 17), range(1, 9))
    result = facerep_cli("calibrate", str(folder), "-e", str(exported), "--far", "1e-2", "--json")
    assert result.returncode == 0, result.stderr
    calibration = json.loads(result.stdout)
    assert Path(calibration["stored"]).is_relative_to(tmp_path / "home")
    # The new calibration, not the one the file carries (0.3125), is the file's threshold now.
    assert current_threshold(OnnxEncoder(exported)) == calibration["threshold"] != 0.3125
    photos = {k: (folder / "s1" / f"{n}.pgm").read_bytes() for k, n in (("a", 1), ("b", 2))}
    (tmp_path / "galleries").mkdir()
    settings = ServiceSettings(
        gallery_dir=tmp_path / "galleries", encoder=str(exported), read_only=True
    )
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/verify", files={k: (f"{k}.pgm", v) for k, v in photos.items()})
    assert answer.status_code == 200, answer.text
    assert answer.json()["threshold"] == calibration["threshold"]
