"""Every cap and timeout a server enforces, each named, defaulted and explained.

``None`` turns a limit off (``none`` on the command line and in a config
file). The defaults are safe for a server on the open internet with a few
thousand clients; each service may start from its own defaults (a chat door
wants no idle timeout on listeners who only read). Each field is declared
once, with :func:`sockhub.options.option`: its help is also the command
line's ``--help`` and the docs' table.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from sockhub.codec.lenprefix import DEFAULT_MAX_FRAME
from sockhub.codec.lines import DEFAULT_MAX_LINE
from sockhub.options import option, settle


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-server limits. Sizes in bytes, times in seconds, ``None`` = off."""

    # Limits
    max_conns: int | None = option(
        10_000,
        "connections open at once; one more gets a one-line refusal and a close",
        unit="count", off=True, minimum=1,
    )
    max_conns_per_ip: int | None = option(
        256, "connections open at once from one IP address", unit="count", off=True, minimum=1
    )
    max_line: int | None = option(
        DEFAULT_MAX_LINE,
        "longest line a line service accepts; a longer one gets an error and a close",
        unit="bytes", off=True, minimum=1,
    )
    max_frame: int | None = option(
        DEFAULT_MAX_FRAME, "largest frame or UDP datagram accepted",
        unit="bytes", off=True, minimum=0,
    )
    write_high_water: int = option(
        64 * 1024,
        "unsent bytes past which the server stops reading from that client "
        "(back-pressure) and starts the write-timeout clock",
        unit="bytes", minimum=1,
    )
    write_buffer_max: int = option(
        1024 * 1024,
        "unsent bytes past which a client that is not reading is dropped at once: "
        "server-initiated sends, such as chat fan-out, cannot be paused",
        unit="bytes", minimum=1,
    )
    # Timeouts
    idle_timeout: float | None = option(
        300.0,
        "close a connection that has sent nothing (at a line service: no complete "
        "line) for this long",
        unit="seconds", off=True,
    )
    write_timeout: float | None = option(
        30.0,
        "drop a client whose unsent bytes stayed above the high-water mark this long",
        unit="seconds", off=True,
    )
    tls_handshake_timeout: float = option(
        10.0, "time allowed for a TLS handshake", unit="seconds"
    )
    drain_timeout: float = option(
        5.0,
        "on shutdown or close, time to let queued output reach the client before cutting it",
        unit="seconds",
    )
    # Memory
    heap_trim: float | None = option(
        1.0,
        "after a burst of connections opened or closed, give the heap's free pages back to "
        "the OS (glibc's malloc_trim) once the process has been quiet this long; at most "
        "every 10 s, and nothing off glibc",
        unit="seconds", off=True,
    )

    def merged(self, **overrides: Any) -> Limits:
        """A copy with the given fields replaced.

        Raises:
            TypeError: an unknown limit name.
            ValueError: a value of the wrong kind or out of range.
        """
        return replace(self, **overrides)

    def __post_init__(self) -> None:
        settle(self)


def limit_names() -> list[str]:
    """The names of every limit, for the CLI and the TOML loader."""
    return [f.name for f in fields(Limits)]


def limit_fields() -> list[Any]:
    """The dataclass fields; ``metadata["option"]`` holds each one's help and unit."""
    return list(fields(Limits))
