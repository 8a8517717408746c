"""What the CLI prints: distances people can read, user data that cannot drive the terminal."""

from __future__ import annotations

import os

from rich.console import Console

from facerep.cli.output import escape, format_distance


def test_distances_print_clamped_and_small_thresholds_with_significant_digits() -> None:
    assert format_distance(-3.6e-09) == "0.0000"  # never -0.0000
    assert format_distance(2.0000002) == "2.0000"
    assert format_distance(0.08) == "0.0800"
    assert format_distance(3.6e-05) == "3.6e-05"  # a calibrated threshold, not 0.0000


def test_user_text_is_printed_as_written_and_never_as_control_codes() -> None:
    text = "eve\x1b[2J\u202e[/b]" + os.fsdecode(b"\xff.jpg") + " Zoë 李"
    console = Console(record=True, width=200, color_system=None)
    console.print(escape(text), highlight=False)
    assert console.export_text().strip() == "eve\\x1b[2J\\u202e[/b]\\xff.jpg Zoë 李"
