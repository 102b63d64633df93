"""The engine's timer wheel: long timers of many connections behind one loop timer.

Issue 16 (idle memory): a loop ``TimerHandle`` per connection for its
keep-alive was ~700 B under uvloop; a wheel entry is one small object. The
wheel runs on a manual clock here (its ``time`` and ``call_at``), so no test
waits for a timer; the engine tests put a manual wheel in a real server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pytest

from irc_support import ManualClock, Network, commands, find
from net import STEP, open_client, read_line, read_until_eof, server_side
from sockhub.engine.clock import WHEEL_MIN_DELAY, WHEEL_TICK, TimerWheel, WheelTimer
from sockhub.protocols.base import LineProtocol


class ManualTime(ManualClock):
    """A loop's ``time`` and ``call_at`` that move only when told (``advance``)."""

    def __init__(self, now: float = 1000.0) -> None:
        super().__init__(now)
        self.armed_total = 0

    def call_at(self, when: float, callback: Callable[[], None]) -> Any:
        self.armed_total += 1
        return super().call_at(when, callback)

    @property
    def pending(self) -> int:
        """Loop timers armed and not yet run or cancelled."""
        return sum(1 for t in self._timers if not t[2])


def run(callback: Callable[[], None], _: object) -> None:
    callback()


@pytest.fixture
def clock() -> ManualTime:
    return ManualTime()


@pytest.fixture
def wheel(clock: ManualTime) -> TimerWheel:
    return TimerWheel(clock.time, clock.call_at)


def test_a_timer_runs_at_the_first_tick_after_its_time_never_before(clock, wheel):
    ran: list[float] = []
    wheel.call_later(60.4, run, lambda: ran.append(clock.now))
    clock.advance(60.39)
    assert ran == []
    clock.advance(0.61)  # 1061.0: the tick after 1060.4
    assert ran == [1061.0]
    assert len(wheel) == 0 and clock.pending == 0  # nothing left armed


def test_a_timer_on_a_tick_runs_on_it(clock, wheel):
    ran: list[str] = []
    wheel.call_later(30.0, run, lambda: ran.append("on time"))
    clock.advance(29.999)
    assert ran == []
    clock.advance(0.001)
    assert ran == ["on time"]


def test_function_target_and_argument(clock, wheel):
    got: list[tuple[object, object]] = []
    wheel.call_later(10, lambda target, arg: got.append((target, arg)), "conn", "cb")
    clock.advance(10)
    assert got == [("conn", "cb")]


def test_a_cancelled_timer_never_runs_and_the_others_of_its_tick_do(clock, wheel):
    ran: list[int] = []
    timers = [wheel.call_later(20, run, lambda i=i: ran.append(i)) for i in range(4)]
    timers[1].cancel()
    assert timers[1].cancelled
    clock.advance(25)
    assert ran == [0, 2, 3]
    assert all(t.cancelled for t in timers)  # run: each has let go of its callback
    timers[0].cancel()  # cancelling one that ran is harmless
    clock.advance(100)
    assert ran == [0, 2, 3]


def test_a_cancelled_timer_lets_go_of_what_it_would_have_called_at_once(wheel):
    timer = wheel.call_later(120, run, object())
    timer.cancel()
    assert (timer.function, timer.target, timer.arg) == (None, None, None)


def test_ten_thousand_timers_share_one_loop_timer_and_run_in_order(clock, wheel):
    ran: list[int] = []
    for i in range(10_000):  # connections arriving over 100 s, each pinged 120 s later
        clock.now = 1000.0 + i / 100
        wheel.call_later(120, run, lambda i=i: ran.append(i))
        assert clock.pending == 1  # one loop timer, however many connections
    assert clock.armed_total == 1  # armed once, for the earliest tick
    clock.advance(1119.5 - clock.now)  # the first is due at 1120
    assert ran == []
    clock.advance(1220 - clock.now)  # the last at 1219.99
    assert ran == list(range(10_000))
    # One loop timer per tick that had timers, never one per connection.
    assert clock.armed_total == 101
    assert clock.pending == 0 and len(wheel) == 0


def test_an_earlier_timer_rearms_the_loop_timer(clock, wheel):
    ran: list[str] = []
    wheel.call_later(100, run, lambda: ran.append("late"))
    wheel.call_later(10, run, lambda: ran.append("early"))
    assert clock.pending == 1
    clock.advance(10)
    assert ran == ["early"]
    clock.advance(90)
    assert ran == ["early", "late"]


