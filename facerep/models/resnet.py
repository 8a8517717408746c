"""A small residual CNN for 64-px faces: a backbone for objectives that need no patch tokens.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), basic blocks, sized for
small data on a CPU. GroupNorm instead of BatchNorm: contrastive objectives on small batches
leak through batch statistics (MoCo's "shuffling BN" problem), and GroupNorm has none. It has
no decoder, so it serves joint-embedding objectives (`instance`, `mimic`), not masked
reconstruction. An `embed_dim` other than the last width adds a linear embedding layer after
the pooling (FaceNet's): a student distilled into a teacher's 128-D space ships that space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facerep.models.config import ModelConfig, Pool
from facerep.models.vit import check_image_size, to_pair

MAX_NORM_GROUPS = 8


@dataclass(frozen=True)
class ResNetConfig(ModelConfig):
    """A residual CNN's shape: stage widths and depths, and the embedding size (a linear layer
    maps the pooled last stage to it when it is not the last width)."""

    kind = "resnet"
    img_size: int = 64
    patch_size: int = 16  # the side of one output cell in pixels: img_size / 2**len(widths)
    embed_dim: int = 256
    widths: tuple[int, ...] = (32, 64, 128, 256)  # channels of each stage; each halves the side
    blocks: tuple[int, ...] = (1, 1, 1, 1)  # residual blocks per stage

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))  # JSON gives lists
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if len(self.widths) != len(self.blocks):
            raise ValueError(
                f"resnet: widths {self.widths} and blocks {self.blocks} must pair up"
            )
        if self.img_size % 2 ** len(self.widths):
            raise ValueError(f"img_size {self.img_size} cannot be halved {len(self.widths)} times")

    def build(self) -> ResNet:
        """A freshly initialised `ResNet` with this config as `model.config`."""
        model = ResNet(self.img_size, self.widths, self.blocks, self.embed_dim)
        model.config = self
        return model


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(MAX_NORM_GROUPS, channels), channels)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (projected when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = _norm(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), _norm(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, C, H, W]` -> `[N, C', H / stride, W / stride]`."""
        out = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """Residual CNN: `embed(imgs) -> [N, D]`, `forward_tokens(imgs) -> [N, h*w, D]`.

    Args:
        img_size: input side in pixels, a multiple of `2**len(widths)`.
        widths: channels per stage; the first stage follows a stride-2 stem, each later stage
            halves the side again, so 64 px ends in a 4x4 map of `widths[-1]` channels.
        blocks: residual blocks per stage.
        embed_dim: embedding size; a linear layer maps the pooled map to it unless it is
            `widths[-1]` (None: `widths[-1]`).
    """

    def __init__(
        self,
        img_size: int = 64,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        blocks: tuple[int, ...] = (1, 1, 1, 1),
        embed_dim: int | None = None,
    ):
        super().__init__()
        self.img_size = to_pair(img_size)
        self.embed_dim = embed_dim or widths[-1]
        side = self.img_size[0] // 2 ** len(widths)
        self.grid_size = (side, self.img_size[1] // 2 ** len(widths))
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), _norm(widths[0]))
        stages, channels = [], widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if index == 0 else 2
            layers = [BasicBlock(channels, width, stride)]
            layers += [BasicBlock(width, width, 1) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            channels = width
        self.stages = nn.Sequential(*stages)  # the stem and each later stage halve the side
        self.embedding = (
            nn.Identity() if self.embed_dim == widths[-1] else nn.Linear(widths[-1], self.embed_dim)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """`[N, 3, H, W]` -> the last stage's map `[N, D, h, w]`."""
        check_image_size(imgs, self.img_size)
        return self.stages(F.relu(self.stem(imgs)))

    def forward_tokens(self, imgs: torch.Tensor) -> torch.Tensor:
        """Output cells as tokens, row by row, in the embedding's space: `[N, 3, H, W]` ->
        `[N, h*w, D]` (the embedding layer is linear: their mean is `embed`)."""
        return self.embedding(self.forward_features(imgs).flatten(2).transpose(1, 2))

    def embed(self, imgs: torch.Tensor, pool: Pool = "mean") -> torch.Tensor:
        """One vector per image, the last map averaged over space (then the embedding layer):
        `[N, 3, H, W]` -> `[N, D]`."""
        if pool != "mean":
            raise ValueError(f"a CNN pools by 'mean' only (it has no class token), got {pool!r}")
        return self.embedding(self.forward_features(imgs).mean(dim=(2, 3)))
