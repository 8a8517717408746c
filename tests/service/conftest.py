"""Service fixtures: apps on temporary gallery folders, their clients, photos as upload bytes."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from facerep.service import ServiceSettings, create_app

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def png_bytes(pixels: np.ndarray) -> bytes:
    """An RGB or grey uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    """An RGB or grey uint8 array as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def astronaut_jpeg() -> bytes:
    """scikit-image's astronaut portrait (one face, shipped with scikit-image) as JPEG bytes."""
    from skimage.data import astronaut

    return jpeg_bytes(astronaut())


@pytest.fixture(scope="session")
def orl(shared_data: Path) -> Callable[[int, int], bytes]:
    """`orl(person, n)`: the bytes of ORL photo s<person>/<n>.pgm (skips without the data)."""
    root = shared_data / "orl"
    if not (root / "s1" / "1.pgm").is_file():
        pytest.skip(f"ORL faces not found under {root}")
    return lambda person, n: (root / f"s{person}" / f"{n}.pgm").read_bytes()


@contextmanager
def open_client(settings: ServiceSettings, home: Path) -> Iterator[TestClient]:
    """A TestClient with the app's lifespan running, calibrations isolated under `home`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACEREP_HOME", str(home))  # a stored dlib calibration must not leak in
        with TestClient(create_app(settings)) as client:
            yield client


@pytest.fixture(scope="module")
def service_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh folder per test module, holding `galleries/` and `home/`."""
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="module")
def client(service_dir: Path) -> Iterator[TestClient]:
    """A dlib server with a token and a small upload limit (200 KB), shared by a module."""
    settings = ServiceSettings(
        gallery_dir=service_dir / "galleries", token=TOKEN, max_upload_bytes=200_000
    )
    with open_client(settings, service_dir / "home") as running:
        yield running
