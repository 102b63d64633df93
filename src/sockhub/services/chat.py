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
(``doors/irc/``), the web door (``doors/web/``) and the hotline (``doors/hotline.py``).
Nothing here knows a socket or a wire format.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import hmac
import itertools
import logging
import os
import random
import secrets
import sqlite3
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sockhub import metrics
from sockhub.doors.api import Disconnectable, LoginResult, MarkerWatcher
from sockhub.doors.hotline import HotlineDesk, HotlineDoor
from sockhub.doors.irc import IrcDoor, irc_refusal
from sockhub.doors.line import LineDoor
from sockhub.doors.web import WebDoor, web_refusal
from sockhub.doors.web.session import SESSION_SECONDS
from sockhub.engine.clock import LoopClock
from sockhub.engine.service import Listener
from sockhub.errors import ConfigError
from sockhub.hub import Hub, HubError, Member, Message, Room, User
from sockhub.hub.events import (
    ROOM_FLAGS,
    AccountChanged,
    BanChanged,
    HubEvent,
    Invited,
    Kicked,
    Meta,
    ModeChange,
    ModeChanged,
    Parted,
    Private,
    Quit,
    TopicChanged,
)
from sockhub.hub.model import Departed, Registration
from sockhub.hub.names import fold
from sockhub.hub.sessions import members_of, origin_of
from sockhub.hub.watch import Watchlist
from sockhub.logs import RateLimitedLog
from sockhub.passwords import is_hash, verify_password
from sockhub.protocols.base import Protocol
from sockhub.protocols.scram import ScramCredentials, ScramServer
from sockhub.services import ivr
from sockhub.services.accounts import Accounts
from sockhub.services.chat_cluster import Cluster, RemoteMember, cluster_accounts
from sockhub.services.chat_settings import ChatSettings
from sockhub.services.login import AuthLimiter
from sockhub.services.rooms import OwnedRooms, state_after
from sockhub.store.accounts import AccountStore
from sockhub.store.bus import LocalBus
from sockhub.store.bus_markers import RedisMarkerStore
from sockhub.store.history import Bound, ChatStore

if TYPE_CHECKING:
    from sockhub.config import ServiceConfig
    from sockhub.limits import Limits

log = logging.getLogger("sockhub.chat")
#: Lines any client can cause at will, logged at a bounded rate.
_failed_opers = RateLimitedLog(log, level=logging.WARNING)
_seen_failures = RateLimitedLog(log, level=logging.WARNING)

#: How long where a client left a room is remembered (seconds): 30 days.
SEEN_KEPT = 30 * 86400

