"""What to ingest: walk a folder (or a built-in sample) into items with identity and split.

Layouts, as face datasets ship them:
- `flat`: `SRC/<image>` (or any depth) with no identities, as an unlabeled corpus;
- `identity`: `SRC/<identity>/<image>`, as ORL and LFW;
- `split`: `SRC/<split>/<identity>/<image>`, as cs131_faces (`train/`, `test/`).
`auto` recognises them from the folder tree. A folder of more than `MAX_IMAGES_PER_IDENTITY`
images is taken for a part of an unlabeled corpus, not for one person (the largest identities of
VGGFace2 and CASIA-WebFace hold under 1,000 images), so such trees are read as flat.

Every command that reads a folder of photos walks it here, by one set of rules:
- a file is taken for an image by its name (`is_image_path`); any other file is ignored, with
  that reason. A file given on its own is read whatever its name, as `verify` reads one;
- hidden files and folders are skipped; links to folders are followed, except a link back to a
  folder above it (a loop), which is ignored with that reason; a folder that cannot be listed is
  ignored with the OS's reason; a file that cannot be read (a link loop, a dangling link, no
  permission) is still an item, so the command that reads it reports it as unreadable;
- names are text (`path_text`): a byte of a file name that is not UTF-8 is written `\\xNN`, so
  the name can be stored, printed and written to CSV, while `SourceItem.path` still opens it.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from facerep.data.items import SourceItem
from facerep.images import ImageSource, describe_source, is_image_path

Layout = Literal["auto", "flat", "identity", "split"]

MAX_IMAGES_PER_IDENTITY = 1000

SPLIT_NAMES = frozenset(
    {"train", "test", "val", "valid", "validation", "dev", "eval", "query", "gallery"}
)


# A file name byte that is not UTF-8 is held by Python as a lone surrogate (PEP 383).
_SURROGATE = re.compile("[\ud800-\udfff]")


def path_text(path: str | os.PathLike) -> str:
    """`path` as text that UTF-8 databases, CSV files and terminals take.

    A byte of a file name that is not UTF-8 (Python's surrogate escape `\\udcff`) is written
    `\\xff`, as `ls -b` shows it; every other character is kept, so valid names do not change.
    """
    return _SURROGATE.sub(_escape_surrogate, os.fspath(path))


def _escape_surrogate(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def absolute_path(path: Path) -> Path:
    """`path` made absolute, its links resolved where they resolve: a link loop is kept as it is
    (it is then reported as unreadable by whatever reads it)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python < 3.13 on a link loop
        return path.absolute()


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
        return [SourceItem(name=path_text(root), path=root, key=path_text(root.name))], []
    if not root.is_dir():
        raise ValueError(f"{path_text(source)}: no such folder or file")
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
    files, ignored = [], []
    # The root's own ancestors count as above it: a link up out of the folder is a loop too,
    # and never a way into the rest of the disk.
    top = root.resolve()
    above = {_folder_id(folder) for folder in (top, *top.parents)}
    _walk(root, above, set(above), files, ignored)
    images = []
    for path in sorted(files):
        if is_image_path(path):
            images.append(path)
        else:
            ignored.append(IgnoredFile(path_text(path), "not an image file name"))
    return images, sorted(ignored, key=lambda f: f.name)


def _walk(
    folder: Path, above: set, seen: set, files: list[Path], ignored: list[IgnoredFile]
) -> None:
    """Add the files under `folder` to `files`, and what cannot be walked to `ignored`.

    `above` holds the folders being walked (device, inode), so a link back to one is a loop;
    `seen` every folder walked so far, so two links to one folder give its photos once.
    """
    try:
        # Real folders before links, each by name: a folder reached both ways is walked where
        # it is, and the link is the one reported.
        entries = sorted(os.scandir(folder), key=lambda e: (e.is_symlink(), e.name))
    except OSError as e:
        ignored.append(IgnoredFile(path_text(folder), f"unreadable folder ({e.strerror or e})"))
        return
    for entry in entries:
        # Hidden files and folders (.DS_Store, ._x.jpg, .git) are OS or tool droppings.
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if not _is_folder(entry):
            files.append(path)
            continue
        here = _folder_id(path)
        if here in above:
            ignored.append(IgnoredFile(path_text(path), "link to a folder above it (a loop)"))
            continue
        if here in seen:
            ignored.append(IgnoredFile(path_text(path), "link to a folder walked already"))
            continue
        seen.add(here)
        _walk(path, above | {here}, seen, files, ignored)


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links; a dangling link is a file (that cannot be read)
    except OSError:  # a link loop, or a link the OS will not stat: a file that cannot be read
        return False


def _folder_id(folder: Path) -> tuple[int, int]:
    try:
        stat = folder.stat()
    except OSError:
        return (-1, hash(folder))
    return stat.st_dev, stat.st_ino


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
    parts, key, name = [path_text(p) for p in relative.parts], path_text(relative), path_text(path)
    key = key.replace(os.sep, "/")
    if layout == "split":
        return SourceItem(name, identity=parts[1], split=parts[0], path=path, key=key)
    if layout == "identity":
        return SourceItem(name, identity=parts[0], path=path, key=key)
    return SourceItem(name, path=path, key=key)


def named_photos(images: str | Path | Sequence[ImageSource]) -> list[tuple[str, ImageSource]]:
    """(name, photo) of a folder's images (walked recursively), or of a list of photos."""
    if isinstance(images, str | Path):
        items, _ = walk_source(images, layout="flat")
        return [(item.name, item.path) for item in items]
    return [(describe_source(image), image) for image in images]
