"""The token login shared by the exec and files services.

What a wrong answer costs and who may try (:class:`AuthLimiter`, pure
bookkeeping with time passed in), the token file (:func:`read_token`,
:func:`create_token`, :func:`load_token`), and the login of one connection
(:class:`DoorLogin`, held by each service's door, and :class:`LoginGate`,
the service's side). The wire format is each protocol's; the scheme is
:mod:`sockhub.protocols.challenge`. docs/exec-protocol.md (Login) describes
the behaviour; docs/files-protocol.md refers to it.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import os
import secrets
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sockhub.errors import ConfigError
from sockhub.logs import RateLimitedLog
from sockhub.paths import private_dir
from sockhub.protocols.base import Clock, ConnectionInfo, Timer

#: Shorter tokens are refused: with a captured challenge and answer an
#: eavesdropper can guess tokens offline, so a token must not be guessable.
MIN_TOKEN_BYTES = 16

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
      (:meth:`LoginGate.admit`), so no crowd of addresses can keep a
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


def limiter_settings(settings: Any) -> dict[str, Any]:
    """The limiter's arguments from a service's ``auth_*`` settings."""
    return {"delay": settings.auth_delay, "delay_max": settings.auth_delay_max,
            "window": settings.auth_window, "max_pending": settings.auth_max_pending,
            "max_pending_per_ip": settings.auth_max_pending_per_ip}


# --- Exposure -------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a name other than localhost, or "" (every address)


def check_exposure(service: str, what: str, config: Any, settings: Any) -> list[str]:
    """Non-loopback addresses served in clear text (allowed only with ``insecure``).

    Raises:
        ConfigError: such addresses without ``settings.insecure``.
    """
    if config.tls or config.unix:
        return []
    exposed = [h or "*" for h in config.hosts if not _is_loopback(h)]
    if exposed and not settings.insecure:
        raise ConfigError(
            f"{service}: listening on {', '.join(exposed)} without TLS would send {what} "
            "in clear text; add --tls-cert/--tls-key, or --insecure to accept that"
        )
    return exposed


# --- The token -----------------------------------------------------------------------


def read_token(path: str | Path) -> bytes:
    """Read a token file, refusing one that others may read.

    Raises:
        ConfigError: missing, unreadable, group/world-accessible, or too short.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(
            f"token file {path} is accessible to group or others (mode {mode & 0o777:03o}); "
            f"run: chmod 600 {path}"
        )
    if len(data) < MIN_TOKEN_BYTES:
        raise ConfigError(f"token in {path} is shorter than {MIN_TOKEN_BYTES} bytes")
    return data


def create_token(path: Path) -> tuple[bytes, bool]:
    """Generate a token into ``path`` (mode 0600) unless one is there already.

    The file appears whole or not at all (written aside, then hard-linked
    into place), so two servers starting at once agree on one token.

    Returns:
        the token and whether it was generated now.
    """
    if path.exists():
        return read_token(path), False
    try:
        private_dir(path.parent)
        token = secrets.token_urlsafe(32).encode()
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, token + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)
        except FileExistsError:
            return read_token(path), False
        finally:
            os.unlink(temp)
    except OSError as exc:
        raise ConfigError(f"cannot create token file {path}: {exc.strerror}") from exc
    return token, True


def load_token(service: str, token_file: Path | None, default: Path, log: logging.Logger, *,
               create: bool) -> bytes:
    """The token from ``token_file``, or from (or generated into) ``default``.

    ``create`` is for the start: generate a missing token, and log where it is.
    """
    if token_file is not None:
        token = read_token(token_file)
        if create:
            log.info("%s: token from %s", service, token_file)
        return token
    if not create:
        return read_token(default)
    token, generated = create_token(default)
    if generated:
        log.info("%s: generated a token in %s (mode 0600); clients need a copy "
                 "of that file (--token-file)", service, default)
    else:
        log.info("%s: token from %s", service, default)
    return token


# --- One connection's login ------------------------------------------------------------


class LoginDoor(Protocol):
    """What :class:`DoorLogin` needs of a door: its connection, and two verdicts."""

    info: ConnectionInfo
    clock: Clock

    def login_refused(self, code: str, message: str) -> None:
        """Fatal ERROR ``code`` (``rate_limited``, ``auth_timeout``, ``auth_failed``), close."""

    def login_accepted(self) -> None:
        """The answer was right: send READY."""

    def wake(self) -> None: ...