#: Settings a reload cannot change: where history lives, and the names and
#: ports clients already know.
RESTART_KEYS = ("data_dir", "irc_port", "irc_tls_port", "server_name", "tls_port", "web_port",
                "web_tls_port", "ivr_port", "line_port", "ivr_room")
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
        tls_port: the port of its TLS twin, from the settings; None: the
            default below when a certificate is given and the door is open.
        tls_default: the TLS twin's usual port (IRC's 6697); None: no TLS
            twin unless ``tls_port`` asks for one.
    """

    name: str
    port: Callable[[ChatService], int | None]
    make: Callable[[ChatService], Protocol]
    primary: bool = False
    refusal: Callable[[str], bytes] | None = None
    tls_port: Callable[[ChatService], int | None] = lambda service: None
    tls_default: int | None = None


class ChatService:
    """Shared state of one chat hub, used by all its doors."""

    def __init__(self, settings: ChatSettings, limits: Limits, *, port: int | None = None,
                 tls: bool = False, ivr_port: int | None = None, primary: str | None = None
                 ) -> None:
        self.settings = settings
        self.port = port
        self.tls = tls
        #: The hotline door's port (None: closed); the door that takes --unix and
        #: --banner, if not the one whose row says ``primary``.
        self.ivr_port = ivr_port if ivr_port is not None else settings.ivr_port
        self.primary = primary
        #: Each door's TLS port (its name → port), resolved once: ports need a restart.
        self.tls_ports = {door.name: tls_port for door in DOORS
                          if (tls_port := self._tls_port(door)) is not None}
        _check_sts(settings, self.tls_ports.get("irc"))
        self.limits = limits
        self.motd = _read_motd(settings.motd_file)
        self.started = time.time()
        self.peak_users = 0
        self.store = ChatStore(settings.data_dir / "chat.sqlite3")
        self.hub = Hub(protected_rooms=settings.protected_rooms,
                       quiet_above=settings.quiet_above)
        self.hub.bans.update(self.store.bans())
        self.hub.saved.update(self.store.rooms())
        self.store.forget_seen_before(self.started - SEEN_KEPT)
        self.store.forget_sessions_before(self.started)
        self.accounts = Accounts(
            AccountStore(self.store.path) if settings.bus is None else cluster_accounts(settings),
            mode=settings.accounts,
            per_hour=settings.accounts_per_hour, limiter=AuthLimiter(**_limits(settings)),
            password_min=settings.account_password_min,
        )
        self._scram_secret = os.urandom(16)
        #: Registered rooms (services/rooms.py), loaded into the hub's state.
        self.owned = OwnedRooms(self.store, self.hub.state, self.accounts, self._publish,
                                time.time)
        metrics.chat.history_rows = self.store.count()
        self._fanout = metrics.chat.fanout
        #: A member's class → its door's message counts (None: it names no door).
        self._door_counts: dict[type, metrics.DoorCounts | None] = {}
        self.bus = LocalBus()
        # before the hub forgets who was where
        self.bus.subscribe(self._note_departure, messages=False)
        # Hub.apply, one call less per message; a commit's messages as runs
        self.bus.subscribe(self.hub.state.apply, batch=self.hub.state.apply_messages)
        #: IRCv3 MONITOR's watchers (hub/watch.py): told after the hub, and of arrivals.
        self.watchlist = Watchlist()
        self.bus.subscribe(self.watchlist.apply, messages=False)
        #: The Redis bus (docs/scale-out.md): None runs this process alone.
        self.cluster: Cluster | None = None
        if settings.bus is not None:
            self.cluster = Cluster(self, settings)
            self.cluster.start(self.store.largest_id())
        #: Room messages checked but not yet stored: the next commit's batch.
        self._pending: list[Message] = []
        #: When the hub accepted each pending message (perf_counter), for the
        #: fan-out histogram: accepted → stored → every delivery queued.
        self._accepted: list[float] = []
        self.shutting_down = False
        self._guests = itertools.count(random.randrange(1000, 9000))
        self.hotline: HotlineDesk | None = None
        if self.ivr_port is not None:
            self.hotline = HotlineDesk(self, LoopClock(), menu=ivr.load_menu(settings.menu),
                                       settings=ivr.caller_settings(settings),
                                       room=settings.ivr_room)
        # IRCv3 msgid of what is not stored (private messages, TAGMSG): a
        # random prefix per start, so no id repeats across restarts.
        self._msgid_prefix = secrets.token_hex(4)
        self._msgids = itertools.count(1)
        log.info("chat history in %s", self.store.path)

    @classmethod
    def from_config(cls, config: ServiceConfig, limits: Limits) -> ChatService:
        settings = config.settings_as(ChatSettings)
        if settings.line_port is not None:
            raise ConfigError("--line-port is for 'sockhub serve ivr'; the chat line door "
                              "listens on --port")
        return cls(settings, limits, port=config.port, tls=config.tls)

    @classmethod
    def hotline_from_config(cls, config: ServiceConfig, limits: Limits) -> ChatService:
        """``sockhub serve ivr``: the hotline on --port, operators' line door on --line-port."""
        settings = config.settings_as(ChatSettings)
        line = settings.line_port
        if line is None:
            line = 0 if config.port == 0 else ivr.LINE_PORT
        return cls(settings, limits, port=line, tls=config.tls, ivr_port=config.port,
                   primary="ivr")

    def _tls_port(self, door: ChatDoor) -> int | None:
        """Where ``door``'s TLS twin listens, or None: closed.

        Raises:
            ConfigError: a TLS port asked for without a certificate.
        """
        port = door.tls_port(self)
        if port is not None and not self.tls:
            flag = "--tls-port" if door.primary else f"--{door.name}-tls-port"
            raise ConfigError(f"chat: {flag} needs --tls-cert and --tls-key")
        plain = door.port(self)
        if port is None and self.tls and plain is not None and door.tls_default is not None:
            port = door.tls_default if plain != 0 else 0  # free plain ports, free TLS ones
        return port

    @property
    def irc_sts(self) -> tuple[int, int] | None:
        """IRCv3 STS, when configured: (the IRC door's TLS port, the policy's duration)."""
        duration, port = self.settings.irc_sts_duration, self.tls_ports.get("irc")
        return None if duration is None or port is None else (port, duration)

    # ServiceRuntime ---------------------------------------------------------

    def listeners(self) -> list[Listener]:
        """Two listeners per row of :data:`DOORS`, plain and TLS; a port of None stays closed."""
        listeners = []
        for door in DOORS:
            make = functools.partial(door.make, self)
            primary = door.primary if self.primary is None else door.name == self.primary
            listeners.append(Listener(door.name, door.port(self), make, primary=primary,
                                      refusal=door.refusal, tls=False))
            if door.name in self.tls_ports:
                listeners.append(Listener(door.name, self.tls_ports[door.name], make,
                                          primary=primary, refusal=door.refusal, tls=True))
        return listeners

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
        _check_sts(settings, self.tls_ports.get("irc"))
        motd = _read_motd(settings.motd_file)
        menu = ivr.load_menu(settings.menu) if self.hotline is not None else None
        changed = [f.name for f in fields(settings)
                   if getattr(settings, f.name) != getattr(self.settings, f.name)]
        if motd != self.motd and "motd_file" not in changed:
            changed.append("motd")
        self.settings, self.motd, self.limits = settings, motd, limits
        if self.hotline is not None and menu is not None:  # new callers get the new menu
            if menu != self.hotline.menu and "menu" not in changed:
                changed.append("menu")
            self.hotline.menu = menu
            self.hotline.caller_settings = ivr.caller_settings(settings)
        self.hub.protected = {fold(name) for name in settings.protected_rooms}
        self.hub.state.quiet_above = settings.quiet_above
        self.accounts.configure(mode=settings.accounts, per_hour=settings.accounts_per_hour,
                                password_min=settings.account_password_min)
        self.accounts.limiter.configure(**_limits(settings))
        return [name.replace("_", " ") for name in changed]

    def begin_shutdown(self) -> None:
        self.shutting_down = True

    def close(self) -> None:
        self.commit()
        self.bus.close()
        self.accounts.close()
        self.accounts.store.close()
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

    def set_invisible(self, user: User, on: bool) -> None:
        self.hub.set_invisible(user, on)

    def user_counts(self) -> tuple[int, int, int]:
        return self.hub.user_counts()

    def note_users(self) -> int:
        self.peak_users = max(self.peak_users, len(self.hub.users))
        return self.peak_users

    def whowas(self, nick: str, count: int = 0) -> list[Departed]:
        return self.hub.whowas(nick, count)

    def _msgid(self) -> str:
        return f"{self._msgid_prefix}-{next(self._msgids)}"

    # ChatApi: arriving, commands, history -------------------------------------

    def register(self, nick: str, member: Member, *, address: str, username: str = "",
                 realname: str = "", secure: bool = False,
                 account: str | None = None) -> User:
        holder = self.hub.find_user(nick) if account is not None else None
        if holder is not None and account is not None and self._shares(holder, account):
            self.hub.attach(holder, member)  # one more connection of the same person
            return holder
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
        self.watchlist.arrived(user.nick)
        return user

    def _shares(self, holder: User, account: str) -> bool:
        """May a connection logged in to ``account`` join ``holder`` (multiclient)?"""
        return (self.settings.multiclient == "on" and holder.account is not None
                and fold(holder.account) == fold(account)
                and not isinstance(holder.member, RemoteMember))

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
        via: Member | None = None,
    ) -> Message:
        """Check a room message (raises HubError); store, then fan it out, at the commit.

        The first message of a loop turn asks the loop to call :meth:`commit`
        once the turn's callbacks have run (without a running loop it
        commits at once); the returned message has no id yet.
        """
        if self.cluster is not None:
            self.cluster.check()
        message = self.hub.say(user, room, text, time.time(), action=action, notice=notice,
                               meta=meta, origin=0 if via is None else id(via))
        pending = self._pending
        pending.append(message)
        self._accepted.append(time.perf_counter())
        kind = type(via or user.member)  # _count_in, inlined (as origin_of above)
        counts = self._door_counts.get(kind, _UNCOUNTED)
        if counts is _UNCOUNTED:
            counts = self._door_counts[kind] = _door_counts_of(kind)
        if counts is not None:
            counts.messages_in += 1
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
        accepted, self._pending, self._accepted = self._accepted, [], []
        if self.cluster is not None:  # stored and delivered when read back from the stream
            publish_remote = self.cluster.bus.publish
            for message in pending:
                publish_remote(message)
            return
        try:
            stored = self.store.append_many(pending)
        except Exception:
            log.exception("chat: could not store %d messages; they were not delivered",
                          len(pending))
            return
        self.bus.publish_all(stored)
        # Every delivery of the batch is queued: one clock read for the batch
        # (the accept times are ascending: perf_counter is monotonic).
        self._fanout.observe_since(time.perf_counter(), accepted)
        metrics.chat.stored_batch(len(stored))

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

    def _count_in(self, member: Member) -> None:
        """One more message in through the door of ``member`` (a connection).

        :meth:`say` has these lines inlined (its hot path): change both together.
        """
        kind = type(member)
        counts = self._door_counts.get(kind, _UNCOUNTED)
        if counts is _UNCOUNTED:
            counts = self._door_counts[kind] = _door_counts_of(kind)
        if counts is not None:
            counts.messages_in += 1

    def join(self, user: User, room: str, *, password: str | None = None,
             via: Member | None = None) -> None:
        self._publish(self.hub.join(user, room, time.time(), password=password,
                                    origin=origin_of(via)))
        self.owned.arrived(user, [fold(room)])  # a registered room's operator accounts

    def part(self, user: User, room: str, reason: str = "", *,
             via: Member | None = None) -> None:
        self._publish(self.hub.part(user, room, reason, time.time(), origin=origin_of(via)))

    def private(
        self,
        user: User,
        target: str,
        text: str,
        *,
        action: bool = False,
        notice: bool = False,
        meta: Meta = (),
        via: Member | None = None,
    ) -> Private:
        event = self.hub.private(user, target, text, time.time(), action=action, notice=notice,
                                 meta=meta, origin=origin_of(via))
        cluster = self.cluster
        if cluster is not None and (readers := self._private_readers(user, event)):
            cluster.check()
            self.commit()  # after the room messages said before it
            cluster.keep_private(user, event, readers)  # stored, then delivered, when read back
            self._count_in(via or user.member)
            return event
        stored = self._store_private(user, event)
        event = dataclasses.replace(event, msgid=str(stored) if stored else self._msgid())
        self._publish(event)
        self._count_in(via or user.member)
        return event

    def _store_private(self, user: User, event: Private) -> int | None:
        """Keep a private message for each party logged in to an account; its id, or None.

        Not kept when neither is (no one could page it back), nor here with a
        Redis bus (the stream gives its id and every node keeps it:
        services/chat_cluster.py).
        """
        readers = self._private_readers(user, event)
        if not readers or self.cluster is not None:
            return None
        self.commit()  # ids in the order things were said
        message = Message(event.target, user.nick, event.text, event.ts, event.action,
                          notice=event.notice, username=user.username, address=user.address)
        try:
            stored = self.store.append_private(message, readers)
        except sqlite3.Error as exc:  # the message itself still goes
            _seen_failures.log("chat: {count} more private messages not stored",
                               "chat: private message of %s not stored: %s", user.nick, exc)
            return None
        metrics.chat.history_rows += 1
        return stored.id

    def _private_readers(self, user: User, event: Private) -> list[tuple[str, str, str]]:
        """Who may page a private message back: (folded account, folded peer, peer as spelled)."""
        other = self.hub.find_user(event.target)
        readers = []
        if user.account is not None:
            readers.append((fold(user.account), fold(event.target), event.target))
        if other is not None and other.account is not None and other is not user:
            readers.append((fold(other.account), user.key, user.nick))
        return readers

    def signal(self, user: User, target: str, meta: Meta, *, via: Member | None = None) -> None:
        event = self.hub.signal(user, target, meta, time.time(), origin=origin_of(via))
        self._publish(dataclasses.replace(event, msgid=self._msgid()))

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
        event = self.hub.set_topic(user, room, topic, time.time())
        self._store_room(event)
        self._publish(event)

    def _store_room(self, event: TopicChanged | ModeChanged) -> None:
        """Keep the state a room will have after ``event`` (topic, settings), before it is
        told to anyone: stored, then delivered, as messages are. Not stored, not told."""
        found = self.hub.find_room(event.room)
        if found is None:
            return
        state = state_after(found, event)
        self.commit()  # the change's own write follows the messages said before it
        try:
            if state.is_default and found.key not in self.hub.state.registered:
                self.store.forget_room(found.name)
            else:
                self.store.save_room(state)
        except sqlite3.Error as exc:
            log.error("chat: the state of %s could not be stored: %s", found.name, exc)
            raise HubError("unavailable", "the change could not be stored; try again") from exc

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
            if any(change.flag in ROOM_FLAGS for change in event.changes):
                self._store_room(event)
            self._publish(event)
        return errors

    def set_away(self, user: User, message: str | None) -> None:
        self._publish(self.hub.set_away(user, message, time.time()))

    def set_realname(self, user: User, realname: str) -> None:
        self._publish(self.hub.set_realname(user, realname, time.time()))

    def wallops(self, user: User, text: str) -> None:
        self._publish(self.hub.wallops(user, text, time.time()))

    def invite(self, user: User, target: str, room: str) -> Invited:
        event = self.hub.invite(user, target, room, time.time())
        self._publish(event)
        return event

    def kill(self, user: User, target: str, reason: str) -> None:
        """KILL: the victim's door closes its connection, everyone else sees it quit."""
        victim, event = self.hub.kill(user, target, reason, time.time())
        log.info("%s killed %s (%s)", user.nick, victim.nick, event.reason)
        self._drop(victim, event)

    def drop_user(self, user: User, reason: str) -> None:
        """Disconnect ``user`` (every connection): NickServ GHOST, doors/owned.py."""
        log.info("%s disconnected (%s)", user.nick, reason)
        self._drop(user, self.hub.quit(user, reason, time.time()))

    def _drop(self, victim: User, event: Quit) -> None:
        self._publish(event)
        for member in members_of(victim.member):  # every connection of the victim
            if isinstance(member, Disconnectable):
                member.disconnect(event.reason)
            elif isinstance(member, Protocol):
                member.close()

    def quit(self, user: User, reason: str, *, voluntary: bool = False,
             via: Member | None = None) -> None:
        if self.hub.find_user(user.nick) is not user:
            return
        if via is not None and self.hub.detach(user, via):
            return  # the user stays, with their other connections
        if via is None and len(members_of(user.member)) > 1 and not self.shutting_down:
            # A door that does not say which connection left: they all go, so
            # none is left holding a user who is gone.
            self._drop(user, self.hub.quit(user, reason, time.time(), voluntary=voluntary))
            return
        if self.shutting_down:  # everyone is leaving: no one to tell
            self.commit()
            self._mark_seen(user, list(user.rooms), time.time())
            self.hub.state.forget(user)
            if self.cluster is not None:  # the others are told: this node's users are gone
                self.cluster.bus.publish(Quit(user.nick, reason, time.time()))
            return
        self._publish(self.hub.quit(user, reason, time.time(), voluntary=voluntary))
        if self.cluster is not None and not isinstance(user.member, RemoteMember):
            self.cluster.release(user.nick)

    def oper_later(self, user: User, name: str, password: str, *,
                   then: Callable[[bool], None]) -> None:
        """:meth:`oper` with the scrypt on the accounts' check threads."""
        stored = (self.settings.operators or {}).get(fold(name))

        def checked(ok: bool | None) -> None:
            then(self._opered(user, name, bool(ok) and stored is not None))

        self.accounts.offload(verify_password, password, stored or _DUMMY_HASH, then=checked)

    def _opered(self, user: User, name: str, ok: bool) -> bool:
        ok = hmac.compare_digest(b"1" if ok else b"0", b"1")
        if ok:
            self.hub.set_oper(user, True)
            log.info("%s is now an operator (%s)", user.nick, user.address)
            if self.cluster is not None:
                self.cluster.announce_oper(user)
        else:
            _failed_opers.log("{count} more failed /oper attempts",
                              "failed /oper for %r from %s", name, user.address)
        return ok

    def unoper(self, user: User) -> None:
        self.hub.set_oper(user, False)
        if self.cluster is not None:  # every node's WHOIS stops saying so
            self.cluster.announce_oper(user)

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

    def check_connection_password_later(self, given: str | None, *,
                                        then: Callable[[bool], None]) -> None:
        """:meth:`check_connection_password`, a scrypt hash checked on the accounts'
        threads (a plain password is compared at once)."""
        expected = self.settings.irc_password
        if expected is None or given is None or not is_hash(expected):
            then(self.check_connection_password(given))
            return
        self.accounts.offload(verify_password, given, expected,
                              then=lambda ok: then(hmac.compare_digest(b"1" if ok else b"0",
                                                                       b"1")))

    # History reads commit first: a client that says something, then asks for
    # history in the same read, finds its message there.

    def history(self, room: str, limit: int) -> list[Message]:
        self.commit()
        return self.store.recent(room, limit)

    def replay(self, user: User, room: str, limit: int) -> list[Message]:
        """What ``user`` missed of ``room``: since they (same nick, user name and
        address) last left it, or the last ``limit`` messages if never; at most ``limit``."""
        self.commit()
        if user.account is not None:  # the account's read marker, wherever it was read
            try:
                marker = self._markers().read_marker(fold(user.account), fold(room))
            except HubError:  # the cluster's markers unreachable: what this node saw
                marker = None
            if marker is not None:
                return self.store.page(room, limit, after=("ms", marker), newest=False)
        last = self.store.last_seen(_seen_key(user), room)
        if last is None:
            return self.store.recent(room, limit)
        return self.store.page(room, limit, after=("id", last))

    def _note_departure(self, event: HubEvent) -> None:
        """A bus subscriber: remember up to where a leaving user saw each room they leave."""
        kind = type(event)
        if kind not in _DEPARTURES:  # one set lookup per event: this sits on the fan-out path
            return
        assert isinstance(event, Parted | Kicked | Quit)
        user = self.hub.find_user(event.nick)
        if user is not None:
            keys = list(user.rooms) if isinstance(event, Quit) else [fold(event.room)]
            try:
                self._mark_seen(user, [key for key in keys if key in user.rooms], event.ts)
            except sqlite3.Error as exc:  # a convenience: the departure itself goes on
                _seen_failures.log("chat: {count} more seen marks not stored",
                                   "chat: seen mark of %s not stored: %s", user.nick, exc)

    def _mark_seen(self, user: User, keys: list[str], ts: float) -> None:
        if keys:
            self.store.mark_seen(_seen_key(user), keys, ts)
            # A door that shows every message (line, web page) has read what it
            # was in: its account's markers move to the newest message.
            if user.account is not None and any(
                    getattr(member, "marks_read", False) for member in members_of(user.member)):
                for key in keys:
                    room = user.rooms.get(key)
                    self.mark_read_newest(user, room.name if room is not None else key)

    def history_page(self, room: str, limit: int, *, after: Bound | None = None,
                     before: Bound | None = None, newest: bool = True) -> list[Message]:
        self.commit()
        return self.store.page(room, limit, after=after, before=before, newest=newest)

    def find_message(self, room: str, message_id: int) -> Message | None:
        self.commit()
        return self.store.find(room, message_id)


    # ChatApi: history that follows the person ----------------------------------

    def private_history(self, user: User, peer: str, limit: int, *, after: Bound | None = None,
                        before: Bound | None = None, newest: bool = True) -> list[Message]:
        if user.account is None:
            return []
        return self.store.private_page(fold(user.account), fold(peer), limit, after=after,
                                       before=before, newest=newest)

    def find_private(self, user: User, peer: str, message_id: int) -> Message | None:
        if user.account is None:
            return None
        return self.store.find_private(fold(user.account), fold(peer), message_id)

    def history_targets(self, user: User) -> list[tuple[str, float]]:
        self.commit()
        owner = fold(user.account) if user.account is not None else ""
        return self.store.latest(owner, [room.name for room in user.rooms.values()])

    def read_marker(self, user: User, target: str) -> int | None:
        if user.account is None:
            return None
        return self._markers().read_marker(fold(user.account), fold(target))

    def _markers(self) -> ChatStore | RedisMarkerStore:
        """Where read markers are: the cluster's (Redis) with a bus, else this node's store."""
        return self.cluster.markers if self.cluster is not None else self.store

    def mark_read(self, user: User, target: str, ms: int, *,
                  via: Member | None = None) -> int | None:
        account = user.account
        if account is None:
            return None
        markers = self._markers()  # raises HubError bus_down with Redis away: said, not hung
        before = markers.read_marker(fold(account), fold(target))
        stored = markers.mark_read(fold(account), fold(target), ms)
        if stored != before:  # the account's other connections follow (multiclient too)
            self.marker_moved(account, target, stored, via=via)
            if self.cluster is not None:  # and those on other nodes
                self.cluster.announce_marker(account, target, stored)
        return stored

    def marker_moved(self, account: str, target: str, ms: int, *,
                     via: Member | None = None) -> None:
        """Tell this node's connections of ``account`` (but ``via``) that a marker moved."""
        for other in self.hub.users.values():
            if other.account is None or fold(other.account) != fold(account):
                continue
            for member in members_of(other.member):
                if member is not via and isinstance(member, MarkerWatcher):
                    member.marker_moved(target, ms)

    def mark_read_newest(self, user: User, room: str) -> None:
        self.commit()
        newest = self.store.newest_ms(room)
        if newest is not None:
            try:
                self.mark_read(user, room, newest)
            except HubError as exc:  # a convenience (a departure): it goes on without
                log.warning("chat: read marker of %s not moved: %s", user.nick, exc)

    # ChatApi: web sessions ---------------------------------------------------------

    def session_start(self, account: str) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time()
        self.store.add_session(_token_hash(token), fold(account), now, now + SESSION_SECONDS)
        return token

    def session_account(self, token: str) -> str | None:
        key = self.store.session(_token_hash(token), time.time())
        return self.accounts.name_of(key) if key is not None else None

    def session_end(self, token: str) -> None:
        self.store.drop_session(_token_hash(token))

    # ChatApi: accounts (services/accounts.py) ----------------------------------

    def account_register_later(self, user: User | None, name: str, password: str, *,
                               address: str, then: Callable[[str | HubError], None]) -> None:
        by_oper = user is not None and user.is_oper
        try:
            self.accounts.register_later(name, password, address=address, by_oper=by_oper,
                                         now=time.monotonic, then=then)
        except HubError as exc:  # the cluster's accounts (Redis) unreachable
            then(exc)

    def account_identify_later(self, name: str, password: str, *, address: str,
                               then: Callable[[LoginResult], None]) -> None:
        self.accounts.identify_later(name, password, address=address, now=time.monotonic,
                                     then=then)

    def account_generation(self, name: str) -> str:
        record = self.accounts.store.get(name)
        return record.generation if record is not None else ""

    def account_admit(self, address: str) -> str | None:
        return self.accounts.admit(address, time.monotonic())

    def account_failed(self, name: str, address: str) -> float:
        return self.accounts.failed(name, address, time.monotonic())

    def account_release(self, address: str) -> None:
        self.accounts.release(address)

    def scram_server(self) -> ScramServer:
        return ScramServer(self._scram_lookup, secret=self._scram_secret)

    def _scram_lookup(self, name: str) -> ScramCredentials | None:
        try:
            return self.accounts.scram(name)
        except HubError:  # Redis away (--bus): the exchange fails as for an unknown name
            return None

    def account_owner(self, nick: str) -> str | None:
        try:
            return self.accounts.name_of(nick)
        except HubError:  # Redis away (--bus): no nick is enforced until it is back
            return None

    def log_in(self, user: User, account: str, *, generation: str = "") -> None:
        if generation and not self.accounts.current(account, generation):
            raise HubError("account_changed", f"account {account} was dropped or registered "
                           "again since you logged in; log in again")
        if user.account != account and self.hub.find_user(user.nick) is user:
            self._publish(AccountChanged(user.nick, account, time.time()))
        user.account = account
        user.barred = frozenset()
        self.owned.arrived(user, list(user.rooms))  # ops in the rooms it holds them in

    def log_out(self, user: User) -> None:
        if user.account is not None and self.hub.find_user(user.nick) is user:
            self._publish(AccountChanged(user.nick, None, time.time()))
        user.account = None

    def account_set_password_later(self, user: User, password: str, *,
                                   then: Callable[[HubError | None], None]) -> None:
        account = user.account
        if account is None:
            then(HubError("account_needed", "log in to an account first"))
            return

        def done(error: HubError | None) -> None:
            if error is None:
                self.store.drop_sessions(fold(account))  # web logins end with the old password
            then(error)

        self.accounts.set_password_later(account, password, done)

    def account_drop(self, user: User) -> None:
        account = user.account
        if account is None:
            raise HubError("account_needed", "log in to an account first")
        self.accounts.drop(account)
        self.owned.account_dropped(account)
        self.store.forget_account(fold(account))
        for other in list(self.hub.users.values()):
            if other.account is not None and fold(other.account) == fold(account):
                self.log_out(other)

    def account_reset_later(self, user: User, name: str, password: str, *,
                            then: Callable[[HubError | None], None]) -> None:
        if not user.is_oper:
            then(HubError("not_oper", "only operators reset passwords"))
            return

        def done(error: HubError | None) -> None:
            if error is None:
                self.store.drop_sessions(fold(name))
                log.info("accounts: %s reset the password of %s", user.nick, name)
            then(error)

        self.accounts.set_password_later(name, password, done)

    # ChatApi: registered rooms (services/rooms.py) ----------------------------------

    def room_register(self, user: User, room: str) -> Registration:
        return self.owned.register(user, room)

    def room_drop(self, user: User, room: str) -> Registration:
        return self.owned.drop(user, room)

    def room_info(self, room: str) -> Registration:
        return self.owned.info(room)

    def room_operator(self, user: User, room: str, account: str, *, add: bool) -> str:
        return self.owned.set_operator(user, room, account, add=add)

    def room_transfer(self, user: User, room: str, account: str) -> str:
        return self.owned.transfer(user, room, account)

    def room_op(self, user: User, room: str, nick: str | None = None) -> User:
        return self.owned.op(user, room, nick)


