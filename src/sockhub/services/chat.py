"""The chat service: one hub, its history, its bus, and the doors that reach it.

:class:`ChatService` owns the shared state (hub, SQLite store, bus,
operator accounts) and implements :class:`~sockhub.doors.api.ChatApi`,
all a door may ask: it checks a command with the hub, stores what must be
stored, and publishes the event. It opens a listener per door: the line
door (``doors/line.py``), and when their ports are set the IRC door
(``doors/irc/``) and the web door (``doors/web/``). Nothing here knows a socket or a wire format.
"""

from __future__ import annotations

import functools
import hmac
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sockhub import metrics
from sockhub.doors.api import ChatApi, LoginResult
from sockhub.doors.irc import IrcDoor, irc_refusal
from sockhub.doors.line import LineDoor
from sockhub.doors.web import WebDoor, web_refusal
from sockhub.engine.service import Listener
from sockhub.errors import ConfigError
from sockhub.hub import Hub, HubError, Member, Message, Room, User
from sockhub.hub.events import (
    AccountChanged,
    BanChanged,
    Invited,
    Kicked,
    Meta,
    ModeChange,
    Private,
)
from sockhub.hub.names import fold
from sockhub.logs import RateLimitedLog
from sockhub.passwords import is_hash, verify_password
from sockhub.protocols.base import Protocol
from sockhub.protocols.scram import ScramServer
from sockhub.services.accounts import Accounts
from sockhub.services.chat_settings import ChatSettings
from sockhub.services.login import AuthLimiter
from sockhub.store.accounts import AccountStore
from sockhub.store.bus import LocalBus
from sockhub.store.history import Bound, ChatStore

if TYPE_CHECKING:
    from sockhub.config import ServiceConfig
    from sockhub.limits import Limits

log = logging.getLogger("sockhub.chat")
#: Lines any client can cause at will, logged at a bounded rate.
_failed_opers = RateLimitedLog(log, level=logging.WARNING)

#: Settings a reload cannot change: where history lives, and the names and
#: ports clients already know.
RESTART_KEYS = ("data_dir", "irc_port", "server_name", "web_port")


@dataclass(frozen=True)
class ChatDoor:
    """One front door of the chat hub: how it is named, where it listens, what it runs.

    Attributes:
        name: the listener's name in logs.
        port: the port it listens on, from the service's settings; None: closed.
        make: one door (a sockhub Protocol and hub Member) for a new connection.
        primary: takes the service's ``--unix`` path and ``--banner``.
        refusal: what a client refused before admission is told, in its protocol.
    """

    name: str
    port: Callable[[ChatService], int | None]
    make: Callable[[ChatApi], Protocol]
    primary: bool = False
    refusal: Callable[[str], bytes] | None = None


