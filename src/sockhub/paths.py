"""Where sockhub keeps state by default."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """``$XDG_STATE_HOME/sockhub``, or ``~/.local/state/sockhub``: history, tokens."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local/state")
    return Path(base) / "sockhub"
