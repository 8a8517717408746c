"""Where facerep keeps per-user state, and the environment variables that move it."""

from __future__ import annotations

import os
from pathlib import Path

HOME_VARIABLE = "FACEREP_HOME"


def facerep_home() -> Path:
    """Where facerep keeps per-user state: `$FACEREP_HOME`, else `~/.facerep`."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".facerep")
