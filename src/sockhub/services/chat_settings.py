"""The chat service's own settings, checked once when the configuration is read."""

from __future__ import annotations

import socket
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sockhub.errors import ConfigError
from sockhub.hub.names import HISTORY_MAX, fold
from sockhub.passwords import is_hash
from sockhub.paths import default_data_dir


@dataclass(frozen=True, kw_only=True)
class ChatSettings:
    """The chat service's own settings (``options`` of its ServiceConfig)."""

    data_dir: Path
    history: int = 50
    #: Flood control per client: ``flood_rate`` lines a second on average, with
    #: bursts of ``flood_burst`` (a paste of a few lines must pass). The line
    #: door drops lines over it; the IRC door delays them, as ircd does.
    flood_rate: float | None = 5.0
    flood_burst: int = 20
    operators: dict[str, str] | None = None
    protected_rooms: tuple[str, ...] = ("#lobby",)
    #: The name the server gives itself. None: "sockhub" at the line door,
    #: the host name in IRC prefixes and numerics.
    server_name: str | None = None
    #: The IRC door's port; None keeps it closed, 0 picks a free one.
    irc_port: int | None = None
    #: A text file sent to IRC users as the message of the day.
    motd_file: Path | None = None
    #: A connection password IRC clients must send with PASS (plain text or a
    #: hash from ``sockhub passwd``); None: no password.
    irc_password: str | None = None
    # Timeouts, in seconds.
    #: Time every door allows from connect to a chosen nick (the line door's
    #: first line; IRC's NICK, USER and CAP END); then the client is told and
    #: closed, so a silent or trickling client cannot hold a slot. None: off.
    registration_timeout: float | None = 60.0
    #: Quiet time after which the IRC door sends PING.
    irc_ping_interval: float = 120.0
    #: Time allowed for an answer to that PING before the client is dropped.
    irc_ping_timeout: float = 60.0

    @property
    def line_name(self) -> str:
        return self.server_name or "sockhub"

    @property
    def irc_name(self) -> str:
        return self.server_name or socket.gethostname() or "sockhub"

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ChatSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise ConfigError(f"chat: unknown option(s): {', '.join(sorted(unknown))}")
        values = dict(options)
        values["data_dir"] = Path(values.get("data_dir") or default_data_dir())
        operators = values.get("operators") or {}
        for name, stored in operators.items():
            if not is_hash(str(stored)):
                raise ConfigError(
                    f"chat: operator {name!r} needs a password hash from 'sockhub passwd', "
                    "not a plain password"
                )
        values["operators"] = {fold(k): str(v) for k, v in operators.items()}
        if "protected_rooms" in values:
            values["protected_rooms"] = tuple(values["protected_rooms"])
        history = values.get("history", 50)
        if not isinstance(history, int) or not 0 <= history <= HISTORY_MAX:
            raise ConfigError(f"chat: history must be 0-{HISTORY_MAX}")
        if values.get("motd_file") is not None:
            values["motd_file"] = Path(values["motd_file"])
        name = values.get("server_name")
        if name is not None and (not name or any(c in name for c in " :!@,*?\r\n\0")):
            raise ConfigError(f"chat: server name {name!r} must be one word without :!@,*?")
        port = values.get("irc_port")
        if port is not None and (not isinstance(port, int) or not 0 <= port <= 65535):
            raise ConfigError(f"chat: irc_port {port!r} is out of range 0-65535")
        for key in ("irc_ping_interval", "irc_ping_timeout", "registration_timeout"):
            value = values.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
            ):
                raise ConfigError(f"chat: {key} must be a number of seconds above 0")
        return cls(**values)