class LoginGate:
    """A service's side of logins: the token, the limiter, and who is waiting.

    Attributes:
        logins: doors waiting to log in, oldest first, with their address key.
    """

    def __init__(self, service: str, settings: Any, token: bytes, log: logging.Logger) -> None:
        self.service = service
        self.token = token
        self.auth_timeout: float = settings.auth_timeout
        self.limiter = AuthLimiter(**limiter_settings(settings))
        self.logins: dict[Any, str] = {}
        #: Login failures and refusals are what an attacker causes at will.
        self.noise = RateLimitedLog(log, level=logging.WARNING)
        self.log = log

    def configure(self, settings: Any, token: bytes) -> None:
        """New settings and token (a reload)."""
        self.token = token
        self.auth_timeout = settings.auth_timeout
        self.limiter.configure(**limiter_settings(settings))

    def admit(self, door: Any, address: str, now: float) -> str | None:
        """Give a new connection a login slot, or say why it gets none.

        When every slot is taken the oldest login of the address holding the
        most is closed to make room: a crowd of addresses cannot keep a
        newcomer out; only the newcomer's own address being at its cap can.
        """
        limiter = self.limiter
        if (self.logins and limiter.pending(None, now) >= limiter.max_pending
                and limiter.pending(address, now) < limiter.max_pending_per_ip):
            busiest = Counter(self.logins.values()).most_common(1)[0][0]
            next(d for d, a in self.logins.items() if a == busiest).login.evict()
        refusal = limiter.admit(address, now)
        if refusal is None:
            self.logins[door] = address
        return refusal


class DoorLogin:
    """One connection's login: its slot, its timeout, and the verdict on its answer.

    A right answer is let in at once; a wrong one is told after the
    limiter's delay, its slot held until then (see :class:`AuthLimiter`).
    """

    __slots__ = ("_handle", "_slot", "door", "gate", "verify")

    def __init__(self, gate: LoginGate, door: LoginDoor,
                 verify: Callable[[bytes, bytes], bool]) -> None:
        self.gate, self.door = gate, door
        #: ``verify(token, answer)``: the protocol's check (its label and nonce).
        self.verify = verify
        self._handle: Timer | None = None
        self._slot: str | None = None

    def begin(self, info: ConnectionInfo) -> str | None:
        """At connect: take a slot and arm the timeout; or the refusal to send instead."""
        gate = self.gate
        address = address_key(info.peer)
        refusal = gate.admit(self.door, address, self.door.clock.time())
        if refusal is not None:
            gate.noise.log(f"{gate.service}: refused {{count}} more connections before login",
                           f"{gate.service}: refused %s before login: %s", info.peer, refusal,
                           detail=refusal)
            return refusal
        self._slot = address
        self._handle = self.door.clock.call_later(gate.auth_timeout, self._expired)
        return None

    def answer(self, answer: bytes) -> None:
        """An AUTH arrived: accept it now, or refuse it after the delay."""
        self._cancel()
        gate, door = self.gate, self.door
        peer = door.info.peer
        if self.verify(gate.token, answer):
            self._release()
            gate.log.info("%s: %s logged in", gate.service, peer)
            door.login_accepted()
            return
        address, self._slot = self._slot or address_key(peer), None
        gate.logins.pop(door, None)
        delay = gate.limiter.failed(address, door.clock.time())
        gate.noise.log(f"{gate.service}: {{count}} more failed logins",
                       f"{gate.service}: failed login from %s; telling it in %gs", peer, delay,
                       detail=f"from {address}")
        self._handle = door.clock.call_later(delay, self._denied)

    def evict(self) -> None:
        """Every login slot is taken and this one is the oldest of its address: close it."""
        self._cancel()
        self._release()
        self.door.login_refused("auth_timeout",
                                "too many logins in progress; the oldest was closed")
        self.door.wake()

    def end(self) -> None:
        """The connection is gone: free what it holds (a told-later failure stays held)."""
        self._cancel()
        self._release()

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _release(self) -> None:
        self.gate.logins.pop(self.door, None)
        if self._slot is not None:
            self.gate.limiter.release(self._slot)
            self._slot = None

    def _expired(self) -> None:
        self._handle = None
        if self._slot is None:
            return
        gate = self.gate
        gate.noise.log(f"{gate.service}: {{count}} more connections did not authenticate in time",
                       f"{gate.service}: %s did not authenticate in time", self.door.info.peer)
        self._release()
        self.door.login_refused("auth_timeout",
                                f"no authentication within {gate.auth_timeout:g} seconds")

    def _denied(self) -> None:
        self._handle = None
        self.door.login_refused("auth_failed", "authentication failed: wrong token")
