"""Clocks and timers for what the engine runs: the loop's own, and a wheel for long timers.

:class:`LoopClock` is the clock of what lives beside connections (a hub bot).
:class:`TimerWheel` holds the long timers of every connection (keep-alive
pings, registration deadlines, the idle check) behind one loop timer.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable
from typing import Any
from typing import Protocol as TypingProtocol

from sockhub.protocols.base import Timer

log = logging.getLogger("sockhub.engine")

#: Timers this long or longer go to the wheel (:meth:`TimerWheel.call_later`);
#: shorter ones (flood pacing, a 0-second "next turn") stay loop timers.
WHEEL_MIN_DELAY = 10.0
#: The wheel's granularity: a timer runs at most this much after its time, never
#: before (at most 10% late at :data:`WHEEL_MIN_DELAY`).
WHEEL_TICK = 1.0


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


class _CallAt(TypingProtocol):
    def __call__(self, when: float, callback: Callable[[], None], /) -> Timer: ...


class WheelTimer:
    """One timer on a :class:`TimerWheel`: ``function(target, arg)``, until it runs.

    A plain function and its two arguments rather than a bound method: the
    engine passes ``StreamConnection._run_timer``, the connection and the
    protocol's callback, so an entry is this one small object (a loop
    ``TimerHandle``, with the bound method, the argument tuple and uvloop's
    libuv timer, is several times its size).
    """

    __slots__ = ("arg", "function", "target")

    def __init__(self, function: Callable[[Any, Any], None] | None, target: object,
                 arg: object) -> None:
        self.function = function
        self.target = target
        self.arg = arg

    def cancel(self) -> None:
        """It will not run. Its slot in the wheel is freed when its tick comes."""
        self.function = self.target = self.arg = None

    @property
    def cancelled(self) -> bool:
        """Cancelled, or run already."""
        return self.function is None


class TimerWheel:
    """Many connections' long timers in buckets of ``tick`` seconds, behind one loop timer.

    Idle memory (issue 16): an idle chat client holds a keep-alive timer for
    life; as a loop ``TimerHandle`` that was ~300 B traced and more in C, here it
    is one :class:`WheelTimer` in a list. A timer due at ``t`` runs at the first
    tick at or after ``t`` (``ceil(t / tick) * tick``): never early, at most one
    tick late. Timers of one tick run in the order they were set.

    ``time`` is the loop's monotonic clock and ``call_at`` its ``call_at``;
    tests pass a manual clock's and move it themselves.
    """

    __slots__ = ("_armed", "_armed_at", "_buckets", "_call_at", "_due", "_time", "tick")

    def __init__(self, time: Callable[[], float], call_at: _CallAt,
                 tick: float = WHEEL_TICK) -> None:
        if not tick > 0:
            raise ValueError(f"tick must be positive, not {tick!r}")
        self._time = time
        self._call_at = call_at
        self.tick = tick
        #: Tick number → the timers due at it, in the order they were set.
        self._buckets: dict[int, list[WheelTimer]] = {}
        #: The tick numbers of the buckets, a heap: the earliest first.
        self._due: list[int] = []
        #: The one loop timer, armed for tick number ``_armed_at``.
        self._armed: Timer | None = None
        self._armed_at = 0

    def time(self) -> float:
        """The clock the wheel runs on (the loop's)."""
        return self._time()

    def __len__(self) -> int:
        """Timers waiting in the wheel, cancelled ones whose tick has not come included."""
        return sum(len(bucket) for bucket in self._buckets.values())

    def call_later(self, delay: float, function: Callable[[Any, Any], None], target: object,
                   arg: object = None) -> WheelTimer:
        """Run ``function(target, arg)`` ``delay`` seconds from now (rounded up to a tick)."""
        timer = WheelTimer(function, target, arg)
        when = math.ceil((self._time() + max(delay, 0.0)) / self.tick)
        bucket = self._buckets.get(when)
        if bucket is None:
            self._buckets[when] = [timer]
            heapq.heappush(self._due, when)
            if self._armed is None or when < self._armed_at:
                self._arm(when)
        else:
            bucket.append(timer)
        return timer

    def _arm(self, when: int) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._armed_at = when
        self._armed = self._call_at(when * self.tick, self.run_due)

    def clear(self) -> None:
        """Drop every timer and the loop timer (a server that stopped)."""
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None
        for bucket in self._buckets.values():
            for timer in bucket:
                timer.cancel()
        self._buckets.clear()
        self._due.clear()

    def run_due(self) -> None:
        """Run every timer whose tick has come, then arm the loop timer for the next tick.

        A callback that raises is logged; the others still run.
        """
        self._armed = None
        now = self._time()
        due, buckets = self._due, self._buckets
        while due and due[0] * self.tick <= now:
            for timer in buckets.pop(heapq.heappop(due)):
                function, target, arg = timer.function, timer.target, timer.arg
                if function is None:
                    continue  # cancelled
                timer.cancel()  # run: its references go now
                try:
                    function(target, arg)
                except Exception:
                    log.exception("timer %r of %r failed", function, target)
        if due and (self._armed is None or self._armed_at != due[0]):
            self._arm(due[0])  # callbacks may have set timers: the earliest decides
