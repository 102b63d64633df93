"""The chat service: one hub, its history, its bus, and the doors that reach it.

:class:`ChatService` owns the shared state (hub, SQLite store, bus,
operator accounts) and implements :class:`~sockhub.doors.api.ChatApi`,
all a door may ask: it checks a command with the hub, stores what must be
stored, and publishes the event. Room messages are group-committed: those
said in one turn of the event loop are stored in one SQLite transaction and
published when it commits (:meth:`ChatService.commit`); any other event
commits the pending messages first, so the bus still sees every event in
the order it was accepted. It opens a listener per door: the line
door (``doors/line.py``), and when their ports are set the IRC door
(``doors/irc/``) and the web door (``doors/web/``). Nothing here knows a socket or a wire format.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import itertools
import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from sockhub import metrics
from sockhub.doors.api import ChatApi
from sockhub.doors.irc import IrcDoor, irc_refusal
from sockhub.doors.line import LineDoor
from sockhub.doors.web import WebDoor, web_refusal
from sockhub.engine.service import Listener
from sockhub.errors import ConfigError
from sockhub.hub import Hub, HubError, Member, Message, Room, User
from sockhub.hub.events import (
    BanChanged,
    HubEvent,
    Invited,
    Kicked,
    Meta,
    ModeChange,
    Private,
    Quit,
)
from sockhub.hub.names import fold
from sockhub.logs import RateLimitedLog
from sockhub.passwords import is_hash, verify_password
from sockhub.protocols.base import Protocol
from sockhub.services.chat_cluster import Cluster, RemoteMember
from sockhub.services.chat_settings import ChatSettings
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
#: Room messages one commit stores at most: a turn with more commits more often.
COMMIT_BATCH_MAX = 1024


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
        self.hub = Hub(protected_rooms=settings.protected_rooms,
                       quiet_above=settings.quiet_above)
        self.hub.bans.update(self.store.bans())
        metrics.chat.history_rows = self.store.count()
        self._fanout = metrics.chat.fanout
        #: A member's class → its door's message counts (None: it names no door).
        self._door_counts: dict[type, metrics.DoorCounts | None] = {}
        self.bus = LocalBus()
        self.bus.subscribe(self.hub.apply)
        #: The Redis bus (docs/scale-out.md): None runs this process alone.
        self.cluster: Cluster | None = None
        if settings.bus is not None:
            self.cluster = Cluster(self, settings)
            self.cluster.start(self.store.largest_id())
        #: Room messages checked but not yet stored: the next commit's batch.
        self._pending: list[Message] = []
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
        self.hub.state.quiet_above = settings.quiet_above
        return [name.replace("_", " ") for name in changed]

    def begin_shutdown(self) -> None:
        self.shutting_down = True

    def close(self) -> None:
        self.commit()
        self.bus.close()
        if self.cluster is not None:
            self.cluster.close()
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

    def is_quiet(self, room: Room) -> bool:
        return self.hub.is_quiet(room)

    def nick_available(self, nick: str) -> HubError | None:
        problem = self.hub.nick_available(nick)
        if problem is None and self.cluster is not None and self.cluster.taken_elsewhere(nick):
            return HubError("nick_in_use", f"nick {nick} is already in use", target=nick)
        return problem

    def note_users(self) -> int:
        self.peak_users = max(self.peak_users, len(self.hub.users))
        return self.peak_users

    # ChatApi: arriving, commands, history -------------------------------------

    def register(self, nick: str, member: Member, *, address: str, username: str = "",
                 realname: str = "", secure: bool = False) -> User:
        cluster = self.cluster
        if cluster is not None:  # the nick is checked here, then taken cluster-wide
            problem = self.hub.nick_available(nick)
            if problem is not None:
                raise problem
            cluster.claim(nick)
        user = self.hub.register(nick, member, address=address, username=username,
                                 realname=realname, secure=secure, now=time.time())
        if cluster is not None:
            cluster.announce(user)
        return user

    def guest_nick(self) -> str:
        while True:
            nick = f"guest-{next(self._guests) % 10000:04d}"
            if self.hub.find_user(nick) is None and not (
                    self.cluster is not None and self.cluster.taken_elsewhere(nick)):
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
        """Check a room message (raises HubError); store, then fan it out, at the commit.

        The first message of a loop turn asks the loop to call :meth:`commit`
        once the turn's callbacks have run (without a running loop it
        commits at once); the returned message has no id yet.
        """
        if self.cluster is not None:
            self.cluster.check()
        message = self.hub.say(user, room, text, time.time(), action=action, notice=notice,
                               meta=meta)
        pending = self._pending
        pending.append(message)
        self._count_in(user)
        if len(pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.commit)
            except RuntimeError:  # no loop (a synchronous test): no turn to share
                self.commit()
        elif len(pending) >= COMMIT_BATCH_MAX:
            self.commit()
        return message

    def commit(self) -> None:
        """Store the pending room messages in one transaction, then publish them in order.

        Nothing of a batch is published before its commit returns ("stored
        before anyone sees it"); if the store fails, the batch is logged and
        dropped, seen by no one.
        """
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self.cluster is not None:  # stored and delivered when read back from the stream
            publish_remote = self.cluster.bus.publish
            for message in pending:
                publish_remote(message)
            return
        start = time.perf_counter()
        try:
            stored = self.store.append_many(pending)
        except Exception:
            log.exception("chat: could not store %d messages; they were not delivered",
                          len(pending))
            return
        publish = self.bus.publish
        for message in stored:
            publish(message)
        self._fanout.observe(time.perf_counter() - start)
        counts = metrics.chat
        counts.history_rows += len(stored)
        counts.history_stored += len(stored)

    def _publish(self, event: HubEvent) -> None:
        """Publish an event after the room messages accepted before it."""
        if self._pending:
            self.commit()
        cluster = self.cluster
        if cluster is not None:
            if type(event) is not Quit:  # a quit cannot be refused: it is sent on reconnect
                cluster.check()
            self.bus.publish(event)
            cluster.bus.publish(event)
            return
        self.bus.publish(event)

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
        self._publish(self.hub.join(user, room, time.time(), password=password))

    def part(self, user: User, room: str, reason: str = "") -> None:
        self._publish(self.hub.part(user, room, reason, time.time()))

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
        self._publish(event)
        self._count_in(user)
        return event

    def signal(self, user: User, target: str, meta: Meta) -> None:
        self._publish(self.hub.signal(user, target, meta, time.time()))

    def rename(self, user: User, new: str) -> None:
        cluster = self.cluster
        if cluster is not None and fold(new) != user.key:
            cluster.check()
            problem = self.hub.nick_available(new)
            if problem is not None:
                raise problem
            cluster.claim(new)
            old = user.nick
            try:
                event = self.hub.rename(user, new, time.time())
            except HubError:
                cluster.release(new)
                raise
            if event is not None:
                self._publish(event)
                cluster.release(old)
            return
        event = self.hub.rename(user, new, time.time())
        if event is not None:
            self._publish(event)

    def set_topic(self, user: User, room: str, topic: str) -> None:
        self._publish(self.hub.set_topic(user, room, topic, time.time()))

    def kick(self, user: User, room: str, target: str, reason: str) -> None:
        self._publish(self.hub.kick(user, room, target, reason, time.time()))

    def ban(
        self, user: User, room: str, mask: str, *, add: bool = True, kick: bool = True
    ) -> BanChanged:
        """Add (or lift) a ban; with ``kick``, members it matches leave the room."""
        event = self.hub.ban(user, room, mask, time.time(), add=add)
        self.commit()  # the ban's own write follows the messages said before it
        if add:
            self.store.add_ban(event.room, event.mask, user.nick, event.ts)
        else:
            self.store.remove_ban(event.room, event.mask)
        self._publish(event)
        found = self.hub.find_room(event.room)
        if add and kick and found is not None:  # whoever the ban matches leaves the room now
            for victim in list(found.members.values()):
                if victim is not user and self.hub.is_banned(found.name, victim):
                    self._publish(Kicked(found.name, victim.nick, user.nick, "banned", event.ts))
        return event

    def set_modes(
        self, user: User, room: str, changes: list[ModeChange]
    ) -> list[HubError]:
        """Apply what is valid of a batch of room setting changes; return the rest's errors."""
        event, errors = self.hub.set_modes(user, room, changes, time.time())
        if event is not None:
            self._publish(event)
        return errors

    def set_away(self, user: User, message: str | None) -> None:
        self._publish(self.hub.set_away(user, message, time.time()))

    def invite(self, user: User, target: str, room: str) -> Invited:
        event = self.hub.invite(user, target, room, time.time())
        self._publish(event)
        return event

    def quit(self, user: User, reason: str, *, voluntary: bool = False) -> None:
        if self.hub.find_user(user.nick) is not user:
            return
        if self.shutting_down:  # everyone is leaving: no one to tell
            self.commit()
            self.hub.users.pop(user.key, None)
            if self.cluster is not None:  # the others are told: this node's users are gone
                self.cluster.bus.publish(Quit(user.nick, reason, time.time()))
            return
        self._publish(self.hub.quit(user, reason, time.time(), voluntary=voluntary))
        if self.cluster is not None and not isinstance(user.member, RemoteMember):
            self.cluster.release(user.nick)

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

    # History reads commit first: a client that says something, then asks for
    # history in the same read, finds its message there.

    def history(self, room: str, limit: int) -> list[Message]:
        self.commit()
        return self.store.recent(room, limit)

    def history_page(self, room: str, limit: int, *, after: Bound | None = None,
                     before: Bound | None = None, newest: bool = True) -> list[Message]:
        self.commit()
        return self.store.page(room, limit, after=after, before=before, newest=newest)

    def find_message(self, room: str, message_id: int) -> Message | None:
        self.commit()
        return self.store.find(room, message_id)


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
