"""A clock for what lives beside connections (a hub bot): the running loop's time and timers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger("sockhub.engine")


class LoopClock:
    """The :class:`~sockhub.protocols.base.Clock` of no one connection.

    A timer's callback that raises is logged, never propagated into the loop.
    """

    def time(self) -> float:
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, _guarded, callback)


def _guarded(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("timer callback %r failed", callback)