def _limits(settings: ChatSettings) -> dict[str, Any]:
    """The identify limiter's arguments (services/login.py: AuthLimiter)."""
    return {"delay": settings.account_delay, "delay_max": settings.account_delay_max,
            "window": settings.account_window, "max_pending": settings.account_max_pending,
            "max_pending_per_ip": settings.account_max_pending_per_ip}


#: The events after which a client has left a room (``_note_departure``).
_DEPARTURES = frozenset({Parted, Kicked, Quit})


def _token_hash(token: str) -> bytes:
    """What is stored of a web session token: its SHA-256 (a token is 256 random bits,
    so no salt or slow hash is needed; a stolen file gives no usable cookie)."""
    return hashlib.sha256(token.encode()).digest()


def _seen_key(user: User) -> str:
    """Who a client is, for not replaying again what it saw: folded nick, user name, address."""
    return f"{user.key}!{user.username}@{user.address}"


#: Not yet looked up in ``ChatService._door_counts`` (None there: a member of no door).
_UNCOUNTED = metrics.DoorCounts()


def _door_counts_of(kind: type) -> metrics.DoorCounts | None:
    """The message counts of the door a hub Member of class ``kind`` belongs to.

    A Member class names its door with ``metrics_door`` (``line``, ``irc``,
    ``web``); one that does not (a test's member) is counted nowhere.
    """
    name = getattr(kind, "metrics_door", None)
    return metrics.door(name) if isinstance(name, str) else None


