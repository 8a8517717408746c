"""Face-appropriate augmentation for pretraining, batched on the training device.

Aligned faces already share pose and framing, so augmentation stays mild by default: a
horizontal flip, a small zoom and shift, and brightness, contrast and saturation jitter.
Joint-embedding objectives need views that differ more (SimCLR, MoCo): small rotations,
greyscale, blur and erased rectangles (occluders) are there for them, off unless asked for,
and drawn only when on, so a run without them draws exactly the numbers it always drew.
The random parameters are drawn for the whole global batch from a per-step generator and each
process takes its rows, so a run gives the same batches on 1 or N processes, and a resumed run
the same as an unbroken one.
Landmarks move with the pixels, so face-region masks stay on the eyes, nose and mouth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

# After a flip the image-right eye becomes the image-left one: template points 0-1 <-> 2-3.
FLIP_ORDER = [2, 3, 0, 1, 4]


@dataclass
class AugmentParams:
    """Per-sample random parameters, all `[G]`: flip (0/1), zoom, shift x/y, colour factors."""

    flip: torch.Tensor
    zoom: torch.Tensor
    shift: torch.Tensor  # [G, 2], fraction of the crop side
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    rotation: torch.Tensor | None = None  # [G], radians
    grey: torch.Tensor | None = None  # [G], 0/1
    blur: torch.Tensor | None = None  # [G], 0/1
    erase: torch.Tensor | None = None  # [G, 4]: on (0/1), centre x, centre y, side (fractions)

    def rows(self, index: torch.Tensor | slice) -> AugmentParams:
        """The parameters of some samples (this process's share of the global batch)."""
        fields = self.__dataclass_fields__
        return AugmentParams(*(_take(getattr(self, name), index) for name in fields))


def sample_augment(
    size: int,
    generator: torch.Generator,
    hflip: float = 0.5,
    scale_jitter: float = 0.1,
    shift_jitter: float = 0.05,
    color_jitter: float = 0.2,
    rotation: float = 0.0,
    grey: float = 0.0,
    blur: float = 0.0,
    erase: float = 0.0,
) -> AugmentParams:
    """Draw parameters for `size` samples; zero jitters give the identity transform.

    Args:
        rotation: largest roll in degrees (uniform in [-r, r]).
        grey, blur, erase: probabilities of greyscale, a Gaussian blur, and a grey rectangle
            over 10-30% of the side pasted somewhere on the face.
    """

    def uniform(*shape: int, spread: float) -> torch.Tensor:
        return 1.0 + spread * (2.0 * torch.rand(shape, generator=generator) - 1.0)

    def chance(p: float) -> torch.Tensor:
        return (torch.rand(size, generator=generator) < p).float()

    params = AugmentParams(
        flip=chance(hflip),
        zoom=uniform(size, spread=scale_jitter),
        shift=uniform(size, 2, spread=shift_jitter) - 1.0,
        brightness=uniform(size, spread=color_jitter),
        contrast=uniform(size, spread=color_jitter),
        saturation=uniform(size, spread=color_jitter),
    )
    # Drawn after the rest and only when on: runs without them keep their exact batches.
    if rotation > 0:
        params.rotation = (uniform(size, spread=1.0) - 1.0) * math.radians(rotation)
    if grey > 0:
        params.grey = chance(grey)
    if blur > 0:
        params.blur = chance(blur)
    if erase > 0:
        where = torch.rand(size, 3, generator=generator)
        side = 0.1 + 0.2 * where[:, 2:]
        params.erase = torch.cat([chance(erase)[:, None], where[:, :2], side], dim=1)
    return params


# Changes a face recogniser barely notices, at strength 1 (dlib, centred cosine of its
# embedding to the unaltered crop's, 200 unlabeled faces): colour factors +-20% 0.996, zoom
# +-5% 0.984, roll +-5 degrees 0.980, where a cached augmented view moves it to 0.875 and a
# 3% shift to 0.960. Drawn on top of a teacher's fixed views, they give the student new pixels
# every epoch under a target that still holds.
NUDGE = {"color_jitter": 0.2, "scale_jitter": 0.05, "rotation": 5.0}


def sample_nudges(size: int, generator: torch.Generator, strength: float) -> AugmentParams:
    """Small changes for `size` samples (`NUDGE` times `strength`), to `compose` with views."""
    spread = {name: value * strength for name, value in NUDGE.items()}
    return sample_augment(size, generator, hflip=0.0, shift_jitter=0.0, **spread)


def compose(params: AugmentParams, nudges: AugmentParams) -> AugmentParams:
    """`params` followed by `nudges` (from `sample_nudges`): zoom and colour factors multiply,
    rolls add; flip, shift and the rest stay as `params` has them."""
    rotation = params.rotation
    if nudges.rotation is not None:
        rotation = nudges.rotation if rotation is None else rotation + nudges.rotation
    return replace(
        params,
        zoom=params.zoom * nudges.zoom,
        brightness=params.brightness * nudges.brightness,
        contrast=params.contrast * nudges.contrast,
        saturation=params.saturation * nudges.saturation,
        rotation=rotation,
    )


def augment(
    imgs: torch.Tensor, landmarks: torch.Tensor, params: AugmentParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply `params` to `imgs` `[B, 3, S, S]` float in [0, 1] and landmarks `[B, 5, 2]` (pixels).

    Returns the augmented images (still in [0, 1]) and landmarks in the same pixel frame.
    """
    params = AugmentParams(
        *(_to(getattr(params, n), imgs.device) for n in params.__dataclass_fields__)
    )
    imgs, landmarks = _geometric(imgs, landmarks.to(imgs.device), params)
    imgs = _photometric(imgs, params)
    if params.blur is not None:
        imgs = torch.where(params.blur[:, None, None, None] > 0, _gaussian_blur(imgs), imgs)
    if params.erase is not None:
        imgs = _erase(imgs, params.erase)
    return imgs, landmarks


def _take(value: torch.Tensor | None, index: torch.Tensor | slice) -> torch.Tensor | None:
    return None if value is None else value[index]


def _to(value: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if value is None else value.to(device)


def _gaussian_blur(imgs: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """A separable 5-tap Gaussian blur of every image (sigma in pixels)."""
    taps = torch.arange(-2, 3, device=imgs.device, dtype=imgs.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = imgs.shape[1]
    across = kernel.view(1, 1, 1, 5).expand(channels, 1, 1, 5)
    down = kernel.view(1, 1, 5, 1).expand(channels, 1, 5, 1)
    padded = F.pad(imgs, (2, 2, 2, 2), mode="reflect")
    return F.conv2d(F.conv2d(padded, across, groups=channels), down, groups=channels)


def _erase(imgs: torch.Tensor, erase: torch.Tensor) -> torch.Tensor:
    """Paste a mid-grey square (an occluder) where `erase` `[B, 4]` says, on the rows it is on."""
    _, _, height, width = imgs.shape
    ys = (torch.arange(height, device=imgs.device) + 0.5) / height
    xs = (torch.arange(width, device=imgs.device) + 0.5) / width
    on, cx, cy, side = (erase[:, i, None, None] for i in range(4))
    across = (xs[None, None, :] - cx).abs() < side / 2
    inside = across & ((ys[None, :, None] - cy).abs() < side / 2)
    covered = (inside & (on > 0))[:, None]
    return torch.where(covered, torch.full_like(imgs, 0.5), imgs)


def _geometric(
    imgs: torch.Tensor, landmarks: torch.Tensor, p: AugmentParams
) -> tuple[torch.Tensor, torch.Tensor]:
    # In normalised coordinates (align_corners=False) the output point is zoom*flip*in + shift.
    n, _, height, width = imgs.shape
    sign = 1.0 - 2.0 * p.flip
    theta = torch.zeros(n, 2, 3, device=imgs.device, dtype=imgs.dtype)
    theta[:, 0, 0] = sign / p.zoom
    theta[:, 0, 2] = -sign * p.shift[:, 0] * 2.0 / p.zoom
    theta[:, 1, 1] = 1.0 / p.zoom
    theta[:, 1, 2] = -p.shift[:, 1] * 2.0 / p.zoom
    if p.rotation is not None:
        theta = _rotated(theta, p.rotation)
    grid = F.affine_grid(theta, list(imgs.shape), align_corners=False)
    # Reflection matches how the crops themselves were padded beyond the photo.
    warped = F.grid_sample(
        imgs, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    size = torch.tensor([width, height], device=imgs.device, dtype=landmarks.dtype)
    unit = (landmarks + 0.5) / size * 2.0 - 1.0
    unit = unit * torch.stack([sign, torch.ones_like(sign)], dim=1)[:, None] * p.zoom[:, None, None]
    unit = unit + 2.0 * p.shift[:, None]
    if p.rotation is not None:  # the sampling turned the output by -angle: turn points back
        cos, sin = torch.cos(p.rotation)[:, None], torch.sin(p.rotation)[:, None]
        x, y = unit[..., 0], unit[..., 1]
        unit = torch.stack([cos * x + sin * y, -sin * x + cos * y], dim=-1)
    moved = (unit + 1.0) / 2.0 * size - 0.5
    flipped = moved[:, FLIP_ORDER]
    moved = torch.where(p.flip[:, None, None] > 0, flipped, moved)
    return warped, moved


def _rotated(theta: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """`theta` (output -> input sampling) preceded by a roll of `angle` about the centre."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    turn = torch.zeros(len(angle), 3, 3, dtype=theta.dtype, device=theta.device)
    turn[:, 0, 0], turn[:, 0, 1], turn[:, 1, 0], turn[:, 1, 1] = cos, -sin, sin, cos
    turn[:, 2, 2] = 1.0
    return theta @ turn


def _photometric(imgs: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114], device=imgs.device, dtype=imgs.dtype)
    imgs = imgs * p.brightness[:, None, None, None]
    mean = (imgs * weights[:, None, None]).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    imgs = (imgs - mean) * p.contrast[:, None, None, None] + mean
    grey = (imgs * weights[:, None, None]).sum(1, keepdim=True)
    imgs = (imgs - grey) * p.saturation[:, None, None, None] + grey
    if p.grey is not None:  # colour says little about who it is
        luma = (imgs * weights[:, None, None]).sum(1, keepdim=True).expand_as(imgs)
        imgs = torch.where(p.grey[:, None, None, None] > 0, luma, imgs)
    return imgs.clamp(0.0, 1.0)
