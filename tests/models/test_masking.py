"""Masking strategies: exact counts, invertible shuffles, face regions, clustered noise."""

from __future__ import annotations

import pytest
import torch

from facerep.faces.align import alignment_template
from facerep.models import masking
from facerep.models.masking import (
    FACE_REGIONS,
    MASKING_STRATEGIES,
    PatchMask,
    face_region_mask,
    face_regions,
    index_mask,
    make_mask,
    mask_from_scores,
    noise_mask,
    num_masked,
    patch_distances,
    random_mask,
    resolve_mask,
)

SIZE, PATCH = 64, 8
GRID = (SIZE // PATCH, SIZE // PATCH)
L = GRID[0] * GRID[1]


def jittered_landmarks(n: int, seed: int = 0, jitter: float = 2.0) -> torch.Tensor:
    """Template landmarks in a 64 px crop, each face shifted by a few pixels: `[n, 5, 2]`."""
    template = torch.as_tensor(alignment_template(SIZE), dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    return template + jitter * torch.randn(n, 1, 2, generator=g)


def strategy_mask(strategy: str, n: int, ratio: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return make_mask(
        strategy, n, GRID, ratio, patch_size=PATCH, landmarks=jittered_landmarks(n), generator=g
    )


def masked_neighbours(mask: torch.Tensor) -> float:
    """Mean number of masked 4-neighbours of a masked patch (edge patches have fewer)."""
    grid = mask.reshape(-1, *GRID)
    padded = torch.nn.functional.pad(grid, (1, 1, 1, 1))
    neighbours = (
        padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
    )
    return float((neighbours * grid).sum() / grid.sum())


def test_num_masked_rounds_half_up_once_for_all() -> None:
    assert num_masked(49, 0.75) == 37  # MAE keeps int(49 * 0.25) = 12
    assert num_masked(64, 0.75) == 48
    assert num_masked(45, 0.7) == 32  # 31.5 despite float error 31.499999999999996
    assert num_masked(10, 0.0) == 0
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"in \[0, 1\)"):
            num_masked(10, bad)


@pytest.mark.parametrize("strategy", MASKING_STRATEGIES)
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.4, 0.75, 0.9])
def test_every_strategy_masks_exactly_the_rounded_count(strategy: str, ratio: float) -> None:
    mask, ids_keep, ids_restore = strategy_mask(strategy, 16, ratio)
    k = num_masked(L, ratio)
    assert mask.shape == (16, L) and mask.dtype == torch.float32
    assert torch.all(mask.sum(dim=1) == k)
    assert ids_keep.shape == (16, L - k)
    assert torch.all(torch.gather(mask, 1, ids_keep) == 0)
    # Shuffling by the sort that ids_restore inverts, then gathering by ids_restore, is identity.
    tokens = torch.arange(L).expand(16, L)
    shuffled = torch.gather(tokens, 1, torch.argsort(ids_restore, dim=1))
    assert torch.equal(torch.gather(shuffled, 1, ids_restore), tokens)
    assert torch.equal(shuffled[:, : L - k], ids_keep)


@pytest.mark.parametrize("strategy", MASKING_STRATEGIES)
def test_strategies_are_deterministic_under_a_seeded_generator(strategy: str) -> None:
    first = strategy_mask(strategy, 8, 0.5, seed=3)
    again = strategy_mask(strategy, 8, 0.5, seed=3)
    other = strategy_mask(strategy, 8, 0.5, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first.mask, other.mask)


def test_mask_from_scores_hides_the_highest_scores() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]])
    mask = mask_from_scores(scores, 0.5).mask
    assert mask.tolist() == [[0, 1, 0, 1], [1, 1, 0, 0]]


def test_index_mask_accepts_external_masks_and_rejects_ragged_ones() -> None:
    mask = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 0]])
    indexed = index_mask(mask)
    assert indexed.ids_keep.tolist() == [[1, 2], [0, 3]]
    assert torch.equal(indexed.mask, mask.float())
    with pytest.raises(ValueError, match="same number"):
        index_mask(torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]]))
    with pytest.raises(ValueError, match="only 0"):
        index_mask(torch.tensor([[2, 0], [0, 2]]))


def test_patch_distances_are_zero_in_the_patch_holding_the_point() -> None:
    points = torch.tensor([[20.0, 12.0], [0.0, 63.0]])
    d = patch_distances(points, GRID, PATCH)
    assert d.shape == (2, L)
    assert torch.nonzero(d[0] == 0).flatten().tolist() == [1 * 8 + 2]
    assert torch.nonzero(d[1] == 0).flatten().tolist() == [7 * 8 + 0]
    assert d[0, 1 * 8 + 4] == pytest.approx(32 - 0.5 - 20)  # 12 px right of the patch's edge


def test_face_regions_sit_on_the_template_face() -> None:
    centres, radii = face_regions(jittered_landmarks(1, jitter=0.0))
    left_eye, right_eye, nose, mouth = centres[0]
    assert left_eye[0] < nose[0] < right_eye[0]
    assert left_eye[1] < nose[1] < mouth[1] < SIZE
    assert torch.all(radii > 0.25 * (right_eye - left_eye).norm())


