"""Flood control shared by the doors that drop what comes too fast (line, web).

:class:`FloodGuard` is the whole policy, so the doors only say it their
way: a token bucket lets ``rate`` messages a second through with ``burst``
saved up; in a flood (messages dropped since the last one that passed) the
first drop is told, the next ones are dropped silently, and more than
``burst`` drops in that flood disconnect. A message that passes ends the
flood: the next one starts counting again.
"""

from __future__ import annotations

from typing import Literal

#: What to do with one message: let it through, drop it and say so, drop it
#: silently, or drop it and disconnect.
Verdict = Literal["pass", "warn", "drop", "disconnect"]


class TokenBucket:
    """Flood control: ``rate`` tokens a second, at most ``burst`` saved up."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class FloodGuard:
    """A token bucket plus the current flood's drops: pass, warn, drop, or disconnect."""

    __slots__ = ("bucket", "dropped", "warned")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.bucket = TokenBucket(rate, burst, now)
        self.warned = False
        #: Messages dropped in the current flood (since the last that passed).
        self.dropped = 0

    def check(self, now: float) -> Verdict:
        """The verdict on one message arriving at ``now``."""
        if self.bucket.take(now):
            self.warned, self.dropped = False, 0
            return "pass"
        self.dropped += 1
        if not self.warned:
            self.warned = True
            return "warn"
        if self.dropped > self.bucket.burst:
            return "disconnect"
        return "drop"
