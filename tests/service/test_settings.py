"""Startup refusals (writes without a token, insecure-local off loopback), tokens and names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from facerep.service import ServiceSettings, create_app
from facerep.service.errors import ServiceError
from facerep.service.galleries import check_gallery_name
from facerep.service.settings import check_host, is_loopback, read_token


def test_writes_without_a_token_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no token is set: set FACEREP_TOKEN"):
        create_app(ServiceSettings(gallery_dir=tmp_path))
    create_app(ServiceSettings(gallery_dir=tmp_path, read_only=True))
    create_app(ServiceSettings(gallery_dir=tmp_path, token="t0ken"))
    create_app(ServiceSettings(gallery_dir=tmp_path, insecure_local=True))


def test_insecure_local_only_on_loopback(tmp_path: Path) -> None:
    settings = ServiceSettings(gallery_dir=tmp_path, insecure_local=True)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        check_host(settings, host)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org", "localhost.evil.com"):
        with pytest.raises(ValueError, match="only on a loopback"):
            check_host(settings, host)
    check_host(ServiceSettings(gallery_dir=tmp_path, token="t"), "0.0.0.0")


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (dict(token="   "), "^the token is empty$"),
        (dict(token="t", batch_size=0), "^batch size and detect workers must be at least 1"),
        (dict(token="t", detect_workers=0), "^batch size and detect workers must be at least 1"),
        (dict(token="t", batch_wait_ms=-1.0), "the wait at least 0$"),
        (dict(token="t", max_upload_bytes=0), "^the upload and pixel limits must be positive$"),
        (dict(token="t", max_pixels=0), "^the upload and pixel limits must be positive$"),
        (dict(token="t", max_in_flight=0), "^the limit of requests in flight must be at least 1$"),
        (dict(read_only=True, gallery_dir="missing"), r"/missing: no such folder \(--read-only"),
        (dict(token="t", body_timeout=0.0), "^the header and body timeouts must be positive$"),
        (dict(token="t", header_timeout=-1.0), "^the header and body timeouts must be positive$"),
        (dict(token="t", max_client_connections=-1), "^the limit of connections per client"),
    ],
    ids=[
        "blank-token",
        "batch",
        "workers",
        "wait",
        "upload",
        "pixels",
        "in-flight",
        "read-only-no-folder",
        "body-timeout",
        "header-timeout",
        "client-connections",
    ],
)
def test_other_bad_settings(tmp_path: Path, bad: dict, match: str) -> None:
    options = dict(bad)
    folder = tmp_path / options.pop("gallery_dir", "")  # under tmp_path, whatever the case
    with pytest.raises(ValueError, match=match):
        create_app(ServiceSettings(gallery_dir=folder, **options))


def test_token_from_file_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACEREP_TOKEN", raising=False)
    assert read_token(None) is None
    monkeypatch.setenv("FACEREP_TOKEN", " from-env \n")
    assert read_token(None) == "from-env"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert read_token(token_file) == "from-file"  # the explicit flag wins
    token_file.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_token(token_file)
    with pytest.raises(ValueError, match="cannot read"):
        read_token(tmp_path / "missing")


@pytest.mark.parametrize("name", ["team", "a", "A-1_b", "x" * 64, "007"])
def test_valid_gallery_names(name: str) -> None:
    assert check_gallery_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "a\\b", ".x", "-x", "_x", "x" * 65, "a\n", "a\0", "é"]
)
def test_invalid_gallery_names(name: str) -> None:
    with pytest.raises(ServiceError) as raised:
        check_gallery_name(name)
    assert raised.value.status == 422


def serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "facerep", "serve", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_cli_refuses_to_start_unsafe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACEREP_TOKEN", raising=False)
    folder = str(tmp_path / "g")
    result = serve("--gallery-dir", folder)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: writes are enabled but no token is set")
    assert len(result.stderr.strip().splitlines()) == 1
    result = serve("--gallery-dir", folder, "--insecure-local", "--host", "0.0.0.0")
    assert result.returncode == 2 and "only on a loopback --host" in result.stderr
    result = serve("--gallery-dir", folder, "--token-file", str(tmp_path / "nope"))
    assert result.returncode == 2 and "cannot read the token file" in result.stderr
    assert not (tmp_path / "g").exists()


def test_cli_refuses_a_gallery_dir_that_is_a_file(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"not a folder")
    refusals = [
        (serve("--gallery-dir", str(photo), "--read-only"), f"{photo}: not a folder"),
        (serve("--gallery-dir", str(photo), "--insecure-local"), f"{photo}: not a folder"),
        (
            serve("--gallery-dir", str(photo / "g"), "--insecure-local"),
            f"{photo / 'g'}: cannot create the gallery folder (Not a directory)",
        ),
    ]
    for result, message in refusals:
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"error: {message}"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert photo.read_bytes() == b"not a folder"


def test_cli_refuses_an_unfitted_encoder(tmp_path: Path) -> None:
    result = serve("--gallery-dir", str(tmp_path / "g"), "--insecure-local", "--encoder", "pca")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: encoder pca must be fitted on labelled faces first")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()


def test_an_unfitted_estimator_passed_from_python_is_refused() -> None:
    import numpy as np

    from facerep.encoders.pca import PCAEncoder
    from facerep.encoders.registry import check_ready

    with pytest.raises(ValueError, match="encoder pca must be fitted on labelled faces first"):
        check_ready(PCAEncoder())
    faces = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    fitted = PCAEncoder(n_components=4).fit(faces)
    assert check_ready(fitted) is fitted
