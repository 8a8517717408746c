"""Run figures: epoch means and the loss curve."""

from __future__ import annotations

from facerep.train.observe import epoch_means, save_loss_curve


def test_epoch_means_average_complete_epochs_only(tmp_path) -> None:
    assert epoch_means([1.0, 2.0, 3.0, 5.0, 7.0], 2) == [1.5, 4.0]
    assert epoch_means([1.0], 2) == []
    save_loss_curve(tmp_path / "curve.png", [1.0, 2.0, 3.0, 5.0, 7.0], 2)
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