class ChatService:
    """Shared state of one chat hub, used by all its doors."""

    def __init__(self, settings: ChatSettings, limits: Limits, *, port: int | None = None) -> None:
        self.settings = settings
        self.port = port
        self.limits = limits
        self.motd = _read_motd(settings.motd_file)
        self.started = time.time()
        self.peak_users = 0
        self.store = ChatStore(settings.data_dir / "chat.sqlite3")
        self.hub = Hub(protected_rooms=settings.protected_rooms)
        self.hub.bans.update(self.store.bans())
        self.accounts = Accounts(
            AccountStore(self.store.path), mode=settings.accounts,
            per_hour=settings.accounts_per_hour, limiter=AuthLimiter(**_limits(settings)),
            password_min=settings.account_password_min,
        )
        self._scram_secret = os.urandom(16)
        metrics.chat.history_rows = self.store.count()
        self._fanout = metrics.chat.fanout
        #: A member's class → its door's message counts (None: it names no door).
        self._door_counts: dict[type, metrics.DoorCounts | None] = {}
        self.bus = LocalBus()
        self.bus.subscribe(self.hub.apply)
        self.shutting_down = False
        self._guests = itertools.count(random.randrange(1000, 9000))
        log.info("chat history in %s", self.store.path)

    @classmethod
    def from_config(cls, config: ServiceConfig, limits: Limits) -> ChatService:
        return cls(config.settings_as(ChatSettings), limits, port=config.port)

    # ServiceRuntime ---------------------------------------------------------

    def listeners(self) -> list[Listener]:
        """One listener per row of :data:`DOORS`; a door whose port is None stays closed."""
        return [
            Listener(door.name, door.port(self), functools.partial(door.make, self),
                     primary=door.primary, refusal=door.refusal)
            for door in DOORS
        ]

    def reload(self, config: ServiceConfig, limits: Limits) -> list[str]:
        """SIGHUP: take new operators, passwords, MOTD, flood and history settings.

        Users stay connected and keep their state (an operator stays one
        until they leave); the settings apply to what happens next. The
        storage and the names clients already know need a restart.
        """
        settings = config.settings_as(ChatSettings)
        fixed = [k for k in RESTART_KEYS if getattr(settings, k) != getattr(self.settings, k)]
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} changed, which needs a restart")
        motd = _read_motd(settings.motd_file)
        changed = [f.name for f in fields(settings)
                   if getattr(settings, f.name) != getattr(self.settings, f.name)]
        if motd != self.motd and "motd_file" not in changed:
            changed.append("motd")
        self.settings, self.motd, self.limits = settings, motd, limits
        self.hub.protected = {fold(name) for name in settings.protected_rooms}
        self.accounts.configure(mode=settings.accounts, per_hour=settings.accounts_per_hour,
                                password_min=settings.account_password_min)
        self.accounts.limiter.configure(**_limits(settings))
        return [name.replace("_", " ") for name in changed]

    def begin_shutdown(self) -> None:
        self.shutting_down = True

    def close(self) -> None:
        self.bus.close()
        self.accounts.store.close()
        self.store.close()

    # ChatApi: who and where ------------------------------------------------

    @property
    def default_room(self) -> str:
        return self.hub.default_room

    def find_user(self, nick: str) -> User | None:
        return self.hub.find_user(nick)

    def find_room(self, name: str) -> Room | None:
        return self.hub.find_room(name)

    def rooms(self) -> Collection[Room]:
        return self.hub.rooms.values()

    def users(self) -> Collection[User]:
        return self.hub.users.values()

    def bans(self, room: str) -> list[str]:
        return list(self.hub.bans.get(fold(room), []))

    def may_moderate(self, user: User, room: Room) -> bool:
        return self.hub.may_moderate(user, room)

    def nick_available(self, nick: str) -> HubError | None:
        return self.hub.nick_available(nick)

    def note_users(self) -> int:
        self.peak_users = max(self.peak_users, len(self.hub.users))
        return self.peak_users

    # ChatApi: arriving, commands, history -------------------------------------

    def register(self, nick: str, member: Member, *, address: str, username: str = "",
                 realname: str = "", secure: bool = False) -> User:
        return self.hub.register(nick, member, address=address, username=username,
                                 realname=realname, secure=secure, now=time.time())

    def guest_nick(self) -> str:
        while True:
            nick = f"guest-{next(self._guests) % 10000:04d}"
            if self.hub.find_user(nick) is None:
                return nick

    def say(
        self,
        user: User,
        room: str,
        text: str,
        *,
        action: bool = False,
        notice: bool = False,
        meta: Meta = (),
    ) -> Message:
        """Store, then fan out, a room message. Raises HubError."""
        message = self.hub.say(user, room, text, time.time(), action=action, notice=notice,
                               meta=meta)
        start = time.perf_counter()
        message = self.store.append(message)
        self.bus.publish(message)
        self._fanout.observe(time.perf_counter() - start)
        counts = metrics.chat
        counts.history_rows += 1
        counts.history_stored += 1
        self._count_in(user)
        return message

    def _count_in(self, user: User) -> None:
        """One more message in through the door ``user`` came by."""
        kind = type(user.member)
        try:
            counts = self._door_counts[kind]
        except KeyError:
            counts = self._door_counts[kind] = _door_counts_of(kind)
        if counts is not None:
            counts.messages_in += 1

    def join(self, user: User, room: str, *, password: str | None = None) -> None:
        self.bus.publish(self.hub.join(user, room, time.time(), password=password))

    def part(self, user: User, room: str, reason: str = "") -> None:
        self.bus.publish(self.hub.part(user, room, reason, time.time()))

    def private(
        self,
        user: User,
        target: str,
        text: str,
        *,
        action: bool = False,
        notice: bool = False,
        meta: Meta = (),
    ) -> Private:
        event = self.hub.private(user, target, text, time.time(), action=action, notice=notice,
                                 meta=meta)
        self.bus.publish(event)
        self._count_in(user)
        return event

    def signal(self, user: User, target: str, meta: Meta) -> None:
        self.bus.publish(self.hub.signal(user, target, meta, time.time()))

    def rename(self, user: User, new: str) -> None:
        event = self.hub.rename(user, new, time.time())
        if event is not None:
            self.bus.publish(event)

    def set_topic(self, user: User, room: str, topic: str) -> None:
        self.bus.publish(self.hub.set_topic(user, room, topic, time.time()))

    def kick(self, user: User, room: str, target: str, reason: str) -> None:
        self.bus.publish(self.hub.kick(user, room, target, reason, time.time()))

    def ban(
        self, user: User, room: str, mask: str, *, add: bool = True, kick: bool = True
    ) -> BanChanged:
        """Add (or lift) a ban; with ``kick``, members it matches leave the room."""
        event = self.hub.ban(user, room, mask, time.time(), add=add)
        if add:
            self.store.add_ban(event.room, event.mask, user.nick, event.ts)
        else:
            self.store.remove_ban(event.room, event.mask)
        self.bus.publish(event)
        found = self.hub.find_room(event.room)
        if add and kick and found is not None:  # whoever the ban matches leaves the room now
            for victim in list(found.members.values()):
                if victim is not user and self.hub.is_banned(found.name, victim):
                    self.bus.publish(Kicked(found.name, victim.nick, user.nick, "banned", event.ts))
        return event

    def set_modes(
        self, user: User, room: str, changes: list[ModeChange]
    ) -> list[HubError]:
        """Apply what is valid of a batch of room setting changes; return the rest's errors."""
        event, errors = self.hub.set_modes(user, room, changes, time.time())
        if event is not None:
            self.bus.publish(event)
        return errors

    def set_away(self, user: User, message: str | None) -> None:
        self.bus.publish(self.hub.set_away(user, message, time.time()))

    def invite(self, user: User, target: str, room: str) -> Invited:
        event = self.hub.invite(user, target, room, time.time())
        self.bus.publish(event)
        return event

    def quit(self, user: User, reason: str, *, voluntary: bool = False) -> None:
        if self.hub.find_user(user.nick) is not user:
            return
        if self.shutting_down:  # everyone is leaving: no one to tell
            self.hub.users.pop(user.key, None)
            return
        self.bus.publish(self.hub.quit(user, reason, time.time(), voluntary=voluntary))

    def oper(self, user: User, name: str, password: str) -> bool:
        """Check operator credentials in constant time; mark the user on success."""
        operators = self.settings.operators or {}
        stored = operators.get(fold(name))
        # Unknown names still cost a full scrypt, so timing does not tell them apart.
        ok = verify_password(password, stored or _DUMMY_HASH) and stored is not None
        ok = hmac.compare_digest(b"1" if ok else b"0", b"1")
        if ok:
            user.is_oper = True
            log.info("%s is now an operator (%s)", user.nick, user.address)
        else:
            _failed_opers.log("{count} more failed /oper attempts",
                              "failed /oper for %r from %s", name, user.address)
        return ok

    def check_connection_password(self, given: str | None) -> bool:
        """The IRC door's PASS check, in constant time; True when none is set."""
        expected = self.settings.irc_password
        if expected is None:
            return True
        if given is None:
            return False
        if is_hash(expected):
            return verify_password(given, expected)
        return hmac.compare_digest(given.encode(), expected.encode())

    def history(self, room: str, limit: int) -> list[Message]:
        return self.store.recent(room, limit)

    def history_page(self, room: str, limit: int, *, after: Bound | None = None,
                     before: Bound | None = None, newest: bool = True) -> list[Message]:
        return self.store.page(room, limit, after=after, before=before, newest=newest)

    def find_message(self, room: str, message_id: int) -> Message | None:
        return self.store.find(room, message_id)


    # ChatApi: accounts (services/accounts.py) ----------------------------------

    def account_register(self, user: User | None, name: str, password: str, *,
                         address: str) -> str:
        by_oper = user is not None and user.is_oper
        return self.accounts.register(name, password, address=address, by_oper=by_oper,
                                      now=time.monotonic())

    def account_identify(self, name: str, password: str, *, address: str) -> LoginResult:
        return self.accounts.identify(name, password, address=address, now=time.monotonic())

    def account_admit(self, address: str) -> str | None:
        return self.accounts.admit(address, time.monotonic())

    def account_failed(self, name: str, address: str) -> float:
        return self.accounts.failed(name, address, time.monotonic())

    def account_release(self, address: str) -> None:
        self.accounts.release(address)

    def scram_server(self) -> ScramServer:
        return ScramServer(self.accounts.scram, secret=self._scram_secret)

    def account_owner(self, nick: str) -> str | None:
        return self.accounts.name_of(nick)

    def log_in(self, user: User, account: str) -> None:
        if user.account != account and self.hub.find_user(user.nick) is user:
            self.bus.publish(AccountChanged(user.nick, account, time.time()))
        user.account = account

    def log_out(self, user: User) -> None:
        if user.account is not None and self.hub.find_user(user.nick) is user:
            self.bus.publish(AccountChanged(user.nick, None, time.time()))
        user.account = None

    def account_set_password(self, user: User, password: str) -> None:
        if user.account is None:
            raise HubError("account_needed", "log in to an account first")
        self.accounts.set_password(user.account, password)

    def account_drop(self, user: User) -> None:
        account = user.account
        if account is None:
            raise HubError("account_needed", "log in to an account first")
        self.accounts.drop(account)
        for other in list(self.hub.users.values()):
            if other.account is not None and fold(other.account) == fold(account):
                self.log_out(other)

    def account_reset(self, user: User, name: str, password: str) -> None:
        if not user.is_oper:
            raise HubError("not_oper", "only operators reset passwords")
        self.accounts.set_password(name, password)
        log.info("accounts: %s reset the password of %s", user.nick, name)


