"""RateLimitedLog: a fake clock and a fake timer, no sleeps."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from sockhub.logs import DETAILS_KEPT, RateLimitedLog, flush_rate_limited


class FakeTime:
    """A clock the test moves, and the timers armed against it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def clock(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> object:
        self.timers.append((self.now + delay, callback))
        return object()

    def advance(self, seconds: float) -> None:
        """Move the clock on, running the timers that fall due, in order."""
        self.now += seconds
        due = sorted((t for t in self.timers if t[0] <= self.now), key=lambda t: t[0])
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, callback in due:
            callback()


@pytest.fixture
def records() -> list[logging.LogRecord]:
    logger = logging.getLogger("test.ratelimited")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Keep()
    logger.addHandler(handler)
    yield captured
    logger.removeHandler(handler)


def make(fake: FakeTime, **kwargs: object) -> RateLimitedLog:
    return RateLimitedLog(logging.getLogger("test.ratelimited"), clock=fake.clock,
                          call_later=fake.call_later, **kwargs)  # type: ignore[arg-type]


def refuse(limiter: RateLimitedLog, n: int, reason: str = "server full") -> None:
    for i in range(n):
        limiter.log("chat: refused {count} more connections", "chat: refused 10.0.0.%d: %s",
                    i % 250, reason, detail=reason)


def messages(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records]


def test_the_first_events_are_logged_in_full_then_one_summary_when_the_window_ends(records):
    fake = FakeTime()
    limiter = make(fake, burst=3, interval=10.0)
    refuse(limiter, 1715)
    assert messages(records) == [f"chat: refused 10.0.0.{i}: server full" for i in range(3)]
    assert len(fake.timers) == 1  # one timer per window, not per event
    fake.advance(9.9)
    assert len(records) == 3
    fake.advance(0.1)
    assert messages(records)[3:] == [
        "chat: refused 1,712 more connections in the last 10 s: server full (1,712 times)"
    ]
    fake.advance(100)
    limiter.flush()
    assert len(records) == 4  # nothing pending: no empty summaries


def test_a_new_window_logs_a_new_burst(records):
    fake = FakeTime()
    limiter = make(fake, burst=2, interval=10.0)
    refuse(limiter, 5)
    fake.advance(10)
    refuse(limiter, 5)
    fake.advance(10)
    assert messages(records) == [
        "chat: refused 10.0.0.0: server full",
        "chat: refused 10.0.0.1: server full",
        "chat: refused 3 more connections in the last 10 s: server full (3 times)",
        "chat: refused 10.0.0.0: server full",
        "chat: refused 10.0.0.1: server full",
        "chat: refused 3 more connections in the last 10 s: server full (3 times)",
    ]


def test_without_a_timer_the_next_event_after_the_window_writes_the_summary(records):
    fake = FakeTime()
    limiter = RateLimitedLog(logging.getLogger("test.ratelimited"), burst=1, interval=5.0,
                             clock=fake.clock, call_later=lambda delay, callback: None)
    refuse(limiter, 4)
    fake.now += 7
    refuse(limiter, 1)
    assert messages(records) == [
        "chat: refused 10.0.0.0: server full",
        "chat: refused 3 more connections in the last 5 s: server full (3 times)",
        "chat: refused 10.0.0.0: server full",
    ]


def test_flush_writes_the_pending_summary_with_the_time_so_far(records):
    fake = FakeTime()
    limiter = make(fake, burst=1, interval=10.0)
    refuse(limiter, 3)
    fake.now += 2.5
    flush_rate_limited()  # what the engine calls at shutdown: every limiter
    assert messages(records)[-1] == (
        "chat: refused 2 more connections in the last 2.5 s: server full (2 times)"
    )
    fake.advance(10)  # the window's timer then finds nothing left to say
    assert len(records) == 2


def test_kinds_are_counted_apart(records):
    fake = FakeTime()
    limiter = make(fake, burst=1, interval=10.0)
    for _ in range(3):
        limiter.log("echo: {count} more idle timeouts", "echo: idle timeout")
        limiter.log("echo: dropped {count} more connections", "echo: dropped",
                    detail="not reading")
    fake.advance(10)
    assert sorted(messages(records)[2:]) == [
        "echo: 2 more idle timeouts in the last 10 s",
        "echo: dropped 2 more connections in the last 10 s: not reading (2 times)",
    ]


def test_reasons_are_bounded_and_the_most_frequent_are_named(records):
    fake = FakeTime()
    limiter = make(fake, burst=0, interval=10.0)
    refuse(limiter, 5, "server full")
    refuse(limiter, 3, "too many from 10.0.0.1")
    for i in range(100):  # an attacker with many addresses
        refuse(limiter, 1, f"too many from 192.0.2.{i}")
    assert len(limiter._windows["chat: refused {count} more connections"].details) == DETAILS_KEPT
    fake.advance(10)
    (summary,) = messages(records)
    assert summary == (
        "chat: refused 108 more connections in the last 10 s: server full (5 times), "
        "too many from 10.0.0.1 (3 times), too many from 192.0.2.0 (1 time), "
        "other reasons (99 times)"
    )


def test_nothing_is_counted_when_the_level_is_off(records):
    fake = FakeTime()
    limiter = make(fake, burst=1, interval=10.0, level=logging.DEBUG)
    logging.getLogger("test.ratelimited").setLevel(logging.INFO)
    refuse(limiter, 10)
    fake.advance(10)
    limiter.flush()
    assert records == []
    assert fake.timers == []
