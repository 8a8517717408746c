"""Augmentation: landmarks follow the pixels; parameters split across processes."""

from __future__ import annotations

import math

import torch

from facerep.faces.align import alignment_template
from facerep.train.augment import FLIP_ORDER, augment, compose, sample_augment, sample_nudges

SIZE = 64


def dot_images(landmarks: torch.Tensor) -> torch.Tensor:
    """One image per landmark, `[5, 3, S, S]`, lit only at that landmark's pixel."""
    imgs = torch.zeros(5, 3, SIZE, SIZE)
    for k, (x, y) in enumerate(landmarks.round().long()):
        imgs[k, :, y, x] = 1.0
    return imgs


def centroid(image: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(float(SIZE)), torch.arange(float(SIZE)), indexing="ij")
    weights = image[0]
    return torch.stack([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


def test_landmarks_move_with_the_pixels_under_flip_zoom_and_shift() -> None:
    points = torch.tensor(alignment_template(SIZE), dtype=torch.float32).round()
    params = sample_augment(5, torch.Generator().manual_seed(0), hflip=0.5, scale_jitter=0.2,
                            shift_jitter=0.1, color_jitter=0.0)
    params.flip = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0])
    # Image k shows landmark k of a face whose 5 landmarks are `points`; augment each with its
    # own parameters and check the lit pixel lands where landmark k was moved to.
    for sample in range(5):
        rows = params.rows(torch.tensor([sample] * 5))
        moved_imgs, moved_points = augment(dot_images(points), points.expand(5, 5, 2), rows)
        for k in range(5):
            # After a flip, landmark k is stored at the mirrored slot.
            slot = FLIP_ORDER.index(k) if rows.flip[0] else k
            # Bilinear sampling of a one-pixel dot biases its centroid by < 0.1 px under zoom.
            torch.testing.assert_close(centroid(moved_imgs[k]), moved_points[k, slot], atol=0.15,
                                       rtol=0)


def test_zero_jitter_is_the_identity() -> None:
    imgs = torch.rand(3, 3, SIZE, SIZE)
    points = torch.rand(3, 5, 2) * SIZE
    params = sample_augment(3, torch.Generator().manual_seed(1), 0.0, 0.0, 0.0, 0.0)
    out, moved = augment(imgs, points, params)
    torch.testing.assert_close(out, imgs, atol=1e-5, rtol=0)
    torch.testing.assert_close(moved, points, atol=1e-4, rtol=0)


def test_each_process_takes_its_rows_of_the_global_draw() -> None:
    params = sample_augment(8, torch.Generator().manual_seed(2))
    rank1 = params.rows(slice(1, None, 2))
    torch.testing.assert_close(rank1.zoom, params.zoom[1::2])
    torch.testing.assert_close(rank1.shift, params.shift[1::2])


def test_nudges_compose_with_a_view_zoom_and_colour_multiply_rolls_add() -> None:
    view = sample_augment(4, torch.Generator().manual_seed(3), rotation=10.0, grey=0.5)
    nudges = sample_nudges(4, torch.Generator().manual_seed(4), 1.0)
    both = compose(view, nudges)
    torch.testing.assert_close(both.zoom, view.zoom * nudges.zoom)
    torch.testing.assert_close(both.contrast, view.contrast * nudges.contrast)
    torch.testing.assert_close(both.rotation, view.rotation + nudges.rotation)
    for kept in ("flip", "shift", "grey"):
        torch.testing.assert_close(getattr(both, kept), getattr(view, kept))
    # Strength 1 stays inside what the teacher barely notices: 5% zoom, 5 degrees of roll.
    assert (nudges.zoom - 1).abs().max() <= 0.05 and nudges.rotation.abs().max() <= math.radians(5)
    unrolled = sample_augment(4, torch.Generator().manual_seed(3))  # a view without a roll
    torch.testing.assert_close(compose(unrolled, nudges).rotation, nudges.rotation)
