"""The masking strategies' names: a vocabulary the CLI and the training config share.

Kept apart from `masking` (and torch) so that reading options never imports torch: every
`facerep` command builds the whole CLI, including `pretrain`'s `--masking` choices.
"""

from __future__ import annotations

from typing import Literal

MaskingStrategy = Literal["random", "face-regions", "noise"]
MASKING_STRATEGIES: tuple[MaskingStrategy, ...] = ("random", "face-regions", "noise")
