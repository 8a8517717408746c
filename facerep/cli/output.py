"""Shared CLI output: consoles, JSON printing, progress bars and one-line user errors."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape as escape_markup
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from facerep.types import clamp_distance

# soft_wrap: paths and one-line errors must stay on one line, whatever the terminal width.
console = Console(soft_wrap=True)
console_err = Console(stderr=True, soft_wrap=True)


# Exit codes, one rule for every command (the README's "Exit codes" table).
EXIT_OK = 0
EXIT_UNREADABLE = 1  # the work is done, but some inputs could not be read and were left out
EXIT_USAGE = 2  # nothing was done: a mistake in the arguments, or an input that does not fit

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


class UsageError(Exception):
    """A mistake in what the user asked for; printed as one line, exit code 2."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user's input causes (a bad photo, a photo with no face, a gallery or
    encoder that does not fit) into one-line usage errors."""
    try:
        yield
    except (ValueError, FileExistsError) as e:
        raise UsageError(str(e)) from None


def escape(value: object) -> str:
    """Text from the user's data (a label, a file name, a message naming one) made safe to
    print through rich: every control or format character (Unicode category C: ANSI escapes,
    line breaks, bidi overrides) and every byte of a name that is not UTF-8 is written as an
    escape (`\\x1b`, `\\u202e`, `\\xff`), and rich markup (`[red]`) prints as written.
    """
    text = "".join(
        _escaped(c) if unicodedata.category(c)[0] == "C" else c for c in str(value)
    )
    return escape_markup(text)


def _escaped(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a file name's byte that is not UTF-8 (PEP 383)
        code -= 0xDC00
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
def exit_for(unreadable: int) -> None:
    """End a command whose work is done: exit code 1 when `unreadable` inputs (corrupt,
    unreadable, refused) were left out, else 0. Inputs read and found to hold no face are
    results, listed in the command's report, not errors."""
    if unreadable:
        raise typer.Exit(EXIT_UNREADABLE)


def print_table(rows: Iterable[Iterable[object]], *header: str, title: str | None = None) -> None:
    """Rows as a rich table on stdout; with no header, a two-column key / value table. Cells
    and title are printed as text (`escape`), never as markup or terminal control codes."""
    table = Table(*header, title=None if title is None else escape(title), show_header=bool(header))
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


def format_distance(distance: float) -> str:
    """A cosine distance or threshold for people to read: 4 decimals, or 2 significant digits
    below 0.001, so a calibrated threshold of 3.6e-05 does not show as 0.0000."""
    distance = clamp_distance(distance)
    return f"{distance:.4f}" if distance == 0.0 or distance >= 1e-3 else f"{distance:.2g}"


def print_json(data: object) -> None:
    """Print one JSON document on stdout, for scripts."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def progress_bar(description: str, quiet: bool) -> Iterator:
    """A callback `(done, total)` that drives a rich progress bar on stderr (or nothing)."""
    if quiet:
        yield lambda done, total: None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console_err,
        transient=False,
    )
    task = bar.add_task(description, total=None, rate="")
    with bar:

        def update(done: int, total: int) -> None:
            elapsed = bar.tasks[task].elapsed or 0.0
            rate = f"{done / elapsed:.0f}/s" if elapsed > 0.5 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        yield update
