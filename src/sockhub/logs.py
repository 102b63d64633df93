"""Logging to stderr as text or one JSON object per line, some of it rate-limited."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


# --- Rate-limited logging ----------------------------------------------------------

#: Full log lines per kind of event and interval before they are only counted:
#: enough to see who and why when it starts, too few to fill a disk.
BURST = 5
#: Seconds each window of :class:`RateLimitedLog` lasts; one summary line per
#: kind and window at most (a flood costs BURST + 1 lines every 10 s).
INTERVAL = 10.0
#: Distinct details one summary keeps counts for; the rest are "other reasons". An
#: attacker with many addresses must not grow the counter without bound.
DETAILS_KEPT = 8
#: Details a summary line names, most frequent first.
DETAILS_SHOWN = 3

_limiters: weakref.WeakSet[RateLimitedLog] = weakref.WeakSet()


def _loop_call_later(delay: float, callback: Callable[[], None]) -> object | None:
    """Arm a timer on the running event loop, if there is one."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop.call_later(delay, callback)


@dataclass
class _Window:
    start: float
    logged: int = 0
    suppressed: int = 0
    details: Counter[str] = field(default_factory=Counter)
    overflow: int = 0  # events whose detail did not fit in DETAILS_KEPT
    timer: object | None = None


class RateLimitedLog:
    """Log lines an attacker can cause at will (one per connection), at a bounded rate.

    Each kind of event (its ``summary``) gets windows of ``interval`` seconds:
    the first ``burst`` events of a window are logged in full, the rest only
    counted, and one summary line per window says how many there were and
    why, e.g. ``chat: refused 1,712 more connections in the last 10 s:
    server full (100 connections); try again later (1,712 times)``. The summary is
    written when the window ends (a timer on the running event loop, or
    ``call_later``), by the next event after it, or by :meth:`flush` /
    :func:`flush_rate_limited` at shutdown, so the last count is never lost.

    Args:
        logger: where the lines go.
        burst: full lines per kind and window.
        interval: window length in seconds.
        level: the level of every line, full or summary.
        clock: monotonic seconds (injectable for tests).
        call_later: ``(delay, callback)`` arming a timer; default: the running
            asyncio loop's, or none outside a loop (then only the next event
            or a flush writes the summary).
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = BURST,
        interval: float = INTERVAL,
        level: int = logging.INFO,
        clock: Callable[[], float] = time.monotonic,
        call_later: Callable[[float, Callable[[], None]], object | None] = _loop_call_later,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self.level = level
        self.clock = clock
        self.call_later = call_later
        self._windows: dict[str, _Window] = {}
        _limiters.add(self)

    def log(self, summary: str, msg: str, *args: object, detail: str = "") -> None:
        """Log ``msg % args`` in full, or count it under ``summary`` once past the burst.

        Args:
            summary: what the summary line says before its count and window,
                with ``{count}`` where the count goes ("chat: refused {count}
                more connections"); it also names the kind of event.
            detail: why, counted per distinct value and named in the summary.
        """
        if not self.logger.isEnabledFor(self.level):
            return
        now = self.clock()
        window = self._windows.get(summary)
        if window is None or now - window.start >= self.interval:
            if window is not None:
                self._write_summary(summary, window, now)
            window = self._windows[summary] = _Window(now)
        if window.logged < self.burst:
            window.logged += 1
            self.logger.log(self.level, msg, *args)
            return
        window.suppressed += 1
        details = window.details
        if detail in details or len(details) < DETAILS_KEPT:
            details[detail] += 1
        else:
            window.overflow += 1
        if window.timer is None:
            delay = max(0.0, window.start + self.interval - now)
            window.timer = self.call_later(delay, lambda: self._expire(summary, window)) or True

    def flush(self) -> None:
        """Write every pending summary now (at shutdown)."""
        now = self.clock()
        for summary, window in list(self._windows.items()):
            self._write_summary(summary, window, now)

    def _expire(self, summary: str, window: _Window) -> None:
        self._write_summary(summary, window, self.clock())

    def _write_summary(self, summary: str, window: _Window, now: float) -> None:
        if not window.suppressed:
            return
        seconds = min(now - window.start, self.interval)
        line = f"{summary.format(count=f'{window.suppressed:,}')} in the last {seconds:.3g} s"
        named = [(detail, n) for detail, n in window.details.most_common() if detail]
        top = [f"{detail} ({_times(n)})" for detail, n in named[:DETAILS_SHOWN]]
        other = sum(n for _, n in named[DETAILS_SHOWN:]) + window.overflow
        if other:
            top.append(f"other reasons ({_times(other)})")
        self.logger.log(self.level, line + (": " + ", ".join(top) if top else ""))
        window.suppressed = 0
        window.details.clear()
        window.overflow = 0
        window.timer = None


def _times(n: int) -> str:
    return f"{n:,} time{'s' if n != 1 else ''}"


def flush_rate_limited() -> None:
    """Write the pending summary of every :class:`RateLimitedLog` (at shutdown)."""
    for limiter in list(_limiters):
        limiter.flush()