def _check_sts(settings: ChatSettings, tls_port: int | None) -> None:
    """STS names a port clients keep to for a long time: it must exist and be fixed.

    Raises:
        ConfigError: ``irc_sts_duration`` without an IRC TLS port, or with a free one.
    """
    if settings.irc_sts_duration is not None and not tls_port:
        raise ConfigError("chat: --irc-sts-duration needs the IRC door's TLS listener on a "
                          "fixed port (--tls-cert and --irc-port, or --irc-tls-port N)")


def _read_motd(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"chat: cannot read the MOTD file {path}: {exc.strerror}") from exc
    return text.splitlines()


_DUMMY_HASH = "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def _hotline_door(service: ChatService) -> Protocol:
    assert service.hotline is not None  # the door is open only with a desk
    return HotlineDoor(service, service.hotline)


#: The chat hub's front doors. A new door is a module in ``sockhub/doors/`` and
#: one row here (docs/architecture.md).
#: Each may pair a plain listener with a TLS one (``tls_port``, ``tls_default``).
DOORS: tuple[ChatDoor, ...] = (
    ChatDoor("chat", lambda service: service.port, LineDoor, primary=True,
             tls_port=lambda service: service.settings.tls_port, tls_default=9998),
    ChatDoor("irc", lambda service: service.settings.irc_port, IrcDoor, refusal=irc_refusal,
             tls_port=lambda service: service.settings.irc_tls_port, tls_default=6697),
    ChatDoor("web", lambda service: service.settings.web_port, WebDoor, refusal=web_refusal,
             tls_port=lambda service: service.settings.web_tls_port, tls_default=8443),
    ChatDoor("ivr", lambda service: service.ivr_port, _hotline_door),
)
