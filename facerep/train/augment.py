"""Face-appropriate augmentation for pretraining, batched on the training device.

Aligned faces already share pose and framing, so augmentation stays mild: a horizontal flip,
a small zoom and shift, and brightness, contrast and saturation jitter. The random parameters are
drawn for the whole global batch from a per-step generator and each process takes its rows, so
a run gives the same batches on 1 or N processes, and a resumed run the same as an unbroken one.
Landmarks move with the pixels, so face-region masks stay on the eyes, nose and mouth.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def rows(self, index: torch.Tensor | slice) -> AugmentParams:
        """The parameters of some samples (this process's share of the global batch)."""
        return AugmentParams(*(getattr(self, name)[index] for name in self.__dataclass_fields__))


def sample_augment(
    size: int,
    generator: torch.Generator,
    hflip: float = 0.5,
    scale_jitter: float = 0.1,
    shift_jitter: float = 0.05,
    color_jitter: float = 0.2,
) -> AugmentParams:
    """Draw parameters for `size` samples; zero jitters give the identity transform."""

    def uniform(*shape: int, spread: float) -> torch.Tensor:
        return 1.0 + spread * (2.0 * torch.rand(shape, generator=generator) - 1.0)

    return AugmentParams(
        flip=(torch.rand(size, generator=generator) < hflip).float(),
        zoom=uniform(size, spread=scale_jitter),
        shift=uniform(size, 2, spread=shift_jitter) - 1.0,
        brightness=uniform(size, spread=color_jitter),
        contrast=uniform(size, spread=color_jitter),
        saturation=uniform(size, spread=color_jitter),
    )


def augment(
    imgs: torch.Tensor, landmarks: torch.Tensor, params: AugmentParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply `params` to `imgs` `[B, 3, S, S]` float in [0, 1] and landmarks `[B, 5, 2]` (pixels).

    Returns the augmented images (still in [0, 1]) and landmarks in the same pixel frame.
    """
    params = AugmentParams(
        *(getattr(params, n).to(imgs.device) for n in params.__dataclass_fields__)
    )
    imgs, landmarks = _geometric(imgs, landmarks.to(imgs.device), params)
    return _photometric(imgs, params), landmarks


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
    grid = F.affine_grid(theta, list(imgs.shape), align_corners=False)
    # Reflection matches how the crops themselves were padded beyond the photo.
    warped = F.grid_sample(
        imgs, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    size = torch.tensor([width, height], device=imgs.device, dtype=landmarks.dtype)
    unit = (landmarks + 0.5) / size * 2.0 - 1.0
    unit = unit * torch.stack([sign, torch.ones_like(sign)], dim=1)[:, None] * p.zoom[:, None, None]
    unit = unit + 2.0 * p.shift[:, None]
    moved = (unit + 1.0) / 2.0 * size - 0.5
    flipped = moved[:, FLIP_ORDER]
    moved = torch.where(p.flip[:, None, None] > 0, flipped, moved)
    return warped, moved


def _photometric(imgs: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114], device=imgs.device, dtype=imgs.dtype)
    imgs = imgs * p.brightness[:, None, None, None]
    mean = (imgs * weights[:, None, None]).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    imgs = (imgs - mean) * p.contrast[:, None, None, None] + mean
    grey = (imgs * weights[:, None, None]).sum(1, keepdim=True)
    imgs = (imgs - grey) * p.saturation[:, None, None, None] + grey
    return imgs.clamp(0.0, 1.0)
