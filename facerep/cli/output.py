"""Shared CLI output: consoles, JSON printing, progress bars and one-line user errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

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


def exit_for(unreadable: int) -> None:
    """End a command whose work is done: exit code 1 when `unreadable` inputs (corrupt,
    unreadable, refused) were left out, else 0. Inputs read and found to hold no face are
    results, listed in the command's report, not errors."""
    if unreadable:
        raise typer.Exit(EXIT_UNREADABLE)


def print_table(rows: Iterable[Iterable[object]], *header: str, title: str | None = None) -> None:
    """Rows as a rich table on stdout; with no header, a two-column key / value table."""
    table = Table(*header, title=title, show_header=bool(header))
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)


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
