"""`facerep` command-line entry point.

Exit codes: 0 success, 1 when some inputs failed (the rest were processed), 2 on usage errors
(bad arguments, missing source, a dataset folder that does not fit the request).
"""

from __future__ import annotations

import sys

import typer

from facerep.cli import data_commands
from facerep.cli.output import UsageError, console_err

app = typer.Typer(
    name="facerep",
    help="Face representations from unlabeled photos with masked autoencoders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_commands.register(app)


def main() -> None:
    """Run the CLI, turning user errors into one-line messages with exit code 2."""
    try:
        app()
    except UsageError as e:
        console_err.print(f"[red]error:[/red] {e}", highlight=False)
        sys.exit(2)
