"""The IRC door's machinery: input queue, flood control, keep-alive, output, delivery.

Theory of operation
-------------------

Bytes from the engine go through :class:`~sockhub.codec.irc.IrcFramer` into
a queue of lines. :meth:`IrcDoorCore._drain` takes lines off the queue one
at a time, parses them and dispatches them through the command table
(``protocols/chat_irc.py: COMMANDS``), which checks registration state and
arity once.

Flood control is ircd's (RFC 1459 §8.10), not a dropper: each command
advances a per-client *penalty clock* by ``1 / flood_rate`` seconds; while
that clock is more than ``flood_burst / flood_rate`` seconds ahead of real
time the client's lines wait in the queue, and processing resumes on a
timer. Real clients pace themselves (irssi and WeeChat send about one line
every two seconds after a short burst), so they never notice; a burst of
JOINs on connect is delayed at worst, never lost. A client whose queue
passes :data:`RECVQ_LINES` lines or :data:`RECVQ_BYTES` bytes is not
pacing itself at all and is dropped with ``ERROR :... (Excess Flood)``.

Keep-alive: after ``irc_ping_interval`` seconds without a line from the
client the door sends ``PING``; if no line arrives within
``irc_ping_timeout`` more, the client is dropped and its channels see
``QUIT :Ping timeout: N seconds`` (Modern IRC, QUIT: the reason reflects
"the nature of the event which caused it"). Only complete lines count, for
this and for the engine's ``idle_timeout`` (:attr:`counts_messages`): a
client trickling half a line is as quiet as a silent one. A client must also
finish registration within the chat service's ``registration_timeout``.

Output: every line leaves through :meth:`IrcDoorCore._emit`, so that a
command carrying an IRCv3 ``label`` can have all of its replies captured
and returned as one labeled response (a single tagged line, a
``labeled-response`` batch, or an ``ACK``). Hub events are rendered once
per capability profile and the bytes shared by every IRC member of a
channel, as the line door does.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sockhub.codec.irc import (
    ERR_BADCHANNELKEY,
    ERR_BANNEDFROMCHAN,
    ERR_CANNOTSENDTOCHAN,
    ERR_CHANNELISFULL,
    ERR_CHANOPRIVSNEEDED,
    ERR_ERRONEUSNICKNAME,
    ERR_INPUTTOOLONG,
    ERR_INVITEONLYCHAN,
    ERR_NEEDMOREPARAMS,
    ERR_NICKNAMEINUSE,
    ERR_NOSUCHCHANNEL,
    ERR_NOSUCHNICK,
    ERR_NOTEXTTOSEND,
    ERR_NOTONCHANNEL,
    ERR_NOTREGISTERED,
    ERR_TOOMANYCHANNELS,
    ERR_UNKNOWNCOMMAND,
    ERR_UNKNOWNERROR,
    ERR_USERNOTINCHANNEL,
    ERR_USERONCHANNEL,
    OVERLONG,
    IrcDecodeError,
    IrcFramer,
    IrcInputTooLong,
    IrcMessage,
    IrcSyntaxError,
    Overlong,
    escape_tag_value,
    format_time,
    parse_message,
    serialize,
)
from sockhub.errors import ProtocolError
from sockhub.hub import HubError, User
from sockhub.hub.events import (
    AwayChanged,
    BanChanged,
    HubEvent,
    Invited,
    Joined,
    Kicked,
    Message,
    ModeChanged,
    NickChanged,
    Private,
    Quit,
    Signal,
)
from sockhub.hub.names import fold
from sockhub.logs import RateLimitedLog
from sockhub.protocols.base import ConnectionInfo, Protocol, Timer
from sockhub.protocols.chat_irc import (
    COMMANDS,
    EXTENDED_JOIN,
    MESSAGE_TAGS,
    SERVER_TIME,
    IrcState,
    Registration,
    irc_host,
    render_event,
    render_private,
    render_signal,
)

if TYPE_CHECKING:
    from sockhub.services.chat import ChatService

log = logging.getLogger("sockhub.irc")
#: Drops are one line per connection, which a flood of connections controls.
_drops = RateLimitedLog(log)

# Limits
#: Lines waiting in one client's queue before it is dropped for flooding.
RECVQ_LINES = 200
#: Bytes waiting in one client's queue before it is dropped for flooding.
RECVQ_BYTES = 64 * 1024

SOFTWARE = "sockhub"
#: The text of the 400 a command that failed inside the server gets.
INTERNAL_ERROR = "Internal error; the command was not carried out"


def irc_refusal(reason: str) -> bytes:
    """What an IRC client refused at the door (server full) is told."""
    return serialize("ERROR", (f"Closing Link: {reason}",))


class IrcDoorCore(Protocol):
    """One IRC client of the chat hub: everything but the command handlers."""

    __slots__ = (
        "_batch_seq", "_capture", "_drain_timer", "_last_seen", "_lost_reason", "_penalty_at",
        "_pending", "_pending_bytes", "_ping_sent", "_ping_timer", "_profile", "_reg_timer",
        "allowance", "caps", "framer", "host", "oper_failures", "penalty", "reg", "server_name",
        "service", "state", "user",
    )

    # Idleness is "no complete line", not "no byte" (see the module docstring).
    counts_messages = True

    # One rendering of the last event per capability profile, shared by every
    # IRC member it is delivered to (see LineDoor for the same idea).
    _cache_event: object = None
    _cache: dict[int, bytes] = {}

    def __init__(self, service: ChatService) -> None:
        super().__init__()
        self.service = service
        settings = service.settings
        self.server_name = settings.irc_name
        self.state = IrcState.REGISTERING
        self.reg = Registration()
        self.user: User | None = None
        self.caps: set[str] = set()
        self._profile = 0
        self.framer = IrcFramer()
        self.host = "localhost"
        self._pending: deque[bytes | Overlong] = deque()
        self._pending_bytes = 0
        rate = settings.flood_rate
        self.penalty = 1.0 / rate if rate else 0.0
        self.allowance = settings.flood_burst / rate if rate else 0.0
        self._penalty_at = 0.0
        self._drain_timer: Timer | None = None
        self._last_seen = 0.0
        self._ping_sent: float | None = None
        self._ping_timer: Timer | None = None
        self._reg_timer: Timer | None = None
        self._capture: list[bytes] | None = None
        self._batch_seq = 0
        self._lost_reason = "Connection closed"
        self.oper_failures = 0

    # Engine side ------------------------------------------------------------

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        peer = info.peer
        self.host = irc_host(peer.rpartition(":")[0].strip("[]") if ":" in peer else "")
        now = self.clock.time()
        self._last_seen = now
        self._penalty_at = now
        settings = self.service.settings
        if settings.registration_timeout is not None:
            self._reg_timer = self.clock.call_later(
                settings.registration_timeout, self._registration_expired
            )
        self._ping_timer = self.clock.call_later(settings.irc_ping_interval, self._ping_check)

    def receive_data(self, data: bytes) -> None:
        if self.state is IrcState.CLOSED:
            return
        items = self.framer.feed(data)
        if not items:
            return  # half a line: not a sign of life (module docstring)
        self.active = True
        self._last_seen = self.clock.time()
        for item in items:
            self._pending.append(item)
            self._pending_bytes += len(item) if isinstance(item, bytes) else 0
        self._drain()
        # What flood control could not let through yet waits; too much of it
        # means a client that does not pace itself at all.
        if len(self._pending) > RECVQ_LINES or self._pending_bytes > RECVQ_BYTES:
            self.drop("Excess Flood")

    def receive_eof(self) -> None:
        # The client will say no more: what it said still counts (a piped
        # "NICK, USER, PRIVMSG, QUIT"), flood control or not.
        self.penalty = 0.0
        self._drain()
        if self.state is not IrcState.CLOSED:
            self._lost_reason = "Connection closed"
            self.close()

    def connection_lost(self) -> None:
        self.state = IrcState.CLOSED
        for timer in (self._drain_timer, self._ping_timer, self._reg_timer):
            if timer is not None:
                timer.cancel()
        if self.user is not None:
            self.service.quit(self.user, self._lost_reason)
            self.user = None

    def closing_notice(self, reason: str) -> None:
        self._emit(serialize("ERROR", (f"Closing Link: {self.host} ({reason})",)))

    # Input queue and flood control ------------------------------------------

    def _drain(self) -> None:
        self._drain_timer = None
        pending = self._pending
        while pending and self.state is not IrcState.CLOSED and not self._closing:
            if self.penalty:
                now = self.clock.time()
                if self._penalty_at < now:
                    self._penalty_at = now
                ahead = self._penalty_at - now
                if ahead > self.allowance:
                    if self._drain_timer is None:
                        self._drain_timer = self.clock.call_later(
                            ahead - self.allowance, self._drain
                        )
                    return
            item = pending.popleft()
            if isinstance(item, bytes):
                self._pending_bytes -= len(item)
            self._process(item)

    def _process(self, item: bytes | Overlong) -> None:
        if item is OVERLONG:
            self._penalty_at += self.penalty
            self.reply(ERR_INPUTTOOLONG, "Input line was too long")
            return
        assert isinstance(item, bytes)
        if not item.strip(b" \r"):
            return  # "Servers and clients SHOULD ignore empty lines."
        try:
            message = parse_message(item)
        except IrcInputTooLong:
            self._penalty_at += self.penalty
            self.reply(ERR_INPUTTOOLONG, "Input line was too long")
            return
        except IrcDecodeError as exc:
            self._penalty_at += self.penalty
            # UTF8ONLY (IRCv3): a server that advertises it may answer FAIL.
            self._emit(self.line("FAIL", exc.command, "INVALID_UTF8",
                                 "Message rejected: it was not valid UTF-8"))
            return
        except IrcSyntaxError as exc:
            self._penalty_at += self.penalty
            self.reply(ERR_UNKNOWNERROR, "*", f"Malformed message: {exc}")
            return
        spec = COMMANDS.get(message.command)
        self._penalty_at += self.penalty * (spec.cost if spec else 1.0)
        self._dispatch(message)

    def _dispatch(self, message: IrcMessage) -> None:
        command = message.command
        spec = COMMANDS.get(command)
        registered = self.state is IrcState.REGISTERED
        if spec is None:
            if registered:
                self.reply(ERR_UNKNOWNCOMMAND, command, "Unknown command")
            else:
                self.reply(ERR_NOTREGISTERED, "You have not registered")
            return
        if not registered and not spec.pre_reg:
            self.reply(ERR_NOTREGISTERED, "You have not registered")
            return
        if len(message.params) < spec.min_params:
            self.reply(ERR_NEEDMOREPARAMS, command, "Not enough parameters")
            return
        label = message.tags.get("label") if "labeled-response" in self.caps else None
        if label is not None:
            self._capture = []
        try:
            getattr(self, "_cmd_" + command.lower())(message)
        except HubError as exc:
            self.hub_error(command, exc)
        except ProtocolError as exc:  # a handler's own refusal of what it was sent
            self.reply(ERR_UNKNOWNERROR, command, str(exc))
        except Exception:
            # A bug must cost one command, not the connection or the server.
            log.exception("irc: %s failed for %s", command, self.info.peer)
            self.reply(ERR_UNKNOWNERROR, command, INTERNAL_ERROR)
        finally:
            if label is not None:
                captured, self._capture = self._capture or [], None
                self._send_labeled(label, captured)

    def hub_error(self, command: str, exc: HubError, channel: str = "*") -> None:
        """Answer a refusal of the hub with its standard numeric (HubError codes).

        ``channel`` is the channel the command was about, for numerics that
        name one.
        """
        code, target = exc.code, exc.target or "*"
        if code == "no_such_nick":
            self.reply(ERR_NOSUCHNICK, target, "No such nick/channel")
        elif code in ("no_such_room", "invalid_room"):
            self.reply(ERR_NOSUCHCHANNEL, channel, "No such channel")
        elif code == "not_in_room" and exc.target:
            self.reply(ERR_USERNOTINCHANNEL, target, channel, "They aren't on that channel")
        elif code == "not_in_room":
            self.reply(ERR_NOTONCHANNEL, channel, "You're not on that channel")
        elif code == "already_in_room":
            self.reply(ERR_USERONCHANNEL, target, channel, "is already on channel")
        elif code == "not_operator":
            self.reply(ERR_CHANOPRIVSNEEDED, channel, "You're not channel operator")
        elif code == "cannot_send":
            self.reply(ERR_CANNOTSENDTOCHAN, channel, f"Cannot send to channel: {exc}")
        elif code == "banned":
            self.reply(ERR_BANNEDFROMCHAN, channel, "Cannot join channel (+b)")
        elif code == "invite_only":
            self.reply(ERR_INVITEONLYCHAN, channel, "Cannot join channel (+i)")
        elif code == "bad_password":
            self.reply(ERR_BADCHANNELKEY, channel, "Cannot join channel (+k)")
        elif code == "full":
            self.reply(ERR_CHANNELISFULL, channel, "Cannot join channel (+l)")
        elif code == "too_many_rooms":
            self.reply(ERR_TOOMANYCHANNELS, channel, "You have joined too many channels")
        elif code == "invalid_nick":
            self.reply(ERR_ERRONEUSNICKNAME, target, "Erroneous nickname")
        elif code == "nick_in_use":
            self.reply(ERR_NICKNAMEINUSE, target, "Nickname is already in use")
        elif code == "invalid_text" and str(exc) == "nothing to send":
            self.reply(ERR_NOTEXTTOSEND, "No text to send")
        else:
            self.reply(ERR_UNKNOWNERROR, command, str(exc))

    # Keep-alive and registration deadline -----------------------------------

    def _ping_check(self) -> None:
        if self.state is IrcState.CLOSED:
            return
        settings = self.service.settings
        now = self.clock.time()
        if self._ping_sent is not None and self._last_seen <= self._ping_sent:
            waited = now - self._ping_sent
            if waited >= settings.irc_ping_timeout:
                self.drop(f"Ping timeout: {round(settings.irc_ping_timeout)} seconds")
                return
            self._ping_timer = self.clock.call_later(
                settings.irc_ping_timeout - waited, self._ping_check
            )
            return
        self._ping_sent = None
        quiet = now - self._last_seen
        if quiet < settings.irc_ping_interval:
            self._ping_timer = self.clock.call_later(
                settings.irc_ping_interval - quiet, self._ping_check
            )
            return
        self._ping_sent = now
        self._emit(serialize("PING", (self.server_name,)))
        self.wake()
        self._ping_timer = self.clock.call_later(settings.irc_ping_timeout, self._ping_check)

    def _registration_expired(self) -> None:
        if self.state is IrcState.REGISTERING:
            self.drop("Registration timed out")

    def drop(self, reason: str) -> None:
        """Disconnect with ``ERROR`` and tell the client's channels why."""
        if self.state is IrcState.CLOSED:
            return
        _drops.log("irc: dropped {count} more clients", "irc: dropped %s (%s): %s",
                   self.info.peer, self.reg.nick, reason, detail=reason)
        if self.user is not None:
            self.service.quit(self.user, reason)
            self.user = None
        self._emit(serialize("ERROR", (f"Closing Link: {self.host} ({reason})",)))
        self.state = IrcState.CLOSED
        self._pending.clear()
        self.wake()
        self.close()

    # Output -----------------------------------------------------------------

    @property
    def nick(self) -> str:
        """The client's nick in replies: ``*`` until registered (Modern IRC, numerics)."""
        return self.user.nick if self.user is not None else "*"

    def _emit(self, data: bytes) -> None:
        if self._capture is not None:
            self._capture.append(data)
        else:
            self.send(data)

    def _tags(self) -> dict[str, str] | None:
        return {"time": format_time(time.time())} if self._profile & SERVER_TIME else None

    def line(self, command: str, *params: str) -> bytes:
        """A line from the server (its name as the source)."""
        return serialize(command, params, source=self.server_name, tags=self._tags())

    def reply(self, numeric: str, *params: str) -> None:
        """A numeric reply: ``:server NNN <client> params...``."""
        self._emit(serialize(numeric, (self.nick, *params), source=self.server_name,
                             tags=self._tags()))

    def send_from(self, source: str, command: str, *params: str,
                  tags: dict[str, str] | None = None) -> None:
        all_tags = {**(self._tags() or {}), **(tags or {})}
        self._emit(serialize(command, params, source=source, tags=all_tags or None))

    def next_batch(self) -> str:
        self._batch_seq += 1
        return f"b{self._batch_seq}"

    def _send_labeled(self, label: str, captured: list[bytes]) -> None:
        """Wrap a command's replies as an IRCv3 labeled response."""
        lines = [ln + b"\r\n" for chunk in captured for ln in chunk.split(b"\r\n") if ln]
        tag = b"label=" + escape_tag_value(label).encode()
        # Appended directly: a QUIT's ERROR must go out even though the
        # command has already asked to close (send() would drop it).
        out = self._outgoing
        if not lines:
            out.append(_add_tag(self.line("ACK"), tag))
        elif len(lines) == 1:
            out.append(_add_tag(lines[0], tag))
        elif "batch" not in self.caps:
            out.extend(lines)  # no way to group them: send them unlabeled
        else:
            ref = self.next_batch()
            out.append(_add_tag(self.line("BATCH", "+" + ref, "labeled-response"), tag))
            batch_tag = b"batch=" + ref.encode()
            out.extend(ln if _has_batch(ln) else _add_tag(ln, batch_tag) for ln in lines)
            out.append(self.line("BATCH", "-" + ref))

    def set_caps(self, caps: Iterable[str]) -> None:
        self.caps = set(caps)
        profile = 0
        if "server-time" in self.caps:
            profile |= SERVER_TIME
        if "message-tags" in self.caps:
            profile |= MESSAGE_TAGS
        if "extended-join" in self.caps:
            profile |= EXTENDED_JOIN
        self._profile = profile

    # Hub side (Member) ------------------------------------------------------

    def source_of(self, nick: str) -> str:
        """``nick!user@host`` of a user, or the bare nick if they are gone."""
        user = self.service.hub.find_user(nick)
        if user is None:
            return nick
        return f"{user.nick}!{user.username or user.nick}@{irc_host(user.address)}"

    def deliver(self, event: HubEvent) -> None:
        me = self.user
        if me is None or self._closing:
            return
        kind = type(event)
        if kind is Message:
            assert isinstance(event, Message)
            # The hub puts the sender's own registered nick in the event, and
            # nicks are unique case-insensitively: an exact compare suffices
            # (and saves two case-folds per delivery).
            if event.nick == me.nick and "echo-message" not in self.caps:
                return
            self._emit(self._shared(event, event.nick))
        elif kind is Private:
            assert isinstance(event, Private)
            self._deliver_private(event, me)
        elif kind is Signal:
            assert isinstance(event, Signal)
            if "message-tags" not in self.caps:
                return
            if fold(event.sender) == me.key and "echo-message" not in self.caps:
                return
            self._emit(render_signal(event, self.source_of(event.sender), self._profile))
        elif kind is NickChanged:
            assert isinstance(event, NickChanged)
            user = self.service.hub.find_user(event.new)
            old = event.old
            if user is not None:
                old = f"{event.old}!{user.username or event.old}@{irc_host(user.address)}"
            self._emit(self._shared(event, event.old, source=old))
        elif kind is AwayChanged:
            assert isinstance(event, AwayChanged)
            if "away-notify" in self.caps and fold(event.nick) != me.key:
                params = (event.message,) if event.message else ()
                self.send_from(self.source_of(event.nick), "AWAY", *params)
        elif kind is Invited:
            assert isinstance(event, Invited)
            self.send_from(self.source_of(event.by), "INVITE", event.nick, event.room)
        elif kind is Quit:
            assert isinstance(event, Quit)
            self._emit(self._shared(event, event.nick))
        elif isinstance(event, Kicked | BanChanged | ModeChanged):
            self._emit(self._shared(event, event.by))
        else:  # Joined, Parted, TopicChanged
            self._emit(self._shared(event, event.nick))
            if kind is Joined and "away-notify" in self.caps and fold(event.nick) != me.key:
                # away-notify: "when a user joins and has an away message set".
                joiner = self.service.hub.find_user(event.nick)
                if joiner is not None and joiner.away:
                    self.send_from(self.source_of(joiner.nick), "AWAY", joiner.away)
        self.wake()

    def _shared(self, event: HubEvent, actor: str, *, source: str | None = None) -> bytes:
        cls = IrcDoorCore
        if event is not cls._cache_event:
            cls._cache_event = event
            cls._cache = {}
        profile = self._profile
        data = cls._cache.get(profile)
        if data is None:
            user = self.service.hub.find_user(actor)
            realname = user.realname if user is not None else ""
            data = render_event(event, source or self.source_of(actor), profile,
                                realname=realname)
            cls._cache[profile] = data
        return data

    def _deliver_private(self, event: Private, me: User) -> None:
        to_me = fold(event.target) == me.key
        from_me = fold(event.sender) == me.key
        echo = "echo-message" in self.caps
        source = self.source_of(event.sender)
        if from_me and echo and to_me:  # a message to oneself: the echo, then the delivery
            self._emit(render_private(event, source, self._profile))
        if to_me or (from_me and echo):
            self._emit(render_private(event, source, self._profile))


def _add_tag(line: bytes, tag: bytes) -> bytes:
    if line.startswith(b"@"):
        return b"@" + tag + b";" + line[1:]
    return b"@" + tag + b" " + line


def _has_batch(line: bytes) -> bool:
    if not line.startswith(b"@"):
        return False
    tags = line[1 : line.find(b" ")]
    return any(t.startswith(b"batch=") for t in tags.split(b";"))