def test_a_timer_set_by_a_callback_runs_at_its_own_tick(clock, wheel):
    ran: list[float] = []
    rounds = [1, 2]

    def again() -> None:
        ran.append(clock.now)
        if rounds:
            rounds.pop()
            wheel.call_later(30, run, again)

    wheel.call_later(30, run, again)
    wheel.call_later(45, run, lambda: ran.append(-clock.now))
    clock.advance(200)
    assert ran == [1030.0, -1045.0, 1060.0, 1090.0]


def test_a_failing_callback_is_logged_and_the_rest_of_its_tick_runs(clock, wheel, caplog):
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    wheel.call_later(15, run, boom)
    wheel.call_later(15, run, lambda: ran.append(1))
    with caplog.at_level(logging.ERROR, logger="sockhub.engine"):
        clock.advance(15)
    assert ran == [1]
    assert "failed" in caplog.text and "boom" in caplog.text


def test_clear_drops_every_timer_and_the_loop_timer(clock, wheel):
    ran: list[int] = []
    timer = wheel.call_later(15, run, lambda: ran.append(1))
    wheel.clear()
    assert clock.pending == 0 and len(wheel) == 0 and timer.cancelled
    clock.advance(100)
    assert ran == []


def test_a_tick_must_be_positive(clock):
    with pytest.raises(ValueError, match="tick"):
        TimerWheel(clock.time, clock.call_at, tick=0)


# The engine: a real server whose wheel runs on a manual clock ---------------


class Delayed(LineProtocol):
    """Says "later" after a long timer set on connect; records that it ran."""

    delay = 60.0
    fired: list[str] = []
    timers: list[object] = []

    def connection_made(self, info):
        super().connection_made(info)
        self.send_line("hello")
        Delayed.timers.append(self.clock.call_later(self.delay, self._fire))

    def _fire(self) -> None:
        Delayed.fired.append(self.info.peer)
        self.send_line("later")


@pytest.fixture
def manual_wheel() -> Callable[[Any], ManualTime]:
    def install(server: Any) -> ManualTime:
        clock = ManualTime()
        server._wheel = TimerWheel(clock.time, clock.call_at)
        return clock
    return install


async def test_a_long_protocol_timer_rides_the_wheel_and_its_output_is_written(
        serve, manual_wheel):
    Delayed.fired, Delayed.timers = [], []
    server = await serve(Delayed, idle_timeout=None)
    clock = manual_wheel(server)
    reader, writer = await open_client(server.ports[0])
    assert await read_line(reader) == b"hello\r\n"
    [timer] = Delayed.timers
    assert isinstance(timer, WheelTimer) and len(server.wheel) == 1
    clock.advance(Delayed.delay - 1)
    assert Delayed.fired == []
    clock.advance(WHEEL_TICK)
    assert len(Delayed.fired) == 1
    assert await read_line(reader) == b"later\r\n"  # the engine flushed what it queued
    writer.close()


async def test_a_short_protocol_timer_stays_a_loop_timer(serve, manual_wheel):
    Delayed.fired, Delayed.timers = [], []

    class Quick(Delayed):
        delay = 0.01

    server = await serve(Quick, idle_timeout=None)
    manual_wheel(server)
    reader, writer = await open_client(server.ports[0])
    assert await read_line(reader) == b"hello\r\n"
    assert await read_line(reader) == b"later\r\n"  # on the loop's own time
    assert not isinstance(Delayed.timers[0], WheelTimer) and len(server.wheel) == 0
    writer.close()


async def test_a_connection_closed_before_its_timer_runs_nothing(serve, manual_wheel):
    Delayed.fired, Delayed.timers = [], []
    server = await serve(Delayed, idle_timeout=None)
    clock = manual_wheel(server)
    kept_reader, kept_writer = await open_client(server.ports[0])
    assert await read_line(kept_reader) == b"hello\r\n"
    reader, writer = await open_client(server.ports[0])
    assert await read_line(reader) == b"hello\r\n"
    gone = server_side(server, writer)
    writer.close()
    await asyncio.wait_for(gone.closed.wait(), STEP)
    clock.advance(Delayed.delay + WHEEL_TICK)
    assert Delayed.fired == [server_side(server, kept_writer).peer]  # only the one still here
    assert await read_line(kept_reader) == b"later\r\n"
    kept_writer.close()


