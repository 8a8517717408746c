"""What joint-embedding objectives share: projection heads and momentum (EMA) copies.

The momentum copy is BYOL's and MoCo's target network: a slowly moving average of the online
network, so the targets change smoothly and a collapsed answer is not the easiest one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def projection_head(in_dim: int, out_dim: int, hidden: int = 512) -> nn.Sequential:
    """MoCo v2's two-layer MLP head (the embedding a user gets is its input, not its output)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
    )


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of `module`, moved towards it by `ema_update` after each step."""
    return copy.deepcopy(module).requires_grad_(False)


@torch.no_grad()
def ema_update(online: nn.Module, slow: nn.Module, momentum: float) -> None:
    """`slow = momentum * slow + (1 - momentum) * online`; buffers (norm statistics) copied."""
    for p, m in zip(online.parameters(), slow.parameters(), strict=True):
        m.mul_(momentum).add_(p.detach(), alpha=1.0 - momentum)
    for b, mb in zip(online.buffers(), slow.buffers(), strict=True):
        mb.copy_(b)
