"""`facerep` command-line entry point.

Exit codes (`output.EXIT_*`, the same for every command): 0 success, 1 when some inputs could
not be read (corrupt, unreadable, refused; the rest were processed), 2 on usage errors (bad
arguments, missing source, an output folder facerep must not write, a dataset that does not fit).
"""

from __future__ import annotations

import os
import sys

# Before torch loads: idle OpenMP threads must sleep, not spin, on a shared CPU, or training
# and embedding run many times slower when anything else is busy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from facerep.cli import (
    data_commands,
    eval_commands,
    explain_commands,
    face_commands,
    gallery_commands,
    pretrain_commands,
    serve_commands,
)
from facerep.cli.output import EXIT_USAGE, UsageError, console_err, escape

app = typer.Typer(
    name="facerep",
    help="Face representations from unlabeled photos with masked autoencoders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: it wraps to any terminal width, where rich's option tables cut
    # option names at 80 columns (--detect-worke...) and label every flag <bool>.
    rich_markup_mode=None,
)
data_commands.register(app)
pretrain_commands.register(app)
eval_commands.register(app)
face_commands.register(app)
gallery_commands.register(app)
explain_commands.register(app)
serve_commands.register(app)


def main() -> None:
    """Run the CLI, turning user errors into one-line messages with exit code 2."""
    try:
        app()
    except UsageError as e:
        console_err.print(f"[red]error:[/red] {escape(e)}", highlight=False)
        sys.exit(EXIT_USAGE)
    except OSError as e:  # an unwritable --out, a full disk: the user's to fix, not a bug
        where = f"{e.filename}: " if e.filename else ""
        message = escape(f"{where}{e.strerror or e}")
        console_err.print(f"[red]error:[/red] {message}", highlight=False)
        sys.exit(EXIT_USAGE)
