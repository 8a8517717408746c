"""What to ingest: walk a folder (or a built-in sample) into items with identity and split.

Layouts, as face datasets ship them:
- `flat`: `SRC/<image>` (or any depth) with no identities, as an unlabeled corpus;
- `identity`: `SRC/<identity>/<image>`, as ORL and LFW;
- `split`: `SRC/<split>/<identity>/<image>`, as cs131_faces (`train/`, `test/`).
`auto` recognises them from the folder tree. A folder of more than `MAX_IMAGES_PER_IDENTITY`
images is taken for a part of an unlabeled corpus, not for one person (the largest identities of
VGGFace2 and CASIA-WebFace hold under 1,000 images), so such trees are read as flat.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from facerep.images import is_image_path

Layout = Literal["auto", "flat", "identity", "split"]

MAX_IMAGES_PER_IDENTITY = 1000

SPLIT_NAMES = frozenset(
    {"train", "test", "val", "valid", "validation", "dev", "eval", "query", "gallery"}
)


@dataclass(frozen=True)
class SourceItem:
    """One input to ingest: a file on disk, or an in-memory image from a built-in sample."""

    name: str
    identity: str | None = None
    split: str | None = None
    path: Path | None = None
    load_array: Callable[[], np.ndarray] | None = None
    # Its path relative to the source folder: how re-runs recognise it, however SRC is spelled.
    key: str = ""


@dataclass(frozen=True)
class IgnoredFile:
    """A file under the source folder that is not ingested, and why."""

    name: str
    reason: str


def walk_source(
    source: str | Path, layout: Layout = "auto", split: str | None = None
) -> tuple[list[SourceItem], list[IgnoredFile]]:
    """List the images under `source` (a folder, one image, or `builtin:NAME`), sorted.

    Args:
        source: the folder to walk.
        layout: how folders map to identities; "auto" recognises the three layouts.
        split: keep only this split folder (for the `split` layout), e.g. "train".

    Raises:
        ValueError: the source does not exist, or the layout does not fit it.
    """
    if str(source).startswith("builtin:"):
        from facerep.data.builtin import builtin_items

        return builtin_items(str(source).removeprefix("builtin:")), []
    root = Path(source)
    if root.is_file():
        return [SourceItem(name=str(root), path=root, key=root.name)], []
    if not root.is_dir():
        raise ValueError(f"{source}: no such folder or file")
    images, ignored = _list_files(root)
    resolved = _resolve_layout(root, images, layout)
    items = [_item(root, path, resolved) for path in images]
    if split is not None:
        if resolved != "split":
            raise ValueError(f"{source}: --split {split} needs split folders (SRC/{split}/<id>/…)")
        items = [item for item in items if item.split == split]
        if not items:
            raise ValueError(f"{source}: no split folder named {split!r}")
    return items, ignored


def _list_files(root: Path) -> tuple[list[Path], list[IgnoredFile]]:
    images, ignored = [], []
    for path in sorted(_walk(root)):
        if is_image_path(path):
            images.append(path)
        else:
            ignored.append(IgnoredFile(str(path), "not an image file name"))
    return images, ignored


def _walk(root: Path) -> Iterator[Path]:
    # Hidden files and folders (.DS_Store, ._x.jpg, .git) are OS or tool droppings, not photos.
    for path in root.rglob("*"):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if not path.is_dir():
            yield path


def _resolve_layout(root: Path, images: list[Path], layout: Layout) -> Layout:
    parts = [p.relative_to(root).parts for p in images]
    depths = {len(p) for p in parts}
    tops = {p[0] for p in parts if len(p) > 1}
    splits_on_top = bool(tops) and all(top.lower() in SPLIT_NAMES for top in tops)
    if layout == "auto":
        if depths == {3} and splits_on_top:
            return "split"
        per_folder = Counter(p[-2] for p in parts if len(p) > 1)
        person_sized = max(per_folder.values(), default=0) <= MAX_IMAGES_PER_IDENTITY
        if depths and min(depths) >= 2 and not splits_on_top and person_sized:
            return "identity"
        return "flat"
    if layout == "split" and not (depths == {3}):
        raise ValueError(f"{root}: --layout split needs SRC/<split>/<identity>/<image>")
    if layout == "identity" and depths and min(depths) < 2:
        raise ValueError(f"{root}: --layout identity needs SRC/<identity>/<image>")
    return layout


def _item(root: Path, path: Path, layout: Layout) -> SourceItem:
    relative = path.relative_to(root)
    parts, key = relative.parts, relative.as_posix()
    if layout == "split":
        return SourceItem(str(path), identity=parts[1], split=parts[0], path=path, key=key)
    if layout == "identity":
        return SourceItem(str(path), identity=parts[0], path=path, key=key)
    return SourceItem(str(path), path=path, key=key)
