"""The one rule for the folders facerep writes: never into its inputs, never over foreign files.

Every command that writes an output folder (`cluster --out`, `prepare SRC OUT`, `pretrain --out`,
`eval --out`, `occlusion --out`) checks it here before any work, so a mistyped `--out` cannot
cost a user's photos:

- the output folder must neither be, nor contain, nor lie inside any input (symlinks resolved,
  and the paths as written, so a linked photo counts as well as the photo it points to);
- it must be absent, empty, or facerep's own output of the same kind: a folder facerep creates
  holds a marker file (`.facerep-output`), and folders written before markers existed are
  recognised by the file facerep always writes there (`clusters.csv`, `manifest.sqlite`, ...);
- a command that replaces its whole folder (`cluster --overwrite`) removes it only when every
  entry in it is one facerep writes there; anything else is refused, never deleted.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from facerep.files import atomic_write_bytes

MARKER_FILE = ".facerep-output"

OutputKindName = Literal["cluster", "prepare", "pretrain", "eval", "occlusion"]


@dataclass(frozen=True)
class OutputKind:
    """What one command writes into its output folder."""

    name: OutputKindName
    signature: tuple[str, ...]  # entries only this command writes: any one marks its folder
    replaced: bool = False  # the whole folder is replaced (needs --overwrite), not added to
    entries: str = ""  # regex of every top-level entry a replaced folder may hold


KINDS: dict[OutputKindName, OutputKind] = {
    kind.name: kind
    for kind in (
        OutputKind(
            "cluster",
            ("clusters.csv",),
            replaced=True,
            entries=r"clusters\.csv|failures\.csv|unmatched|person-\d{3,}",
        ),
        OutputKind("prepare", ("manifest.sqlite",)),
        OutputKind("pretrain", ("model.safetensors", "checkpoints")),
        OutputKind("eval", ("results.json", "attributes.json")),
        OutputKind(
            "occlusion",
            ("occlusion.json",),
            replaced=True,
            entries=r"occlusion\.json|\d{4,}-.+-face\d+-(mask|overlay)\.png",
        ),
    )
}


class OutputError(ValueError):
    """An output folder facerep must not write; one line: `out: reason`."""


def check_output(
    out: str | Path,
    inputs: Iterable[str | Path] = (),
    *,
    kind: OutputKindName,
    overwrite: bool = False,
) -> Path:
    """Raise OutputError unless `out` may be written by a `kind` command reading `inputs`.

    Inputs that do not exist on disk (`builtin:lfw-sample`) cannot be harmed and are skipped.
    """
    spec, out = KINDS[kind], Path(out)
    for source in inputs:
        _refuse_overlap(out, Path(source))
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    entries = _entries(out)
    if not entries:
        return out
    if not _written_by(out, entries, spec):
        raise OutputError(
            f"{out}: not empty and not written by facerep {kind}: choose a new or empty folder"
        )
    if spec.replaced and not overwrite:
        raise OutputError(
            f"{out}: already exists and is not empty (pass --overwrite to replace it)"
        )
    if spec.replaced:
        foreign = sorted(e for e in entries if not re.fullmatch(spec.entries, e))
        if foreign:
            raise OutputError(
                f"{out}: --overwrite refused: {out / foreign[0]} was not written by facerep"
            )
    return out


def claim_output(
    out: str | Path,
    inputs: Iterable[str | Path] = (),
    *,
    kind: OutputKindName,
    overwrite: bool = False,
) -> Path:
    """`check_output`, then create `out` (if needed) and mark it as this command's output."""
    out = check_output(out, inputs, kind=kind, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out, kind)
    return out


def mark_output(folder: str | Path, kind: OutputKindName) -> None:
    """Write the marker that lets a later run recognise `folder` as facerep's `kind` output."""
    marker = Path(folder) / MARKER_FILE
    if _marker_kind(marker) != kind:
        atomic_write_bytes(marker, json.dumps({"written_by": "facerep", "kind": kind}).encode())


def _refuse_overlap(out: Path, source: Path) -> None:
    if not os.path.lexists(source):
        return
    for written in _spellings(out):
        for read in _spellings(source):
            if written == read:
                raise OutputError(f"{out}: is the input {source}; choose another output folder")
            if written in read.parents:
                raise OutputError(
                    f"{out}: contains the input {source}; choose an output folder outside it"
                )
            if read in written.parents:
                raise OutputError(
                    f"{out}: is inside the input {source}; choose an output folder outside it"
                )


def _spellings(path: Path) -> set[Path]:
    """The path as written (absolute) and with every symlink resolved (a link loop: as written)."""
    written = Path(os.path.abspath(path))
    try:
        return {written, path.resolve()}
    except (OSError, RuntimeError):  # a link loop resolves to nothing: it is no folder to harm
        return {written}


def _entries(out: Path) -> list[str]:
    if not out.is_dir():
        return []
    # The marker alone, or a marker half-written by another process of the same run (torchrun
    # ranks claim the run folder together), does not make a folder non-empty.
    return [
        name
        for name in os.listdir(out)
        if name != MARKER_FILE and not name.startswith(f".{MARKER_FILE}.")
    ]


def _written_by(out: Path, entries: list[str], spec: OutputKind) -> bool:
    return _marker_kind(out / MARKER_FILE) == spec.name or any(
        name in entries for name in spec.signature
    )


def _marker_kind(marker: Path) -> str | None:
    try:
        return json.loads(marker.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def swap_in_folder(staging: str | Path, out: str | Path) -> None:
    """Put the finished `staging` folder at `out`, removing what was there only afterwards."""
    import shutil

    staging, out = Path(staging), Path(out)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
