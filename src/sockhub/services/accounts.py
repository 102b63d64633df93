"""Accounts: who may register, what a wrong password costs, and the checks themselves.

:class:`Accounts` is the chat service's account book (docs/accounts.md). It
holds the policy; the rows live in ``store/accounts.py``. Every door asks
through the chat service (``ChatApi.account_*``), so a person registered
at the line door identifies the same way from IRC or the browser.

Abuse limits, all per address (``services/login.py: address_key``), never
per account, so no one can lock an owner out of their own account:

* registrations: at most ``accounts_per_hour`` from one address in any
  hour (operators are not counted);
* identify attempts (a typed password, SASL PLAIN or SCRAM): the exec
  service's :class:`~sockhub.services.login.AuthLimiter`. A right password
  is never refused nor delayed; a wrong one is told only after a delay
  that doubles with each failure from that address, and holds one of the
  address's few slots until it is told. Guessing is then slow from any one
  address, while the owner, from anywhere else, logs in at once.

Passwords are never logged; names and addresses are, at a bounded rate.
Every check costs one scrypt (or one PBKDF2 for SCRAM) whether the account
exists or not, and compares in constant time. Every scrypt the doors ask
for (identify, register, a password changed or reset, and the chat
service's /oper) runs on one small pool of threads (:meth:`Accounts.offload`),
never on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from sockhub.doors.api import LoginResult
from sockhub.hub import HubError
from sockhub.hub.names import fold, nick_problem
from sockhub.logs import RateLimitedLog
from sockhub.passwords import hash_password, verify_password
from sockhub.protocols.scram import ScramCredentials, derive
from sockhub.services.login import MAX_TRACKED_ADDRESSES, AuthLimiter, address_key
from sockhub.store.accounts import AccountRecord, AccountStore
from sockhub.store.bus_accounts import RedisAccountStore

T = TypeVar("T")

log = logging.getLogger("sockhub.accounts")
_failures = RateLimitedLog(log, level=logging.WARNING)

#: ``--accounts`` values: who may register an account.
MODES = ("off", "open", "operators-only")

#: Shorter passwords are refused by default (``account_password_min``): an
#: online guesser is slowed, not stopped.
MIN_PASSWORD = 8
#: Longer ones too: scrypt's cost does not grow with length, but a line does.
MAX_PASSWORD = 1000

#: Threads that run every scrypt off the event loop (identify, register,
#: password changes, /oper: :meth:`Accounts.offload`): each takes about 0.1 s
#: of CPU. At most ``account_max_pending`` identify checks wait for them (each
#: holds a limiter slot), registrations are capped per address and hour, and
#: a connection waiting for one reads nothing more, so the queue is bounded too.
CHECK_THREADS = 2

#: An scrypt hash of nothing anyone types, checked when no account matches,
#: so an unknown name costs the same time as a known one.
_DUMMY_HASH = "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def password_problem(password: str, minimum: int = MIN_PASSWORD) -> str | None:
    if len(password) < minimum:
        return f"a password needs at least {minimum} characters"
    if len(password) > MAX_PASSWORD:
        return f"a password may have at most {MAX_PASSWORD} characters"
    if any(ord(c) < 32 or ord(c) == 127 or c == " " for c in password):
        return "a password may not hold spaces or control characters"
    return None


class Accounts:
    """The chat service's accounts: registration policy, identify checks, limits."""

    def __init__(self, store: AccountStore | RedisAccountStore, *, mode: str, per_hour: int,
                 limiter: AuthLimiter, password_min: int = MIN_PASSWORD) -> None:
        self.store = store
        self.mode = mode
        self.per_hour = per_hour
        self.password_min = password_min
        self.limiter = limiter
        self._registrations: dict[str, collections.deque[float]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Stop the check threads (checks under way are left to finish, unheard)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def configure(self, *, mode: str, per_hour: int, password_min: int) -> None:
        self.mode, self.per_hour, self.password_min = mode, per_hour, password_min

    # Registering ---------------------------------------------------------------

    def register(self, name: str, password: str, *, address: str, by_oper: bool,
                 now: float) -> str:
        """Create an account; returns its name. Raises HubError saying why not.

        The scrypt runs here, on the caller's thread; the doors use
        :meth:`register_later`, which keeps the loop free."""
        key = self._may_register(name, password, address=address, by_oper=by_oper, now=now)
        if self.store.get(name) is not None:
            raise HubError("account_exists", f"account {name} already exists", target=name)
        if not self.store.add(name, hash_password(password), derive(password), now):
            raise HubError("account_exists", f"account {name} already exists", target=name)
        if not by_oper:
            self._recent(key, now).append(now)
        log.info("accounts: %s registered from %s", name, key)
        return name

    def register_later(self, name: str, password: str, *, address: str, by_oper: bool,
                       now: Callable[[], float],
                       then: Callable[[str | HubError], None]) -> None:
        """:meth:`register` with the hashing on a check thread: ``then`` gets the
        account's name, or the HubError saying why not, on the event loop.

        The address's registration in this hour is counted when asked (and
        given back if it fails), so registrations under way count too."""
        asked = now()
        try:
            key = self._may_register(name, password, address=address, by_oper=by_oper,
                                     now=asked)
        except HubError as exc:
            then(exc)
            return
        if self.store.get(name) is not None:
            then(HubError("account_exists", f"account {name} already exists", target=name))
            return
        if not by_oper:
            self._recent(key, asked).append(asked)

        def hashed(keys: tuple[str, ScramCredentials] | None) -> None:
            try:
                added = keys is not None and self.store.add(name, keys[0], keys[1], now())
            except HubError as exc:  # the cluster's accounts (Redis) unreachable
                keys, added = None, False
                log.warning("accounts: %s not registered: %s", name, exc)
            if not added:
                if not by_oper:
                    with contextlib.suppress(ValueError):
                        self._recent(key, now()).remove(asked)
                then(HubError("account_exists", f"account {name} already exists", target=name)
                     if keys is not None else _unavailable())
                return
            log.info("accounts: %s registered from %s", name, key)
            then(name)

        self.offload(_keys, password, then=hashed)

    def _may_register(self, name: str, password: str, *, address: str, by_oper: bool,
                      now: float) -> str:
        """The policy's checks before a registration; returns the address's key."""
        if self.mode == "off" and not by_oper:
            raise HubError("account_disabled", "account registration is turned off here")
        if self.mode == "operators-only" and not by_oper:
            raise HubError("account_disabled", "only operators register accounts here")
        problem = nick_problem(name)
        if problem:
            raise HubError("account_invalid", f"invalid account name {name!r}: {problem}",
                           target=name)
        problem = password_problem(password, self.password_min)
        if problem:
            raise HubError("account_weak", problem)
        if fold(password) == fold(name):
            raise HubError("account_weak", "the password may not be the account's name")
        key = address_key(address)
        if not by_oper:
            recent = self._recent(key, now)
            if len(recent) >= self.per_hour:
                _failures.log("accounts: {count} more registrations refused",
                              "accounts: registration refused for %s: %d this hour",
                              key, len(recent))
                raise HubError("account_limit", "too many accounts registered from your "
                               "address in the last hour; try again later")
        return key

    def _recent(self, key: str, now: float) -> collections.deque[float]:
        recent = self._registrations.get(key)
        if recent is None:
            if len(self._registrations) >= MAX_TRACKED_ADDRESSES:
                self._forget(now)
            recent = self._registrations[key] = collections.deque()
        while recent and now - recent[0] >= 3600:
            recent.popleft()
        return recent

    def _forget(self, now: float) -> None:
        for key in [k for k, d in self._registrations.items() if not d or now - d[-1] >= 3600]:
            del self._registrations[key]
        while len(self._registrations) >= MAX_TRACKED_ADDRESSES:
            del self._registrations[next(iter(self._registrations))]

    # Identifying ---------------------------------------------------------------

    def admit(self, address: str, now: float) -> str | None:
        """Take a slot for an attempt from ``address``, or say why not (too many)."""
        return self.limiter.admit(address_key(address), now)

    def identify(self, name: str, password: str, *, address: str, now: float) -> LoginResult:
        """Check a password here and now; a wrong one comes back with the delay before
        it is told. The doors use :meth:`identify_later`, which keeps the loop free."""
        refusal = self.admit(address, now)
        if refusal is not None:
            return LoginResult(None, refusal=refusal)
        record = self._record(name)
        ok = verify_password(password, record.password if record else _DUMMY_HASH)
        return self._verdict(name, record, ok, address, now)

    def identify_later(self, name: str, password: str, *, address: str,
                       now: Callable[[], float], then: Callable[[LoginResult], None]) -> None:
        """:meth:`identify`, with the scrypt on a check thread; ``then`` gets the verdict
        on the event loop. Without a running loop (a synchronous test) it runs at once.

        The attempt holds its address's limiter slot while it is checked, so
        no address fills the threads' queue past its share.
        """
        refusal = self.admit(address, now())
        if refusal is not None:
            then(LoginResult(None, refusal=refusal))
            return
        record = self._record(name)
        stored = record.password if record else _DUMMY_HASH

        def checked(ok: bool | None) -> None:
            try:
                verdict = self._verdict(name, record, bool(ok), address, now())
            except HubError as exc:  # the cluster's accounts (Redis) unreachable: said
                verdict = LoginResult(None, refusal=str(exc))
            then(verdict)

        self.offload(verify_password, password, stored, then=checked)

    def offload(self, work: Callable[..., T], *args: object,
                then: Callable[[T | None], None]) -> None:
        """Run ``work(*args)`` (a scrypt) on the check threads; ``then`` gets its
        result on the event loop, or None if it failed or the pool was shut.

        The one pool of every password hash and check (``CHECK_THREADS``).
        Without a running loop (a synchronous test) it runs at once."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                result: T | None = work(*args)
            except Exception:  # told as None, as on the threads
                log.exception("accounts: a password computation failed")
                result = None
            then(result)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="sockhub-scrypt")
        future = loop.run_in_executor(self._pool, work, *args)

        def done(future: Future[T] | asyncio.Future[T]) -> None:
            failed = future.cancelled() or future.exception() is not None
            if not future.cancelled() and future.exception() is not None:
                log.error("accounts: a password computation failed: %r", future.exception())
            then(None if failed else future.result())

        future.add_done_callback(done)

    def _record(self, name: str) -> AccountRecord | None:
        return self.store.get(name) if not nick_problem(name) else None

    def _verdict(self, name: str, record: AccountRecord | None, ok: bool, address: str,
                 now: float) -> LoginResult:
        """The checked password's answer; the account must still be the one checked
        (not dropped, nor registered again by someone else, meanwhile)."""
        ok = hmac.compare_digest(b"1" if ok and record else b"0", b"1")
        if ok and record is not None:
            self.limiter.release(address_key(address))
            if not self.current(record.name, record.generation):
                return LoginResult(None, refusal=f"account {record.name} changed meanwhile; "
                                   "try again")
            return LoginResult(record.name, generation=record.generation)
        return LoginResult(None, delay=self.failed(name, address, now))

    def current(self, name: str, generation: str) -> bool:
        """Is account ``name`` still the one logged in to as ``generation``?"""
        record = self._record(name)
        return record is not None and hmac.compare_digest(record.generation, generation)

    def failed(self, name: str, address: str, now: float) -> float:
        """A wrong password (of any mechanism) from a slot taken by :meth:`admit`."""
        key = address_key(address)
        _failures.log("accounts: {count} more failed identify attempts",
                      "accounts: failed identify for %r from %s", name, key)
        return self.limiter.failed(key, now)

    def release(self, address: str) -> None:
        """An attempt after :meth:`admit` ended without a wrong answer: free its slot."""
        self.limiter.release(address_key(address))

    def scram(self, name: str) -> ScramCredentials | None:
        record = self.store.get(name) if not nick_problem(name) else None
        return record.scram if record is not None else None

    def name_of(self, name: str) -> str | None:
        """The registered spelling of account ``name``, or None if there is none."""
        if nick_problem(name):
            return None
        record = self.store.get(name)
        return record.name if record is not None else None

    # Changing ------------------------------------------------------------------

    def set_password(self, name: str, password: str) -> None:
        problem = password_problem(password, self.password_min)
        if problem:
            raise HubError("account_weak", problem)
        if not self.store.set_password(name, hash_password(password), derive(password)):
            raise HubError("account_missing", f"no account {name}", target=name)
        log.info("accounts: password of %s changed", name)

    def set_password_later(self, name: str, password: str,
                           then: Callable[[HubError | None], None]) -> None:
        """:meth:`set_password` with the hashing on a check thread; ``then`` gets
        None when done, or the HubError saying why not, on the event loop. The
        account must still be the one asked about (not dropped and registered
        again meanwhile)."""
        problem = password_problem(password, self.password_min)
        record = self._record(name)
        if problem or record is None:
            then(HubError("account_weak", problem) if problem
                 else HubError("account_missing", f"no account {name}", target=name))
            return

        def hashed(keys: tuple[str, ScramCredentials] | None) -> None:
            try:
                changed = keys is not None and self.current(record.name, record.generation) \
                    and self.store.set_password(record.name, keys[0], keys[1])
            except HubError as exc:  # the cluster's accounts (Redis) unreachable
                then(exc)
                return
            if keys is None:
                then(_unavailable())
            elif not changed:
                then(HubError("account_missing", f"no account {name}", target=name))
            else:
                log.info("accounts: password of %s changed", record.name)
                then(None)

        self.offload(_keys, password, then=hashed)

    def drop(self, name: str) -> None:
        if not self.store.remove(name):
            raise HubError("account_missing", f"no account {name}", target=name)
        log.info("accounts: %s dropped", name)


def _keys(password: str) -> tuple[str, ScramCredentials]:
    """What an account stores for ``password``: its scrypt hash and SCRAM keys."""
    return hash_password(password), derive(password)


def _unavailable() -> HubError:
    return HubError("account_unavailable", "the password could not be processed; try again")
