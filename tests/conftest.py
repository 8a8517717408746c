"""Shared fixtures: the real face data beside the checkout, and small generated face folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (ORL, cs131_faces, faces_unlabeled); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA} (it is not shipped with the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def lfw_faces() -> np.ndarray:
    """The 100 real 25x25 LFW face crops that scikit-image ships, as uint8 `[100, 25, 25]`."""
    from facerep.data.builtin import builtin_items
    from facerep.images import load_image

    # The pixels `builtin:lfw-sample` gives prepare, one grey channel of each.
    items = builtin_items("lfw-sample")
    return np.stack([load_image(item.load_array())[:, :, 0] for item in items])


def write_face_folder(root: Path, faces: np.ndarray, per_identity: int, upscale: int = 4) -> Path:
    """Write `faces` as PNGs in identity folders `root/id<k>/<n>.png`, upscaled for detection."""
    for i, face in enumerate(faces):
        folder = root / f"id{i // per_identity}"
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(face).resize((face.shape[1] * upscale, face.shape[0] * upscale))
        image.save(folder / f"{i % per_identity}.png")
    return root


@pytest.fixture(scope="session")
def lfw_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in LFW sample prepared at 32 px (over 90 faces, no identities)."""
    from facerep.data.prepare import PrepareOptions, prepare_dataset

    out = tmp_path_factory.mktemp("lfw32") / "data"
    prepare_dataset("builtin:lfw-sample", out, PrepareOptions(size=32))
    return out


@pytest.fixture(scope="session")
def lfw_teacher(lfw_dataset: Path) -> Path:
    """The LFW sample with dlib's embeddings of 2 fixed views of each face cached beside it."""
    from facerep.train.teacher import build_teacher_cache

    build_teacher_cache(lfw_dataset, "dlib", views=2, workers=1)
    return lfw_dataset


def link_orl(shared_data: Path, root: Path, people: range, images: range) -> Path:
    """A folder per ORL person (`root/s<k>/<n>.pgm`) of symlinks to the real photos."""
    for person in people:
        folder = root / f"s{person}"
        folder.mkdir(parents=True, exist_ok=True)
        for n in images:
            (folder / f"{n}.pgm").symlink_to(shared_data / "orl" / f"s{person}" / f"{n}.pgm")
    return root


@pytest.fixture(scope="session")
def tiny_run(lfw_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vit-test run pretrained for two epochs on the LFW sample: a facerep encoder in seconds."""
    from facerep.train.config import TrainConfig
    from facerep.train.loop import pretrain

    out = tmp_path_factory.mktemp("runs") / "vit-test-run"
    config = TrainConfig(datasets=(str(lfw_dataset),), out=str(out), model="vit-test", epochs=2,
                         batch_size=16, warmup_epochs=1.0, lr=2e-3, threads=1)
    pretrain(config)
    return out


@pytest.fixture(autouse=True)
def facerep_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Calibrations go to a fresh folder per test, never to the user's ~/.facerep."""
    home = tmp_path_factory.mktemp("facerep-home")
    monkeypatch.setenv("FACEREP_HOME", str(home))
    return home
