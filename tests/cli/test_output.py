"""What the CLI prints: distances people can read."""

from __future__ import annotations

from facerep.cli.output import format_distance


def test_distances_print_clamped_and_small_thresholds_with_significant_digits() -> None:
    assert format_distance(-3.6e-09) == "0.0000"  # never -0.0000
    assert format_distance(2.0000002) == "2.0000"
    assert format_distance(0.08) == "0.0800"
    assert format_distance(3.6e-05) == "3.6e-05"  # a calibrated threshold, not 0.0000