async def test_many_connections_one_loop_timer(serve, manual_wheel):
    Delayed.fired, Delayed.timers = [], []
    server = await serve(Delayed, idle_timeout=None)
    clock = manual_wheel(server)
    clients = [await open_client(server.ports[0]) for _ in range(50)]
    for reader, _ in clients:
        assert await read_line(reader) == b"hello\r\n"
    assert len(server.wheel) == 50 and clock.pending == 1
    clock.advance(Delayed.delay + WHEEL_TICK)
    for reader, writer in clients:
        assert await read_line(reader) == b"later\r\n"
        writer.close()
    assert len(Delayed.fired) == 50


async def test_idle_timeout_on_the_wheel_closes_after_one_to_one_and_a_quarter(
        serve, manual_wheel):
    timeout = 4 * WHEEL_MIN_DELAY  # a quarter of it is the wheel's
    server = await serve("upper", idle_timeout=timeout)
    clock = manual_wheel(server)
    reader, writer = await open_client(server.ports[0])
    writer.write(b"hi\n")
    assert await read_line(reader) == b"HI\r\n"
    conn = server_side(server, writer)
    clock.advance(timeout - 1)
    assert not conn.closed.is_set()
    clock.advance(timeout / 4 + 4 * WHEEL_TICK + 1)  # the latest it may be
    notice = f"error: idle for {timeout:g} seconds; closing\r\n".encode()
    assert await read_until_eof(reader) == notice
    writer.close()


async def test_a_line_keeps_a_client_past_an_idle_timeout_on_the_wheel(serve, manual_wheel):
    timeout = 4 * WHEEL_MIN_DELAY
    server = await serve("upper", idle_timeout=timeout)
    clock = manual_wheel(server)
    reader, writer = await open_client(server.ports[0])
    conn = server_side(server, writer) if server.connections else None
    for i in range(8):  # two timeouts, a line every half of one
        clock.advance(timeout / 2)
        writer.write(b"x%d\n" % i)
        assert await read_line(reader) == b"X%d\r\n" % i
    assert conn is not None and not conn.closed.is_set()
    writer.close()


async def test_shutdown_clears_the_wheel(serve, manual_wheel):
    Delayed.fired, Delayed.timers = [], []
    server = await serve(Delayed, idle_timeout=None)
    clock = manual_wheel(server)
    reader, writer = await open_client(server.ports[0])
    assert await read_line(reader) == b"hello\r\n"
    await server.shutdown()
    assert len(server.wheel) == 0 and clock.pending == 0
    writer.close()


# A door's keep-alive on the wheel, and a reload of its interval -----------------


class WheelClock(ManualTime):
    """A protocol's Clock whose timers are on a wheel (as the engine's long ones are)."""

    def __init__(self) -> None:
        super().__init__()
        self.wheel = TimerWheel(self.time, self.call_at)

    def wall(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        if delay >= WHEEL_MIN_DELAY:
            return self.wheel.call_later(delay, run, callback)
        return self.call_at(self.now + delay, callback)


def test_irc_ping_on_the_wheel_follows_a_reloaded_interval(tmp_path):
    net = Network(tmp_path, irc_ping_interval=30.0, irc_ping_timeout=20.0,
                  registration_timeout=20.0)
    net.clock = WheelClock()  # type: ignore[assignment]
    try:
        alice = net.register("alice")
        net.clock.advance(29)
        assert alice.take() == []
        net.clock.advance(1)
        ping = find(alice.take(), "PING")
        net.clock.advance(5)
        alice.send(f"PONG :{ping.params[0]}")
        # SIGHUP: a longer interval applies from the next check on.
        net.service.settings = dataclasses.replace(net.service.settings,
                                                   irc_ping_interval=90.0)
        net.clock.advance(55)
        assert "PING" not in commands(alice.take())
        net.clock.advance(36)  # 90 s of quiet (at 1125), plus the tick it may be late
        assert "PING" in commands(alice.take())
        net.clock.advance(20 + WHEEL_TICK)  # no answer within the timeout
        assert alice.closed
        assert "Ping timeout" in alice.take()[-1].params[0]
    finally:
        net.close()


def test_an_unregistered_irc_client_is_closed_by_the_wheel(tmp_path):
    net = Network(tmp_path, registration_timeout=20.0)
    net.clock = WheelClock()  # type: ignore[assignment]
    try:
        client = net.connect()
        client.send("NICK slow")
        net.clock.advance(19.5)
        assert not client.closed
        net.clock.advance(1)
        assert client.closed
        assert "Registration timed out" in client.take()[-1].params[0]
    finally:
        net.close()
