"""The teacher cache: dlib's embeddings of fixed views, built once, resumed, extended, checked."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from facerep.data.store import CROPS_FILE, open_dataset
from facerep.encoders.dlib import DlibEncoder
from facerep.train import teacher
from facerep.train.augment import augment, compose, sample_nudges
from facerep.train.teacher import (
    build_teacher_cache,
    cache_dir,
    chunk_path,
    load_teacher_targets,
    missing_chunks,
)


def test_view_zero_is_the_crop_and_the_others_are_mild_views(lfw_teacher: Path) -> None:
    data = open_dataset(lfw_teacher)
    rows = np.arange(len(data))
    targets = load_teacher_targets(lfw_teacher, "dlib", 2, rows)
    assert targets.embeddings.shape == (len(data), 2, 128)
    plain = DlibEncoder().embed(np.asarray(data.crops[:8]))
    np.testing.assert_allclose(targets.embeddings[:8, 0].numpy(), plain, atol=1e-5)
    assert (targets.params["flip"][:, 0] == 0).all() and (targets.params["zoom"][:, 0] == 1).all()
    # The other view is another picture of the same face: close to view 0, never equal to it.
    cosine = (targets.embeddings[:, 0] * targets.embeddings[:, 1]).sum(dim=1)
    assert 0.85 < cosine.mean() < 0.999, cosine.mean()
    other = targets.embeddings[:, 0] @ targets.embeddings[:, 0].T
    assert cosine.mean() > other[~torch.eye(len(data), dtype=torch.bool)].mean() + 0.1


def test_the_stored_parameters_rebuild_the_pixels_the_teacher_saw(lfw_teacher: Path) -> None:
    data = open_dataset(lfw_teacher)
    targets = load_teacher_targets(lfw_teacher, "dlib", 2, np.arange(6))
    params, embeddings = targets.pick(torch.arange(6), torch.ones(6, dtype=torch.long))
    imgs = torch.from_numpy(np.array(data.crops[:6])).permute(0, 3, 1, 2).float() / 255.0
    pixels, _ = augment(imgs, torch.from_numpy(data.landmarks[:6]), params)
    faces = (pixels * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(DlibEncoder().embed(faces), embeddings.numpy(), atol=1e-5)


def test_nudged_views_are_new_pixels_the_teacher_gives_nearly_the_same_answer(
    lfw_teacher: Path,
) -> None:
    data = open_dataset(lfw_teacher)
    count = 32
    targets = load_teacher_targets(lfw_teacher, "dlib", 2, np.arange(count))
    params, cached = targets.pick(torch.arange(count), torch.ones(count, dtype=torch.long))
    nudged = compose(params, sample_nudges(count, torch.Generator().manual_seed(0), 1.0))
    imgs = torch.from_numpy(np.array(data.crops[:count])).permute(0, 3, 1, 2).float() / 255.0
    points = torch.from_numpy(data.landmarks[:count])
    before, _ = augment(imgs, points, params)
    after, _ = augment(imgs, points, nudged)
    assert (after - before).abs().mean() > 0.02  # the student sees other pixels
    faces = (after * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    moved = torch.from_numpy(DlibEncoder().embed(faces))
    # Centred (dlib's rows share one direction), the nudge moves the teacher's answer far less
    # than the step from the crop to its cached view does.
    mean = targets.embeddings.reshape(-1, 128).mean(dim=0)

    def centred_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
        a, b = (torch.nn.functional.normalize(x - mean, dim=1) for x in (a, b))
        return float((a * b).sum(dim=1).mean())

    nudge_gap = 1 - centred_cosine(moved, cached)
    view_gap = 1 - centred_cosine(targets.embeddings[:count, 0], cached)
    assert nudge_gap < 0.5 * view_gap, (nudge_gap, view_gap)


def test_a_killed_or_damaged_build_redoes_only_its_missing_chunks(
    lfw_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(teacher, "CHUNK_FACES", 32)
    data = shutil.copytree(lfw_teacher, tmp_path / "data", ignore=shutil.ignore_patterns("teach*"))
    build_teacher_cache(data, "dlib", views=1, workers=1)
    folder = cache_dir(data, "dlib", 1)
    first = load_teacher_targets(data, "dlib", 1, np.arange(len(open_dataset(data))))
    kept = chunk_path(folder, 0).stat().st_mtime_ns
    chunk_path(folder, 1).unlink()  # killed before it was written
    damaged = chunk_path(folder, 2)
    damaged.write_bytes(damaged.read_bytes()[:100])  # a torn copy
    assert missing_chunks(data, "dlib", 1) == [1, 2]
    with pytest.raises(ValueError, match=r"no complete cache.*facerep teacher-cache .* --views 1"):
        load_teacher_targets(data, "dlib", 1, np.arange(4))
    build_teacher_cache(data, "dlib", views=1, workers=1)
    assert missing_chunks(data, "dlib", 1) == []
    assert chunk_path(folder, 0).stat().st_mtime_ns == kept
    again = load_teacher_targets(data, "dlib", 1, np.arange(len(open_dataset(data))))
    torch.testing.assert_close(again.embeddings, first.embeddings, atol=1e-6, rtol=0)


def test_changed_crops_are_embedded_again(lfw_teacher: Path, tmp_path: Path) -> None:
    data = shutil.copytree(lfw_teacher, tmp_path / "data")
    assert missing_chunks(data, "dlib", 2) == []
    crops = data / CROPS_FILE
    raw = bytearray(crops.read_bytes())
    raw[:64] = bytes(64)  # the first face is another picture now
    crops.write_bytes(bytes(raw))
    assert missing_chunks(data, "dlib", 2) == [0]


def test_fewer_views_come_from_a_larger_cache(lfw_teacher: Path) -> None:
    two = load_teacher_targets(lfw_teacher, "dlib", 2, np.arange(10))
    one = load_teacher_targets(lfw_teacher, "dlib", 1, np.arange(10))
    assert one.views == 1
    torch.testing.assert_close(one.embeddings[:, 0], two.embeddings[:, 0])
    with pytest.raises(ValueError, match=r"no complete cache.* 3 views"):
        load_teacher_targets(lfw_teacher, "dlib", 3, np.arange(10))


def test_bad_requests_are_one_line_errors(lfw_dataset: Path) -> None:
    with pytest.raises(ValueError, match="unknown teacher 'arcface'; choose one of: dlib"):
        build_teacher_cache(lfw_dataset, "arcface")
    with pytest.raises(ValueError, match="views must be at least 1"):
        build_teacher_cache(lfw_dataset, "dlib", views=0)
