"""The exec service's login limits: what a wrong answer costs, and who may try.

Split from :mod:`sockhub.services.exec`; pure bookkeeping, with time passed
in, so it is tested without a clock or a socket.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections import Counter
from typing import Any

#: Failed-login records kept at most; past it the oldest are forgotten.
MAX_TRACKED_ADDRESSES = 10_000
#: Failures counted per address at most: the delay is capped long before.
MAX_COUNTED_FAILURES = 32


def address_key(peer: str) -> str:
    """What identifies one client host in a printable peer address (no port).

    An IPv6 host usually owns a whole /64 and can pick any address in it, so
    IPv6 addresses count per /64 network, as one IPv4 address counts alone.
    """
    if peer.startswith("["):
        host = peer[1 : peer.find("]")]
        try:
            address = ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            return host
        if address.is_loopback or address.ipv4_mapped is not None:
            return host
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    if peer.count(":") == 1:
        return peer.rpartition(":")[0]
    return peer  # "unix", "unix:/path": every local client shares one record


class AuthLimiter:
    """Makes guessing the token slow without ever refusing a right answer.

    Three rules, all per address (:func:`address_key`: clients behind one
    NAT, or all local clients, share a record) and all in bounded memory:

    * A login in progress holds a slot from connect until it is in, or for
      a wrong answer until that answer is told. At most
      ``max_pending_per_ip`` slots per address: past it, :meth:`admit`
      refuses a new connection from there, before any challenge. At most
      ``max_pending`` connections in all may be waiting to log in (held
      wrong answers, which may have hung up, do not count there): past it
      :meth:`admit` refuses too, but the service first closes the oldest
      login of the busiest address to make room
      (``ExecService.admit_login``), so no crowd of addresses can keep a
      newcomer out.
    * A wrong answer is told after a delay, ``delay`` doubled for each
      earlier failure from the address, at most ``delay_max``; an address
      ``window`` seconds without a failure starts over. The login's slot
      stays held until the answer is told, even if the client hangs up (hanging up early
      would otherwise learn the verdict without paying for it, since a
      right answer is told at once). So one address gets at most
      ``max_pending_per_ip`` guesses per ``delay_max`` seconds.
    * A right answer is never refused and never delayed, and it does not
      clear the failure count: an attacker sharing an address with the
      owner gets no fresh start from the owner's logins.

    Time is passed in (``now``), never read, so tests move it by hand.
    """

    def __init__(self, *, delay: float, delay_max: float, window: float,
                 max_pending: int, max_pending_per_ip: int) -> None:
        self.delay, self.delay_max, self.window = delay, delay_max, window
        self.max_pending, self.max_pending_per_ip = max_pending, max_pending_per_ip
        self._live: Counter[str] = Counter()  # connected, no verdict yet
        self._held: Counter[str] = Counter()  # wrong answers not told yet
        self._holds: list[tuple[float, str]] = []  # heap of (until, address)
        self._failures: dict[str, tuple[int, float]] = {}  # address -> (count, last)

    def configure(self, **settings: Any) -> None:
        """New limits (a reload); slots already held and failures counted stay."""
        for name, value in settings.items():
            setattr(self, name, value)

    def pending(self, address: str | None, now: float) -> int:
        """Slots held by ``address``; for None, connections waiting to log in."""
        self._expire(now)
        if address is None:
            return self._live.total()
        return self._live[address] + self._held[address]

    def admit(self, address: str, now: float) -> str | None:
        """Take a slot for a new connection, or say why it is refused."""
        if self.pending(address, now) >= self.max_pending_per_ip:
            return (f"too many logins in progress from {address} "
                    f"({self.max_pending_per_ip}); try again in a few seconds")
        if self.pending(None, now) >= self.max_pending:
            return (f"too many logins in progress ({self.max_pending}); "
                    "try again in a few seconds")
        self._live[address] += 1
        return None

    def release(self, address: str) -> None:
        """A login in progress ended without a wrong answer: free its slot."""
        if self._live[address] > 1:
            self._live[address] -= 1
        else:
            self._live.pop(address, None)

    def failed(self, address: str, now: float) -> float:
        """A wrong answer: returns the seconds to wait before telling it.

        The login's slot stays held until then.
        """
        self.release(address)
        count, last = self._failures.pop(address, (0, now))
        if now - last >= self.window:
            count = 0
        count = min(count + 1, MAX_COUNTED_FAILURES)
        if len(self._failures) >= MAX_TRACKED_ADDRESSES:
            self._prune(now)
        self._failures[address] = (count, now)  # (re)inserted last: oldest first
        delay = min(self.delay_max, self.delay * 2.0 ** (count - 1))
        heapq.heappush(self._holds, (now + delay, address))
        self._held[address] += 1
        return delay

    def _expire(self, now: float) -> None:
        holds = self._holds
        while holds and holds[0][0] <= now:
            _, address = heapq.heappop(holds)
            if self._held[address] > 1:
                self._held[address] -= 1
            else:
                self._held.pop(address, None)

    def _prune(self, now: float) -> None:
        for address in [a for a, (_, t) in self._failures.items() if now - t >= self.window]:
            del self._failures[address]
        while len(self._failures) >= MAX_TRACKED_ADDRESSES:
            del self._failures[next(iter(self._failures))]
