"""The settings of a service behind the token login (exec, files), declared once.

Each such service's settings class derives from :class:`LoginSettings`; the
command line has these flags once, in a group of their own, and gives them
to whichever of those services runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sockhub.options import option
from sockhub.services.settings import ServiceSettings


@dataclass(frozen=True, kw_only=True)
class LoginSettings(ServiceSettings):
    """Who may log in, and what a wrong answer costs (services/login.py)."""

    token_file: Path | None = option(
        None, "the shared secret, mode 0600", metavar="FILE",
        default_text="generated on first start into DATA_DIR/SERVICE-token, path logged",
    )
    insecure: bool = option(
        False, "allow a non-loopback --host without TLS (clear text; logs a warning)"
    )
    auth_timeout: float = option(
        10.0, "time from connect to an AUTH", unit="seconds", cli=False
    )
    auth_delay: float = option(
        0.5, "time before a wrong answer is told, doubled for each earlier failure from "
        "that address", unit="seconds", cli=False,
    )
    auth_delay_max: float = option(
        5.0, "the longest that delay grows, below the clients' 10 s login timeout",
        unit="seconds", cli=False,
    )
    auth_window: float = option(
        60.0, "time without a failure after which an address starts over", unit="seconds",
        cli=False,
    )
    # Logins in progress (connected, not yet in; a wrong answer counts until it
    # is told): past either cap a new connection is refused before any
    # challenge, so guessing costs an attacker slots for the delays above.
    auth_max_pending: int = option(
        64, "logins in progress at once", unit="count", minimum=1, cli=False
    )
    auth_max_pending_per_ip: int = option(
        8, "logins in progress at once from one address", unit="count", minimum=1, cli=False
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.auth_delay_max < self.auth_delay:
            raise ValueError("auth_delay_max must be at least auth_delay")
