"""Built-in samples that ship inside installed packages, so demos and tests work offline.

`lfw-sample`: the 100 real LFW face crops (25x25 greyscale) bundled with scikit-image
(`skimage.data.lfw_subset`, whose other 100 images are non-faces and are left out). No identities.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from facerep.data.items import SourceItem

BUILTIN_SAMPLES = ("lfw-sample",)


@cache
def _lfw_faces() -> np.ndarray:
    from skimage.data import lfw_subset

    return lfw_subset()[:100]


def builtin_items(name: str) -> list[SourceItem]:
    """The items of a built-in sample, named `builtin:<sample>/<n>.png`."""
    if name not in BUILTIN_SAMPLES:
        choices = ", ".join(f"builtin:{sample}" for sample in BUILTIN_SAMPLES)
        raise ValueError(f"builtin:{name}: unknown built-in sample (choose from {choices})")
    items = []
    for i in range(len(_lfw_faces())):
        item_name = f"builtin:{name}/{i:03d}.png"
        items.append(SourceItem(name=item_name, load_array=_lfw_loader(i), key=item_name))
    return items


def _lfw_loader(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        # Float in [0, 1], as scikit-image gives it: load_image turns it into uint8 RGB. A copy,
        # so no caller can change the cached sample.
        return _lfw_faces()[index].copy()

    return load
