"""Giving the heap a burst of connections freed back to the OS (glibc's ``malloc_trim``).

After a join storm, glibc keeps the chunks freed between the transports that
stay (uvloop's and libuv's, too big for Python's own allocator): free, but
resident, 265-352 B of every idle IRC client at 10,000 (issue 16).
``free`` returns memory only from the top of the heap; ``malloc_trim(0)``
also gives back the whole free pages inside it (``madvise``). glibc never
calls it by itself.

So a server calls it once connections have come and gone (at least
:data:`BURST` opened or closed) and then stopped for ``heap_trim`` seconds
while the process used little CPU (under :data:`QUIET_CPU` of a core): a
finished burst, not a busy one. At most once every :data:`MIN_INTERVAL`.
Nothing is armed while nothing happens. The call runs on the loop and
blocks it for about a millisecond at 10,000 IRC clients (0.6-1.4 ms measured;
each trim is logged at debug level with what it took). Off glibc (musl,
macOS, Windows) there is no such call and this does nothing. Long-running
programs that do the same: the JVM's ``-XX:TrimNativeHeapInterval``
(JDK-8293114, off by default there), lwsws (libwebsockets' server, a check
every 30 s: its issue 1849), osquery's ``malloc_trim_threshold`` (PR 7502).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

log = logging.getLogger("sockhub.server")

#: Connections opened or closed since the last trim that make a burst worth one.
BURST = 64
#: Quiet: the process used less than this share of a core over the wait.
QUIET_CPU = 0.1
#: Seconds between two trims at least (of one listener's).
MIN_INTERVAL = 10.0  # per listener: a process with three may trim three times at once

Trim = Callable[[], object]


@functools.cache
def glibc_trim() -> Trim | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none.

    Looked up when a listener first has a burst to trim after, not at start-up.
    """
    import ctypes  # only here: most runs never get this far

    try:
        libc = ctypes.CDLL(None)
        function = libc.malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc, or no dlopen(NULL)
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return lambda: function(0)


class HeapTrimmer:
    """One listener's trims: counts its connections coming and going, trims once they stop.

    Args:
        trim: what trims; None: glibc's ``malloc_trim(0)`` (:func:`glibc_trim`),
            and nothing at all where there is none.
        cpu: the process's CPU seconds so far.
    """

    __slots__ = ("_armed", "_closed", "_cpu", "_cpu_at", "_last", "_seen", "_trim", "_wait_at",
                 "events", "trims")

    def __init__(self, trim: Trim | None = None,
                 cpu: Callable[[], float] = time.process_time) -> None:
        self._trim = trim
        self._cpu = cpu
        #: Connections opened or closed since the last trim.
        self.events = 0
        #: Trims done (for tests and the debug log).
        self.trims = 0
        self._armed: asyncio.TimerHandle | None = None
        self._seen = 0
        self._wait_at = 0.0
        self._cpu_at = 0.0
        self._last = -MIN_INTERVAL
        #: The listener has shut down: what still closes arms nothing.
        self._closed = False

    @property
    def armed(self) -> bool:
        """A check is waiting to run (never, while nothing came or went)."""
        return self._armed is not None

    def churned(self, quiet: float | None, loop: asyncio.AbstractEventLoop) -> None:
        """A connection opened or closed; ``quiet`` is the listener's ``heap_trim``."""
        if quiet is None or self._closed:
            return
        self.events += 1
        if self._armed is None and self.events >= BURST:
            if self._trim is None:
                self._trim = glibc_trim()
                if self._trim is None:  # not glibc: nothing to give back this way
                    return
            self._arm(quiet, loop)

    def cancel(self) -> None:
        """Forget a pending check and arm no more (the listener shuts down: a connection
        lost after this, an aborted one, must not arm a timer on a loop that is ending)."""
        self._closed = True
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None

    def _arm(self, wait: float, loop: asyncio.AbstractEventLoop, quiet: float | None = None
             ) -> None:
        self._seen = self.events
        self._wait_at = loop.time()
        self._cpu_at = self._cpu()
        self._armed = loop.call_later(wait, self._check, quiet or wait, loop)

    def _check(self, quiet: float, loop: asyncio.AbstractEventLoop) -> None:
        self._armed = None
        now = loop.time()
        busy = self._cpu() - self._cpu_at > QUIET_CPU * (now - self._wait_at)
        if self.events != self._seen or busy:  # still coming and going, or busy: wait on
            self._arm(quiet, loop)
            return
        if now - self._last < MIN_INTERVAL:
            self._arm(self._last + MIN_INTERVAL - now, loop, quiet)
            return
        trim = self._trim
        assert trim is not None
        started = time.perf_counter()
        trim()
        took = time.perf_counter() - started
        self._last = loop.time()
        self.trims += 1
        log.debug("heap trimmed after %d connections opened or closed, in %.1f ms",
                  self.events, took * 1000)
        self.events = 0
