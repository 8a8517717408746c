"""Shared fixtures: the real face data beside the checkout, and small generated face folders."""

from __future__ import annotations

import math
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
    """The built-in LFW sample prepared at 32 px (92 faces, no identities).

    The first look alone: the training tests' step counts are set on its 92 faces (the cascade
    finds 97, see tests/data/test_prepare_cascade.py).
    """
    from facerep.data.prepare import PrepareOptions, prepare_dataset

    out = tmp_path_factory.mktemp("lfw32") / "data"
    prepare_dataset("builtin:lfw-sample", out, PrepareOptions(size=32, cascade=False))
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
    return pretrain_vit_test(lfw_dataset, tmp_path_factory.mktemp("runs") / "vit-test-run", 2)


def pretrain_vit_test(dataset: Path, out: Path, epochs: int, **overrides: object) -> Path:
    """Pretrain vit-test on `dataset` into `out` with the tests' small settings; returns `out`."""
    from facerep.train.config import TrainConfig
    from facerep.train.loop import pretrain

    settings = {"batch_size": 16, "warmup_epochs": 1.0, "lr": 2e-3, "threads": 1, **overrides}
    config = TrainConfig(
        datasets=(str(dataset),), out=str(out), model="vit-test", epochs=epochs, **settings
    )
    pretrain(config)
    return out


# Faces of the LFW sample the occlusion prior is fitted on; the rest are unseen test faces.
PRIOR_FACES = 70


@pytest.fixture(scope="session")
def pixel_run(lfw_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vit-test MAE reconstructing raw pixels, 8 epochs on the LFW sample, with an occlusion
    prior fitted on its first `PRIOR_FACES` faces."""
    from facerep.data.store import open_dataset
    from facerep.tasks.occlusion import OcclusionMapper, fit_occlusion_prior
    from facerep.tasks.occlusion_prior import save_prior

    out = tmp_path_factory.mktemp("runs") / "pixel-run"
    pretrain_vit_test(lfw_dataset, out, 8, model_overrides={"norm_pix_loss": False})
    crops = np.asarray(open_dataset(lfw_dataset).crops)
    save_prior(out, fit_occlusion_prior(OcclusionMapper(out, prior=False), crops[:PRIOR_FACES]))
    return out


@pytest.fixture(autouse=True)
def facerep_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Calibrations go to a fresh folder per test, never to the user's ~/.facerep."""
    home = tmp_path_factory.mktemp("facerep-home")
    monkeypatch.setenv("FACEREP_HOME", str(home))
    return home


def turned(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """`image` rolled about its centre on a grey canvas, and the 3x3 map from it to the result."""
    height, width = image.shape[:2]
    side = math.ceil(math.hypot(width, height))
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    centre_in, centre_out = np.array([(width - 1) / 2, (height - 1) / 2]), (side - 1) / 2
    back = np.eye(3)
    back[:2, :2] = [[c, -s], [s, c]]
    back[:2, 2] = centre_in - back[:2, :2] @ [centre_out, centre_out]
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    coefficients = tuple((half @ back @ np.linalg.inv(half))[:2].reshape(-1))
    out = Image.fromarray(image).transform(
        (side, side),
        Image.Transform.AFFINE,
        coefficients,
        Image.Resampling.BICUBIC,
        fillcolor=(128, 128, 128),
    )
    return np.asarray(out), np.linalg.inv(back)
