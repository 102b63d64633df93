"""The chat service: one hub, its history, its bus, and the line door.

:class:`ChatService` owns the shared state (hub, SQLite store, bus,
operator accounts) and is what every door calls: it checks a command with
the hub, stores what must be stored, and publishes the event. The
:class:`LineDoor` is one nc/telnet user: it parses lines with
``protocols.chat_line``, calls the service, and renders hub events back
into lines. The IRC door (``services/chat_irc.py``) is another door on
the same service, opened when ``irc_port`` is set. Nothing here knows a
socket: the engine drives the doors like any other protocol.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import random
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from sockhub.codec.lines import encode_line
from sockhub.engine.service import Listener
from sockhub.errors import ConfigError
from sockhub.hub import Hub, HubError, Message, User
from sockhub.hub.events import (
    BanChanged,
    HubEvent,
    Invited,
    Kicked,
    Meta,
    ModeChange,
    Private,
    Signal,
)
from sockhub.hub.names import fold
from sockhub.logs import RateLimitedLog
from sockhub.passwords import is_hash, verify_password
from sockhub.protocols.base import ConnectionInfo, LineProtocol, Timer
from sockhub.protocols.chat_line import (
    Command,
    CommandError,
    help_lines,
    parse_line,
    render,
    visible,
)
from sockhub.services.chat_irc import IrcDoor, irc_refusal
from sockhub.services.chat_settings import ChatSettings
from sockhub.store.bus import LocalBus
from sockhub.store.history import HISTORY_MAX, ChatStore

if TYPE_CHECKING:
    from sockhub.config import ServiceConfig
    from sockhub.limits import Limits

log = logging.getLogger("sockhub.chat")
#: Lines any client can cause at will, logged at a bounded rate.
_floods = RateLimitedLog(log)
_failed_opers = RateLimitedLog(log, level=logging.WARNING)

#: Failed /oper attempts one connection may make before it is closed.
OPER_ATTEMPTS = 3
#: Settings a reload cannot change: where history lives, and the names and
#: ports clients already know.
RESTART_KEYS = ("data_dir", "irc_port", "server_name")


class ChatService:
    """Shared state of one chat hub, used by all its doors."""

    def __init__(self, settings: ChatSettings, limits: Limits, *, port: int | None = 9999) -> None:
        self.settings = settings
        self.port = port
        self.limits = limits
        self.motd = _read_motd(settings.motd_file)
        self.started = time.time()
        self.peak_users = 0
        self.store = ChatStore(settings.data_dir / "chat.sqlite3")
        self.hub = Hub(protected_rooms=settings.protected_rooms)
        self.hub.bans.update(self.store.bans())
        self.bus = LocalBus()
        self.bus.subscribe(self.hub.apply)
        self.shutting_down = False
        self._guests = itertools.count(random.randrange(1000, 9000))
        log.info("chat history in %s", self.store.path)

    @classmethod
    def from_config(cls, config: ServiceConfig, limits: Limits) -> ChatService:
        port = 9999 if config.port is None else config.port
        return cls(config.settings_as(ChatSettings), limits, port=port)

    # ServiceRuntime ---------------------------------------------------------

    def listeners(self) -> list[Listener]:
        return [
            Listener("chat", self.port, lambda: LineDoor(self), primary=True),
            Listener("irc", self.settings.irc_port, lambda: IrcDoor(self), refusal=irc_refusal),
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
        return [name.replace("_", " ") for name in changed]

    def begin_shutdown(self) -> None:
        self.shutting_down = True

    def close(self) -> None:
        self.bus.close()
        self.store.close()

    # Commands shared by every door ------------------------------------------

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
        message = self.store.append(message)
        self.bus.publish(message)
        return message

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


def _read_motd(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"chat: cannot read the MOTD file {path}: {exc.strerror}") from exc
    return text.splitlines()


_DUMMY_HASH = "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


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


class LineDoor(LineProtocol):
    """One nc/telnet user of the chat hub (see docs/chat-line.md)."""

    __slots__ = (
        "_reg_timer", "bucket", "current", "flood_dropped", "flood_warned", "oper_failures",
        "service", "user",
    )

    # One rendering per event for everyone: fan-out to 500 members renders
    # once. Private messages depend on the viewer and are not cached.
    _cache_event: object = None
    _cache_bytes: bytes = b""

    def __init__(self, service: ChatService) -> None:
        super().__init__()
        self.service = service
        self.user: User | None = None
        self.current: str | None = None
        self.bucket: TokenBucket | None = None
        self.flood_warned = False
        self.flood_dropped = 0
        self.oper_failures = 0
        self._reg_timer: Timer | None = None

    # Engine side --------------------------------------------------------------

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        settings = self.service.settings
        if settings.flood_rate is not None:
            self.bucket = TokenBucket(settings.flood_rate, settings.flood_burst, time.monotonic())
        self.info_line(f"welcome to {settings.line_name} chat; /help lists commands")
        self.info_line("enter a nick (or an empty line for a guest nick):")
        if settings.registration_timeout is not None:
            self._reg_timer = self.clock.call_later(
                settings.registration_timeout, self._registration_expired
            )

    def connection_lost(self) -> None:
        if self.user is not None:
            self.service.quit(self.user, "connection lost")
            self.user = None

    def closing_notice(self, reason: str) -> None:
        self.info_line(reason)

    def _registration_expired(self) -> None:
        if self.user is None and not self._closing:
            timeout = self.service.settings.registration_timeout
            log.info("chat: %s chose no nick in %g seconds; closed", self.info.peer, timeout)
            self.send_error(f"no nick chosen within {timeout:g} seconds; closing")
            self.close()

    # Hub side (Member) -----------------------------------------------------

    def deliver(self, event: HubEvent) -> None:
        if self._closing or type(event) is Signal:  # metadata only: nothing to show
            return
        if type(event) is Private:
            assert self.user is not None
            data = encode_line(render(event, self.user.nick))
        elif event is LineDoor._cache_event:
            data = LineDoor._cache_bytes
        else:
            data = encode_line(render(event, ""))
            LineDoor._cache_event, LineDoor._cache_bytes = event, data
        self._outgoing.append(data)  # send(), minus its checks: done above
        self.wake()
        if type(event) is Kicked and self.user is not None and fold(event.nick) == self.user.key:
            self._left_room(event.room)

    # Lines -------------------------------------------------------------------

    def info_line(self, text: str) -> None:
        self.send_line(f"-- {text}")

    def send_line(self, text: str) -> None:
        """Queue one line, made visible: it may quote someone's text (chat_line.visible)."""
        self.send(encode_line(visible(text)))

    def line_received(self, line: str) -> None:
        if self.bucket is not None and not self.bucket.take(time.monotonic()):
            self._flooding()
            return
        self.flood_warned = False
        try:
            command = parse_line(line)
        except CommandError as exc:
            self.send_error(str(exc))
            return
        try:
            if self.user is None:
                self._register(command)
            else:
                handler = getattr(self, f"_cmd_{command.name}")
                handler(*command.args)
        except HubError as exc:
            self.send_error(str(exc))

    def _flooding(self) -> None:
        self.flood_dropped += 1
        if not self.flood_warned:
            self.flood_warned = True
            self.send_error("flood control: you are sending too fast; line dropped, slow down")
        elif self.flood_dropped > self.service.settings.flood_burst:
            self.send_error("flood control: disconnected for flooding")
            _floods.log("flood: disconnected {count} more clients",
                        "flood: disconnected %s", self.info.peer)
            self.close()

    # Before a nick is chosen ----------------------------------------------

    def _register(self, command: Command) -> None:
        if command.name == "say":
            nick = command.args[0].strip() or self.service.guest_nick()
        elif command.name == "nick":
            nick = command.args[0]
        elif command.name in ("quit", "help"):
            getattr(self, f"_cmd_{command.name}")(*command.args)
            return
        else:
            self.send_error("choose a nick first: type it, or /nick NAME")
            return
        host = self.info.peer.rpartition(":")[0].strip("[]") if ":" in self.info.peer else ""
        user = self.service.hub.register(
            nick, self, address=host, secure=self.info.transport == "tls", now=time.time()
        )
        self.user = user
        if self._reg_timer is not None:
            self._reg_timer.cancel()
            self._reg_timer = None
        self.info_line(f"you are {user.nick}")
        self._cmd_join(self.service.hub.default_room)

    # Commands ----------------------------------------------------------------

    def _cmd_say(self, text: str) -> None:
        if not text or text.isspace():  # an empty or blank line: as if Enter alone
            return
        if self.current is None:
            self.send_error("you are in no room; /join #ROOM first")
            return
        assert self.user is not None
        self.service.say(self.user, self.current, text)

    def _cmd_me(self, text: str) -> None:
        if self.current is None:
            self.send_error("you are in no room; /join #ROOM first")
            return
        assert self.user is not None
        self.service.say(self.user, self.current, text, action=True)

    def _cmd_nick(self, nick: str) -> None:
        assert self.user is not None
        self.service.rename(self.user, nick)

    def _cmd_join(self, room: str, password: str | None = None) -> None:
        user = self.user
        assert user is not None
        existing = user.rooms.get(fold(room))
        if existing is not None:  # already there: make it the current room
            self.current = existing.name
            self.info_line(f"talking in {existing.name}")
            return
        self.service.join(user, room, password=password)
        joined = user.rooms[fold(room)]
        self.current = joined.name
        if joined.topic:
            self.info_line(f"topic of {joined.name}: {joined.topic}")
        self.info_line(
            f"in {joined.name}: {' '.join(sorted(u.nick for u in joined.members.values()))}"
        )
        self._send_history(joined.name, self.service.settings.history)

    def _send_history(self, room: str, limit: int, *, always_end: bool = False) -> None:
        messages = self.service.history(room, limit) if limit > 0 else []
        for message in messages:
            self.send(encode_line(render(message, "")))
        if messages or always_end:
            count = len(messages)
            self.info_line(f"end of history of {room} ({count} message{'s' * (count != 1)})")

    def _cmd_part(self, *args: str) -> None:
        assert self.user is not None
        room, reason = self._room_and_rest(args)
        if room is None:
            self.send_error("you are in no room")
            return
        self.service.part(self.user, room, reason)
        self._left_room(room)

    def _left_room(self, room: str) -> None:
        if self.current is not None and fold(self.current) == fold(room):
            assert self.user is not None
            rooms = [r for r in self.user.rooms.values() if r.key != fold(room)]
            self.current = rooms[-1].name if rooms else None
            if self.current:
                self.info_line(f"talking in {self.current}")
            else:
                self.info_line("you are in no room; /join #ROOM to talk")

    def _room_and_rest(self, args: tuple[str, ...]) -> tuple[str | None, str]:
        if args and args[0].startswith("#"):
            return args[0], " ".join(args[1:])
        return self.current, " ".join(args)

    def _cmd_rooms(self) -> None:
        rooms = sorted(self.service.hub.rooms.values(), key=lambda r: r.key)
        self.info_line(f"{len(rooms)} room(s):")
        for room in rooms:
            topic = f": {room.topic}" if room.topic else ""
            self.info_line(f"  {room.name} ({len(room.members)}){topic}")

    def _cmd_who(self, room: str | None = None) -> None:
        name = room or self.current
        if name is None:
            self.send_error("usage: /who #ROOM")
            return
        found = self.service.hub.find_room(name)
        if found is None:
            raise HubError("no_such_room", f"no such room: {name}")
        nicks = sorted(
            ("@" if key in found.operators else "") + user.nick
            for key, user in found.members.items()
        )
        self.info_line(f"in {found.name} ({len(nicks)}): {' '.join(nicks)}")

    def _cmd_msg(self, target: str, text: str) -> None:
        assert self.user is not None
        self.service.private(self.user, target, text)

    def _cmd_topic(self, *args: str) -> None:
        assert self.user is not None
        room, text = self._room_and_rest(args)
        if room is None:
            self.send_error("usage: /topic #ROOM [TEXT]")
            return
        if not text:
            found = self.service.hub.find_room(room)
            if found is None:
                raise HubError("no_such_room", f"no such room: {room}")
            self.info_line(
                f"topic of {found.name}: {found.topic}"
                if found.topic
                else f"{found.name} has no topic"
            )
            return
        self.service.set_topic(self.user, room, text)

    def _cmd_history(self, count: str | None = None) -> None:
        if self.current is None:
            self.send_error("you are in no room")
            return
        try:
            limit = int(count) if count is not None else self.service.settings.history
        except ValueError:
            self.send_error("usage: /history [N]")
            return
        if not 1 <= limit <= HISTORY_MAX:
            self.send_error(f"/history takes 1 to {HISTORY_MAX} messages")
            return
        self._send_history(self.current, limit, always_end=True)

    def _cmd_quit(self, reason: str = "") -> None:
        if self.user is not None:
            self.service.quit(self.user, reason, voluntary=True)
            self.user = None
        self.info_line("bye")
        self.close()

    def _cmd_help(self, name: str | None = None) -> None:
        for line in help_lines(name):
            self.send_line(line)

    def _cmd_oper(self, name: str, password: str) -> None:
        assert self.user is not None
        if self.service.oper(self.user, name, password):
            self.info_line("you are now a server operator")
            return
        self.oper_failures += 1
        self.send_error("wrong operator name or password")
        if self.oper_failures >= OPER_ATTEMPTS:
            self.send_error("too many failed attempts; closing")
            self.close()

    def _cmd_kick(self, *args: str) -> None:
        assert self.user is not None
        room, rest = self._room_and_rest(args)
        nick, _, reason = rest.partition(" ")
        if room is None or not nick:
            self.send_error("usage: /kick [#ROOM] NICK [REASON]")
            return
        self.service.kick(self.user, room, nick, reason)

    def _cmd_ban(self, *args: str, add: bool = True) -> None:
        assert self.user is not None
        room, mask = self._room_and_rest(args)
        if room is None or not mask:
            self.send_error(f"usage: /{'ban' if add else 'unban'} [#ROOM] MASK")
            return
        self.service.ban(self.user, room, mask, add=add)

    def _cmd_unban(self, *args: str) -> None:
        self._cmd_ban(*args, add=False)

    def _cmd_bans(self, room: str | None = None) -> None:
        name = room or self.current
        if name is None:
            self.send_error("usage: /bans #ROOM")
            return
        masks = self.service.hub.bans.get(fold(name), [])
        self.info_line(f"bans of {name}: {' '.join(masks) if masks else 'none'}")
