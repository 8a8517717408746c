"""The friendly verbs on real photos: embed, verify and their errors, with dlib and with a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import facerep


def orl(shared_data: Path, person: int, image: int) -> Path:
    return shared_data / "orl" / f"s{person}" / f"{image}.pgm"


def test_verify_with_dlib_on_sampled_orl_pairs(shared_data: Path) -> None:
    rng = np.random.default_rng(0)
    verdicts, truth = [], []
    while len(verdicts) < 60:
        same = len(verdicts) % 2 == 0
        p, q = rng.choice(np.arange(1, 41), size=2, replace=False)
        a, b = rng.choice(np.arange(1, 11), size=2, replace=False)
        try:
            verdicts.append(
                facerep.verify(orl(shared_data, p, a), orl(shared_data, p if same else q, b))
            )
        except facerep.NoFaceError:
            continue  # ORL s33/4.pgm: a face HOG cannot find
        truth.append(same)
    accuracy = np.mean([v.same == t for v, t in zip(verdicts, truth, strict=True)])
    assert accuracy >= 0.95
    assert all(v.threshold == 0.08 and v.same == (v.distance <= v.threshold) for v in verdicts)


def test_embed_gives_every_face_a_unit_embedding(shared_data: Path) -> None:
    [face] = facerep.embed(orl(shared_data, 1, 1))
    assert face.embedding.shape == (128,) and face.embedding.dtype == np.float32
    assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
    assert face.landmarks.shape == (5, 2) and face.box.width > 40
    assert face.crop.shape == (150, 150, 3)


def test_no_face_and_bad_photos_are_clear_errors(shared_data: Path, tmp_path: Path) -> None:
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (120, 130, 140)).save(blank)
    assert facerep.embed(blank) == []
    with pytest.raises(facerep.NoFaceError, match=r"wall.png: no face found$"):
        facerep.verify(blank, orl(shared_data, 1, 1))
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    too_small = r"tiny\.png: no face found: image too small to hold a face \(8x8 px\)$"
    with pytest.raises(facerep.NoFaceError, match=too_small):
        facerep.verify(orl(shared_data, 1, 1), tiny)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(facerep.ImageError, match=r"broken\.jpg: "):
        facerep.verify(broken, orl(shared_data, 1, 1))


def test_a_run_verifies_once_it_has_a_threshold(tiny_run: Path, shared_data: Path) -> None:
    a, b = orl(shared_data, 1, 1), orl(shared_data, 1, 2)
    with pytest.raises(ValueError, match="has no verification threshold: run `facerep calibrate"):
        facerep.verify(a, b, tiny_run)
    verdict = facerep.verify(a, b, tiny_run, threshold=0.5)
    assert 0 <= verdict.distance <= 2 and verdict.threshold == 0.5
    [face] = facerep.embed(a, tiny_run)
    assert face.embedding.shape == (facerep.load_encoder(tiny_run).dim,)