def _limits(settings: ChatSettings) -> dict[str, Any]:
    """The identify limiter's arguments (services/login.py: AuthLimiter)."""
    return {"delay": settings.account_delay, "delay_max": settings.account_delay_max,
            "window": settings.account_window, "max_pending": settings.account_max_pending,
            "max_pending_per_ip": settings.account_max_pending_per_ip}


def _door_counts_of(kind: type) -> metrics.DoorCounts | None:
    """The message counts of the door a hub Member of class ``kind`` belongs to.

    A Member class names its door with ``metrics_door`` (``line``, ``irc``,
    ``web``); one that does not (a test's member) is counted nowhere.
    """
    name = getattr(kind, "metrics_door", None)
    return metrics.door(name) if isinstance(name, str) else None


def _read_motd(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"chat: cannot read the MOTD file {path}: {exc.strerror}") from exc
    return text.splitlines()


_DUMMY_HASH = "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


#: The chat hub's front doors. A new door is a module in ``sockhub/doors/`` and
#: one row here (docs/architecture.md).
DOORS: tuple[ChatDoor, ...] = (
    ChatDoor("chat", lambda service: service.port, LineDoor, primary=True),
    ChatDoor("irc", lambda service: service.settings.irc_port, IrcDoor, refusal=irc_refusal),
    ChatDoor("web", lambda service: service.settings.web_port, WebDoor, refusal=web_refusal),
)