def centre_patches(landmarks: torch.Tensor) -> torch.Tensor:
    """Index of the patch holding each region's centre: `[N, 4]`."""
    centres, _ = face_regions(landmarks)
    n = len(landmarks)
    d = patch_distances(centres.reshape(n * 4, 2), GRID, PATCH)
    return d.argmin(dim=1).reshape(n, 4)


def test_a_one_patch_budget_goes_to_the_centre_of_a_random_region() -> None:
    landmarks = jittered_landmarks(400)
    g = torch.Generator().manual_seed(0)
    mask = face_region_mask(landmarks, GRID, PATCH, ratio=1 / L, generator=g).mask
    hidden = mask.argmax(dim=1)
    matches = hidden[:, None] == centre_patches(landmarks)
    assert torch.all(matches.any(dim=1))
    counts = matches.float().sum(dim=0)  # every region chosen, about a quarter of the time each
    assert torch.all(counts > 0.15 * 400), dict(zip(FACE_REGIONS, counts.tolist(), strict=True))


def test_a_large_budget_hides_every_patch_of_the_chosen_region() -> None:
    landmarks = jittered_landmarks(64)
    g = torch.Generator().manual_seed(1)
    mask = face_region_mask(landmarks, GRID, PATCH, ratio=0.5, generator=g).mask
    centres, radii = face_regions(landmarks)
    covered = []
    for region in range(len(FACE_REGIONS)):
        inside = patch_distances(centres[:, region], GRID, PATCH) <= radii[:, region, None]
        covered.append(torch.all(mask.bool() | ~inside, dim=1))
    assert torch.all(torch.stack(covered, dim=1).any(dim=1))


@pytest.mark.parametrize("noise_filter", ["band-pass", "low-pass"])
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_noise_masks_come_in_blobs(noise_filter: str, ratio: float) -> None:
    g = torch.Generator().manual_seed(0)
    clustered = noise_mask(256, GRID, ratio, noise_filter=noise_filter, generator=g).mask
    scattered = random_mask(256, L, ratio, generator=g).mask
    # At 0.75 random masks already touch 2.6 masked neighbours of 4 on average; blobs ~3.0.
    assert masked_neighbours(clustered) > 1.1 * masked_neighbours(scattered)


def test_resolve_mask_draws_or_checks_and_indexes() -> None:
    drawn = resolve_mask(None, 3, 16, 0.75)
    assert drawn.mask.shape == (3, 16) and torch.all(drawn.mask.sum(dim=1) == 12)
    given = random_mask(3, 16, 0.5, generator=torch.Generator().manual_seed(0)).mask
    resolved = resolve_mask(given.bool(), 3, 16, 0.1)  # the ratio is ignored with a mask
    assert torch.equal(resolved.mask, given) and resolved.ids_keep.shape == (3, 8)
    assert torch.all(torch.gather(given, 1, resolved.ids_keep) == 0)
    with pytest.raises(ValueError, match=r"mask is \(3, 8\) but this batch needs \[3, 16\]"):
        resolve_mask(given[:, :8], 3, 16, 0.5)
    ragged = torch.zeros(2, 16)
    ragged[0, :4], ragged[1, :5] = 1, 1
    with pytest.raises(ValueError, match="same number"):
        resolve_mask(ragged, 2, 16, 0.5)



def test_resolve_mask_takes_a_patch_mask_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    made = random_mask(4, 16, 0.75, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(masking, "index_mask", None)  # a PatchMask is never re-indexed
    resolved = resolve_mask(made, 4, 16, 0.1)
    assert all(torch.equal(a, b) for a, b in zip(resolved, made, strict=True))
    with pytest.raises(ValueError, match=r"mask is \(4, 16\) but this batch needs \[2, 16\]"):
        resolve_mask(made, 2, 16, 0.5)
    shard = made.rows(slice(1, None, 2))  # process 1 of 2
    assert all(torch.equal(a, b[1::2]) for a, b in zip(shard, made, strict=True))
    assert isinstance(shard.to("cpu"), PatchMask)


def test_make_mask_reports_missing_inputs_and_unknown_strategies() -> None:
    with pytest.raises(ValueError, match="landmarks"):
        make_mask("face-regions", 2, GRID, 0.5)
    with pytest.raises(ValueError, match="unknown masking strategy"):
        make_mask("checkerboard", 2, GRID, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown noise filter"):
        noise_mask(2, GRID, 0.5, noise_filter="high-pass")  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("strategy", MASKING_STRATEGIES)
def test_a_seed_gives_the_same_mask_on_cuda(strategy: str) -> None:
    on_cpu = strategy_mask(strategy, 8, 0.5, seed=5)
    g = torch.Generator().manual_seed(5)
    landmarks = jittered_landmarks(8).cuda()
    on_cuda = make_mask(
        strategy, 8, GRID, 0.5, patch_size=PATCH, landmarks=landmarks, generator=g, device="cuda"
    )
    assert on_cuda.mask.is_cuda and torch.all(on_cuda.mask.sum(dim=1) == num_masked(L, 0.5))
    if strategy != "face-regions":  # region geometry is computed on the GPU, in its float order
        assert torch.equal(on_cuda.mask.cpu(), on_cpu.mask)
