"""Every cap and timeout a server enforces, each named, defaulted and explained.

``None`` turns a limit off. The defaults are safe for a server on the open
internet with a few thousand clients; each service may start from its own
defaults (a chat door wants no idle timeout on listeners who only read).
The help text of each field is also the command line's ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from sockhub.codec.lenprefix import DEFAULT_MAX_FRAME
from sockhub.codec.lines import DEFAULT_MAX_LINE


def _limit(default: Any, help: str, *, unit: str, minimum: float = 1) -> Any:
    return field(default=default, metadata={"help": help, "unit": unit, "minimum": minimum})


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-server limits. Sizes in bytes, times in seconds, ``None`` = off."""

    # Limits
    max_conns: int | None = _limit(
        10_000,
        "connections open at once; one more gets a one-line refusal and a close",
        unit="count",
    )
    max_conns_per_ip: int | None = _limit(
        256, "connections open at once from one IP address", unit="count"
    )
    max_line: int | None = _limit(
        DEFAULT_MAX_LINE,
        "longest line a line service accepts; a longer one gets an error and a close",
        unit="bytes",
    )
    max_frame: int | None = _limit(
        DEFAULT_MAX_FRAME, "largest frame or UDP datagram accepted", unit="bytes", minimum=0
    )
    write_high_water: int = _limit(
        64 * 1024,
        "unsent bytes past which the server stops reading from that client "
        "(back-pressure) and starts the write-timeout clock",
        unit="bytes",
    )
    write_buffer_max: int = _limit(
        1024 * 1024,
        "unsent bytes past which a client that is not reading is dropped at once "
        "(server-initiated sends, such as chat fan-out, cannot be paused)",
        unit="bytes",
    )
    # Timeouts
    idle_timeout: float | None = _limit(
        300.0,
        "close a connection that has sent nothing for this long (line services: no "
        "complete line)",
        unit="seconds",
    )
    write_timeout: float | None = _limit(
        30.0,
        "drop a client whose unsent bytes stayed above the high-water mark this long",
        unit="seconds",
    )
    tls_handshake_timeout: float = _limit(
        10.0, "time allowed for a TLS handshake", unit="seconds"
    )
    drain_timeout: float = _limit(
        5.0,
        "on shutdown or close, time to let queued output reach the client before cutting it",
        unit="seconds",
    )

    def merged(self, **overrides: Any) -> Limits:
        """A copy with the given fields replaced.

        Raises:
            TypeError: an unknown limit name.
            ValueError: a value of the wrong kind or out of range.
        """
        return replace(self, **overrides)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                if "None" not in str(f.type):
                    raise ValueError(f"{f.name} cannot be turned off")
                continue
            whole = str(f.type).startswith("int")
            allowed = int if whole else int | float
            minimum = f.metadata["minimum"] if whole else 0
            if isinstance(value, bool) or not isinstance(value, allowed):
                kind = "a whole number" if whole else "a number"
                raise ValueError(f"{f.name} must be {kind}, not {value!r}")
            if not (minimum <= value < float("inf")) or (not whole and value == 0):
                bound = f"at least {minimum}" if whole else "more than 0"
                raise ValueError(f"{f.name} must be {bound}, not {value!r}")


def limit_names() -> list[str]:
    """The names of every limit, for the CLI and the TOML loader."""
    return [f.name for f in fields(Limits)]


def limit_fields() -> list[Any]:
    """The dataclass fields, with ``metadata['help']`` and ``metadata['unit']``."""
    return list(fields(Limits))
