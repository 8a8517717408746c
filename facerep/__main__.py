"""`python -m facerep` runs the CLI."""

from facerep.cli.app import main

main()
