"""Giving the heap back after a burst of connections (engine/heap.py, ``heap_trim``).

The policy runs on a manual loop and CPU clock (no waiting); the wiring on a
real server, where the trim it calls is watched; and the real glibc call in a
real ``sockhub serve`` with its debug line.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from net import open_client, read_line
from proc import start_sockhub
from sockhub.engine import heap
from sockhub.engine.heap import BURST, MIN_INTERVAL, HeapTrimmer
from sockhub.limits import Limits


class Handle:
    def __init__(self, when: float, callback: Any, args: tuple[Any, ...]) -> None:
        self.when, self.callback, self.args = when, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """``time`` and ``call_later``, moved by hand; with the process's CPU clock beside it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.cpu = 0.0
        self.handles: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any, *args: Any) -> Handle:
        handle = Handle(self.now + delay, callback, args)
        self.handles.append(handle)
        return handle

    def advance(self, seconds: float, *, busy: float = 0.0) -> None:
        """Let ``seconds`` pass, using ``busy`` of a core meanwhile; run what falls due."""
        end = self.now + seconds
        while True:
            due = [h for h in self.handles if not h.cancelled and h.when <= end]
            if not due:
                break
            handle = min(due, key=lambda h: h.when)
            self.handles.remove(handle)
            self.cpu += (handle.when - self.now) * busy
            self.now = handle.when
            handle.callback(*handle.args)
        self.cpu += (end - self.now) * busy
        self.now = end

    @property
    def pending(self) -> list[Handle]:
        return [h for h in self.handles if not h.cancelled]


@pytest.fixture
def loop() -> ManualLoop:
    return ManualLoop()


def trimmer(loop: ManualLoop) -> tuple[HeapTrimmer, list[float]]:
    trims: list[float] = []
    return HeapTrimmer(lambda: trims.append(loop.now), cpu=lambda: loop.cpu), trims


def burst(trimmer: HeapTrimmer, loop: ManualLoop, n: int = BURST, quiet: float | None = 1.0
          ) -> None:
    for _ in range(n):
        trimmer.churned(quiet, loop)  # type: ignore[arg-type]


def test_nothing_happened_nothing_is_armed_or_trimmed(loop):
    t, trims = trimmer(loop)
    loop.advance(3600)
    assert not t.armed and not loop.pending and trims == []
    burst(t, loop, BURST - 1)  # a few connections are no burst
    loop.advance(3600)
    assert not t.armed and not loop.pending and trims == [] and t.events == BURST - 1


def test_a_burst_is_trimmed_once_after_a_quiet_second(loop):
    t, trims = trimmer(loop)
    burst(t, loop)
    assert t.armed
    loop.advance(0.99)
    assert trims == []
    loop.advance(0.02)
    assert trims == [1.0] and t.events == 0 and t.trims == 1
    loop.advance(3600)  # and then nothing more: no timer left behind
    assert trims == [1.0] and not t.armed and not loop.pending


def test_no_trim_while_connections_keep_coming_or_the_process_is_busy(loop):
    t, trims = trimmer(loop)
    burst(t, loop)
    for _ in range(5):  # more within each second
        loop.advance(0.5)
        burst(t, loop, 10)
        loop.advance(0.5)
    assert trims == [] and t.armed
    loop.advance(3.0, busy=0.5)  # no connections, but the loop is busy
    assert trims == [] and t.armed
    loop.advance(1.0, busy=0.05)  # a quiet second at last
    assert trims == [9.0] and t.events == 0 and not t.armed


def test_trims_are_at_least_min_interval_apart(loop):
    t, trims = trimmer(loop)
    burst(t, loop)
    loop.advance(1.0)
    burst(t, loop)
    loop.advance(2.0)
    assert trims == [1.0]  # the second burst waits for the interval
    loop.advance(MIN_INTERVAL)
    assert trims == [1.0, 1.0 + MIN_INTERVAL] and not t.armed


def test_off_means_nothing_is_counted_or_armed(loop):
    t, trims = trimmer(loop)
    burst(t, loop, 10 * BURST, quiet=None)
    loop.advance(3600)
    assert t.events == 0 and not t.armed and trims == []


def test_off_glibc_there_is_nothing_to_call(loop, monkeypatch):
    monkeypatch.setattr(heap, "glibc_trim", lambda: None)
    t = HeapTrimmer(cpu=lambda: loop.cpu)
    burst(t, loop, 2 * BURST)
    assert not t.armed and not loop.pending


def test_cancel_forgets_the_pending_check(loop):
    t, trims = trimmer(loop)
    burst(t, loop)
    t.cancel()
    loop.advance(3600)
    assert trims == [] and not t.armed


def test_connections_lost_after_the_shutdown_arm_nothing(loop):
    """An aborted connection is lost after the listener's cancel(): no new check."""
    t, trims = trimmer(loop)
    t.cancel()
    burst(t, loop)
    assert not t.armed and not loop.pending
    loop.advance(3600)
    assert trims == []


def test_glibc_trim_is_found_and_runs_here():
    trim = heap.glibc_trim()
    assert trim is not None, "this test machine runs glibc"
    assert trim() in (0, 1)  # 1: memory was given back


def test_the_default_is_a_second_of_quiet():
    assert Limits().heap_trim == 1.0


async def test_a_servers_connections_coming_and_going_trigger_one_trim(serve):
    server = await serve("echo", heap_trim=0.05)
    trimmed = asyncio.Event()
    server.heap = HeapTrimmer(trimmed.set)
    clients = [await open_client(server.ports[0]) for _ in range(BURST // 2)]
    for reader, writer in clients:
        writer.write(b"hi\n")
        assert await read_line(reader) == b"hi\n"
        writer.close()
        await writer.wait_closed()
    await asyncio.wait_for(trimmed.wait(), 10.0)
    assert server.heap.trims == 1 and server.heap.events == 0 and not server.heap.armed


async def test_sockhub_serve_trims_with_glibc_and_says_so_at_debug_level():
    served = await start_sockhub("echo", "--port", "0", "--heap-trim", "0.05",
                                 "--log-level", "debug")
    try:
        port = served.ports["echo"]
        for _ in range(BURST):
            _, writer = await open_client(port)
            writer.close()
            await writer.wait_closed()
        line = await served.expect_log("heap trimmed after")
        assert "connections opened or closed, in" in line and " ms" in line
    finally:
        await served.stop()


async def test_a_few_connections_arm_nothing(serve):
    server = await serve("echo")  # the default: a second of quiet
    reader, writer = await open_client(server.ports[0])
    writer.write(b"hi\n")
    assert await read_line(reader) == b"hi\n"
    assert server.heap.events == 1 and not server.heap.armed  # counted, nothing waiting
    writer.close()
    await writer.wait_closed()
