"""Built-in samples that ship inside installed packages, so demos and tests work offline.

`lfw-sample`: the 100 real LFW face crops (25x25 greyscale) bundled with scikit-image
(`skimage.data.lfw_subset`, whose other 100 images are non-faces and are left out). No identities.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from facerep.data.sources import SourceItem

BUILTIN_SAMPLES = ("lfw-sample",)


@cache
def _lfw_faces() -> np.ndarray:
    from skimage.data import lfw_subset

    return lfw_subset()[:100]


def builtin_items(name: str) -> list[SourceItem]:
    """The items of a built-in sample, named `builtin:<sample>/<n>.png`."""
    if name != "lfw-sample":
        choices = ", ".join(f"builtin:{sample}" for sample in BUILTIN_SAMPLES)
        raise ValueError(f"builtin:{name}: unknown built-in sample (choose from {choices})")
    count = len(_lfw_faces())
    return [
        SourceItem(
            name=f"builtin:lfw-sample/{i:03d}.png",
            load_array=_lfw_loader(i),
            key=f"builtin:lfw-sample/{i:03d}.png",
        )
        for i in range(count)
    ]


def _lfw_loader(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return np.round(_lfw_faces()[index] * 255.0).astype(np.uint8)

    return load
