"""Which patches a masked autoencoder hides: random, face-region and filtered-noise masks.

- `random_mask`: uniform random masking, He et al., "Masked Autoencoders Are Scalable Vision
  Learners" (CVPR 2022).
- `face_region_mask`: in the spirit of CRFR-P, Wang et al., "FSFM: A Generalizable Face Security
  Foundation Model via Self-Supervised Facial Representation Learning" (CVPR 2025): hide one
  whole facial region (an eye, the nose or the mouth), then random patches up to the ratio.
- `noise_mask`: data-independent masks from filtered random noise, Hinojosa et al., "ColorMAE:
  Exploring data-independent masking strategies in Masked AutoEncoders" (ECCV 2024).

Every strategy scores the patches and hides the `num_masked(L, ratio)` highest-scoring ones, so
all masks of one ratio hide exactly the same number of patches per sample (the encoder batches
equal-length token lists). Masks are `[N, L]` floats, 1 = masked (MAE's convention), patches
in `patchify` order (row by row).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from facerep.models.strategies import MASKING_STRATEGIES, MaskingStrategy
from facerep.models.vit import to_pair

NoiseFilter = Literal["low-pass", "band-pass"]

# Regions as seen in the image: "left_eye" is the eye on the image's left (template points 2-3).
FACE_REGIONS = ("left_eye", "right_eye", "nose", "mouth")
# Region radii in inter-ocular distances (eye centre to eye centre). An eye is about half an
# inter-ocular distance wide, so 0.3 covers it with its lids; the nose and the closed mouth are
# wider, 0.35 covers the nostrils and the mouth corners on dlib's mean face.
REGION_RADII = (0.3, 0.3, 0.35, 0.35)
# Where the nose and the mouth lie along the eye-line-to-nose-base vector `down`: the nose's
# middle is 0.6 of the way from the eyes to its base, the mouth's middle 0.45 of that vector
# below the base (0.81 of the crop's height on dlib's mean face; its lips span about 0.78-0.86).
NOSE_ALONG_DOWN = 0.6
MOUTH_BELOW_NOSE = 0.45


class PatchMask(NamedTuple):
    """A mask and the indices that gather visible tokens and put decoder tokens back in order.

    Attributes:
        mask: `[N, L]` float, 1 = masked.
        ids_keep: `[N, L - num_masked]` visible patch indices, in the order the encoder sees them.
        ids_restore: `[N, L]`; `gather(shuffled, ids_restore)` gives patches in image order.
    """

    mask: torch.Tensor
    ids_keep: torch.Tensor
    ids_restore: torch.Tensor

    def rows(self, index: slice | torch.Tensor) -> PatchMask:
        """The masks of some samples (a process's shard of the global batch)."""
        return PatchMask(*(t[index] for t in self))

    def to(self, device: torch.device | str | None) -> PatchMask:
        """The same mask on `device`."""
        return PatchMask(*(t.to(device) for t in self))


def num_masked(num_patches: int, ratio: float) -> int:
    """How many of `num_patches` a mask of `ratio` hides: `L * ratio` rounded half up.

    The one rounding every strategy uses. At L=49 and 0.75 it hides 37 (MAE's
    `int(L * (1 - ratio))` keeps 12, hiding the same 37).
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    # The epsilon rounds exact halves up despite float error (45 * 0.7 = 31.499999999999996).
    return min(num_patches, math.floor(num_patches * ratio + 0.5 + 1e-9))


def rows_by_mask_count(mask: torch.Tensor) -> Iterator[torch.Tensor]:
    """The row indices of an `[N, L]` 0/1 mask, grouped by how many patches each row hides.

    The encoder batches equal-length token lists, so masks that hide different counts (an
    occluder's patches, say) are run one group at a time.
    """
    counts = mask.sum(dim=1)
    for count in counts.unique():
        yield (counts == count).nonzero()[:, 0]


def mask_from_scores(scores: torch.Tensor, ratio: float) -> PatchMask:
    """Hide the `num_masked(L, ratio)` highest-scoring patches of each row.

    Args:
        scores: `[N, L]`; higher = hidden first (MAE's noise, sorted ascending, keeps the lowest).
        ratio: fraction of patches to hide.
    """
    n, length = scores.shape
    len_keep = length - num_masked(length, ratio)
    # A stable sort breaks ties by patch index, so equal scores give the same mask on any device.
    ids_shuffle = torch.argsort(scores, dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(n, length, device=scores.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return PatchMask(mask, ids_shuffle[:, :len_keep], ids_restore)


def index_mask(mask: torch.Tensor) -> PatchMask:
    """Check an externally made `[N, L]` 0/1 mask and derive its `ids_keep` and `ids_restore`.

    Visible patches go first, in image order. Every row must hide the same number of patches.
    """
    if mask.dim() != 2:
        raise ValueError(f"mask must be [N, L], got shape {tuple(mask.shape)}")
    mask = mask.float()
    if not torch.all((mask == 0) | (mask == 1)):
        raise ValueError("mask must hold only 0 (visible) and 1 (masked)")
    counts = mask.sum(dim=1)
    if not torch.all(counts == counts[0]):
        found = sorted(set(counts.int().tolist()))
        raise ValueError(f"every mask row must hide the same number of patches, got {found}")
    len_keep = mask.shape[1] - int(counts[0])
    ids_shuffle = torch.argsort(mask, dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    return PatchMask(mask, ids_shuffle[:, :len_keep], ids_restore)


def uniform_noise(
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """`torch.rand` drawn on the generator's device, then moved: a seed gives one mask anywhere."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source).to(device)


def random_mask(
    batch_size: int,
    num_patches: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> PatchMask:
    """MAE's per-sample uniform random masking: hide `num_masked(L, ratio)` patches of `[N, L]`."""
    return mask_from_scores(uniform_noise((batch_size, num_patches), generator, device), ratio)


def resolve_mask(
    mask: torch.Tensor | PatchMask | None,
    batch_size: int,
    num_patches: int,
    ratio: float,
    device: torch.device | str | None = None,
) -> PatchMask:
    """The mask of one forward pass: a fresh uniform random one, or `mask` checked and indexed.

    Args:
        mask: a `PatchMask` from a strategy here, used as it is (no re-sorting, and no value
            checks that would wait on a GPU); an `[N, L]` 0/1 tensor (1 = masked) made
            elsewhere, checked and indexed by `index_mask`; or None for `random_mask` at `ratio`.
        batch_size: N, the batch the mask is for.
        num_patches: L, the model's patches per image.
        ratio: fraction hidden by the random mask; ignored with `mask`.
        device: where the mask goes (the batch's device).
    """
    if mask is None:
        return random_mask(batch_size, num_patches, ratio, device=device)
    shape = tuple((mask.mask if isinstance(mask, PatchMask) else mask).shape)
    if shape != (batch_size, num_patches):
        raise ValueError(f"mask is {shape} but this batch needs [{batch_size}, {num_patches}]")
    if isinstance(mask, PatchMask):
        return mask.to(device)
    return index_mask(mask.to(device))


def face_regions(landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Discs over the eyes, the nose and the mouth, placed and sized from 5-point landmarks.

    Args:
        landmarks: `[N, 5, 2]` (x, y) in crop pixels, facerep's template order (points 0-1 the
            image-right eye's corners, 2-3 the image-left eye's, 4 the base of the nose).

    Returns:
        Centres `[N, 4, 2]` (x, y) and radii `[N, 4]` in pixels, regions in `FACE_REGIONS` order.
    """
    landmarks = landmarks.float()
    right_eye = landmarks[:, 0:2].mean(dim=1)
    left_eye = landmarks[:, 2:4].mean(dim=1)
    nose_base = landmarks[:, 4]
    eye_mid = (left_eye + right_eye) / 2
    down = nose_base - eye_mid  # follows head roll, unlike the image's vertical
    nose = eye_mid + NOSE_ALONG_DOWN * down
    mouth = nose_base + MOUTH_BELOW_NOSE * down
    centres = torch.stack([left_eye, right_eye, nose, mouth], dim=1)
    inter_ocular = (right_eye - left_eye).norm(dim=-1)
    radii = inter_ocular[:, None] * torch.tensor(REGION_RADII, device=landmarks.device)
    return centres, radii


def patch_distances(
    points: torch.Tensor, grid: int | tuple[int, int], patch_size: int
) -> torch.Tensor:
    """Distance from each point to the nearest pixel of each patch (0 inside it).

    Args:
        points: `[N, 2]` (x, y) in crop pixels, pixel centres at integers (scikit-image's frame).
        grid: `(h, w)` patches.
        patch_size: patch side in pixels.

    Returns:
        `[N, L]` distances in pixels, patches in `patchify` order.
    """
    h, w = to_pair(grid)
    # Patch j spans pixel centres j*p .. j*p + p - 1, i.e. coordinates [j*p - 0.5, (j+1)*p - 0.5].
    starts_x = torch.arange(w, device=points.device) * patch_size - 0.5
    starts_y = torch.arange(h, device=points.device) * patch_size - 0.5
    x, y = points[:, 0:1], points[:, 1:2]
    dx = (starts_x - x).clamp(min=0) + (x - starts_x - patch_size).clamp(min=0)
    dy = (starts_y - y).clamp(min=0) + (y - starts_y - patch_size).clamp(min=0)
    return torch.sqrt(dy[:, :, None] ** 2 + dx[:, None, :] ** 2).reshape(len(points), h * w)


def face_region_mask(
    landmarks: torch.Tensor,
    grid: int | tuple[int, int],
    patch_size: int,
    ratio: float,
    generator: torch.Generator | None = None,
) -> PatchMask:
    """Hide one random facial region per face, then random patches up to the ratio.

    Every patch touching the chosen region's disc is hidden; where the region alone exceeds the
    budget, the patches nearest its centre go first. The region index per sample is drawn before
    the fill noise, so one seeded generator fixes both.

    Args:
        landmarks: `[N, 5, 2]` in crop pixels of the images the mask is for (rescale them with
            the images).
        grid: `(h, w)` patches.
        patch_size: patch side in pixels.
        ratio: fraction of patches to hide.
        generator: seeds the region choice and the fill.
    """
    n = landmarks.shape[0]
    h, w = to_pair(grid)
    device = landmarks.device
    centres, radii = face_regions(landmarks)
    source = generator.device if generator is not None else device
    chosen = torch.randint(len(FACE_REGIONS), (n,), generator=generator, device=source).to(device)
    rows = torch.arange(n, device=device)
    distances = patch_distances(centres[rows, chosen], (h, w), patch_size)
    radius = radii[rows, chosen][:, None]
    # Region patches score in [1, 2], nearest the centre highest; the rest score in [0, 1).
    in_region = distances <= radius
    region_score = 2.0 - distances / radius.clamp(min=1e-6)
    scores = uniform_noise((n, h * w), generator, device)
    return mask_from_scores(torch.where(in_region, region_score, scores), ratio)


def gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    """A normalised 2-D Gaussian, `[2r+1, 2r+1]`, sigma in patches."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = g[:, None] * g[None, :]
    return kernel / kernel.sum()


def noise_kernel(sigma: float, noise_filter: NoiseFilter) -> torch.Tensor:
    """The filter that colours white noise: a Gaussian (low-pass, ColorMAE's "red" noise) or a
    difference of Gaussians sigma and 2*sigma (band-pass, its "green" noise)."""
    radius = max(1, math.ceil(3 * sigma * (2 if noise_filter == "band-pass" else 1)))
    kernel = gaussian_kernel(sigma, radius)
    if noise_filter == "band-pass":
        kernel = kernel - gaussian_kernel(2 * sigma, radius)
    elif noise_filter != "low-pass":
        raise ValueError(f"unknown noise filter {noise_filter!r}; choose 'low-pass' or 'band-pass'")
    return kernel


def noise_mask(
    batch_size: int,
    grid: int | tuple[int, int],
    ratio: float,
    sigma: float = 1.0,
    noise_filter: NoiseFilter = "band-pass",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> PatchMask:
    """ColorMAE-style mask: hide the patches where filtered Gaussian noise is highest.

    The filter correlates neighbouring patches, so the hidden set comes in blobs about `sigma`
    patches across instead of salt and pepper. The noise is drawn over a margin and filtered
    without padding, so blobs neither wrap around nor thin out at the borders.

    Args:
        batch_size: N.
        grid: `(h, w)` patches.
        ratio: fraction of patches to hide.
        sigma: blob scale in patches. ColorMAE's best masks ("green", band-pass) have blobs of
            a few patches at 14x14; 1.0 gives blobs of 2-4 patches on 7x7 to 14x14 grids.
        noise_filter: "band-pass" (blobs of one size, evenly spread: ColorMAE's best) or
            "low-pass" (blobs of all sizes).
        generator: seeds the noise.
        device: where the mask lives.
    """
    h, w = to_pair(grid)
    kernel = noise_kernel(sigma, noise_filter)
    margin = kernel.shape[-1] // 2
    source = generator.device if generator is not None else device
    white = torch.randn(
        (batch_size, 1, h + 2 * margin, w + 2 * margin), generator=generator, device=source
    )
    coloured = F.conv2d(white, kernel[None, None].to(white.device))
    return mask_from_scores(coloured.reshape(batch_size, h * w).to(device), ratio)


def make_mask(
    strategy: MaskingStrategy,
    batch_size: int,
    grid: int | tuple[int, int],
    ratio: float,
    patch_size: int | None = None,
    landmarks: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> PatchMask:
    """One entry to every strategy, for trainers that pick it by name.

    Args:
        strategy: "random", "face-regions" (needs `landmarks` and `patch_size`) or "noise".
        batch_size: N.
        grid: `(h, w)` patches.
        ratio: fraction of patches to hide.
        patch_size: patch side in pixels (face-regions).
        landmarks: `[N, 5, 2]` in pixels of the images being masked (face-regions).
        generator: seeds the mask.
        device: where the mask lives (face-regions: the landmarks' device).
    """
    h, w = to_pair(grid)
    if strategy == "random":
        return random_mask(batch_size, h * w, ratio, generator=generator, device=device)
    if strategy == "noise":
        return noise_mask(batch_size, (h, w), ratio, generator=generator, device=device)
    if strategy == "face-regions":
        if landmarks is None or patch_size is None:
            raise ValueError("face-regions masking needs the batch's landmarks and the patch_size")
        if landmarks.shape[0] != batch_size:
            raise ValueError(f"{landmarks.shape[0]} landmark sets for a batch of {batch_size}")
        landmarks = landmarks.to(device) if device is not None else landmarks
        return face_region_mask(landmarks, (h, w), patch_size, ratio, generator=generator)
    raise ValueError(f"unknown masking strategy {strategy!r}; choose one of {MASKING_STRATEGIES}")
