"""IrcProtocol: one IRC connection's state machine, sans-I/O.

Theory of operation
-------------------

Bytes go in with :meth:`IrcProtocol.receive_data`; commands come out of
:meth:`IrcProtocol.next_event`, one at a time, as events the door acts on.
Nothing here reads a clock, arms a timer or writes to a socket: the door
passes ``now`` in and arms the timers the events ask for. Four concerns
live here and nowhere else:

* **Framing.** :class:`~sockhub.codec.irc.IrcFramer` cuts lines (at most
  8191 bytes of tags and 512 of message, Modern IRC); an overlong line
  becomes ``417 ERR_INPUTTOOLONG``, invalid UTF-8 an IRCv3 ``FAIL
  INVALID_UTF8``, a malformed line ``400``. Empty lines are ignored
  ("Servers and clients SHOULD ignore empty lines").
* **The flood clock** (RFC 1459 §8.10, ircd's penalty, not a dropper):
  each command advances a per-client clock by ``1 / flood_rate`` seconds
  times its cost; while that clock is more than ``flood_burst /
  flood_rate`` seconds ahead of ``now``, lines wait in the queue and
  :meth:`next_event` answers :class:`Wait`. A client whose queue passes
  :data:`RECVQ_LINES` lines or :data:`RECVQ_BYTES` bytes is not pacing
  itself at all: :attr:`flooded` turns true and the door drops it.
* **Registration** (RFC 2812 §3.1; Modern IRC, "Connection Registration"):
  three states, :class:`IrcState`. A connection is ``REGISTERING`` until it
  has given a nick and a user name and, if it opened capability negotiation
  with ``CAP LS``/``CAP REQ``, closed it with ``CAP END`` (IRCv3: "the
  server MUST NOT complete registration until the client sends CAP END");
  then ``REGISTERED`` until it quits or is dropped (``CLOSED``).
  :class:`Registration` holds what has been said so far and answers the one
  question that matters: may registration complete now? (miniircd's
  "registration as a swapped handler", kept as data.)
* **The command table** (ergo's ``irc/commands.go``): every command is one
  :class:`CommandSpec` row naming its handler, its least number of
  parameters, whether it may be used before registration and its flood
  cost. Arity (``461 ERR_NEEDMOREPARAMS``), state (``451
  ERR_NOTREGISTERED``) and unknown commands (``421``) are checked here,
  once, so handlers never re-check them. The handler is opaque to this
  module: the door that built the table calls it.
* **The channel-message fast path** (issue 16): most lines a busy server
  reads are ``PRIVMSG #channel :text`` with no tags. Such a line, read
  exactly in that shape from a registered client, skips the general parser
  and becomes :class:`ChannelText` (target and text, one split) for the
  row's ``fast`` handler. Every line it is not sure of (tags, a source, a
  lower-case command, several targets, no ``:``, empty text, CTCP, a NUL,
  over 510 bytes, invalid UTF-8) goes the general way, so that every
  refusal is the general path's own; it costs the same flood-clock charge.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from sockhub.codec.irc import (
    ERR_INPUTTOOLONG,
    ERR_NEEDMOREPARAMS,
    ERR_NOTREGISTERED,
    ERR_UNKNOWNCOMMAND,
    ERR_UNKNOWNERROR,
    MAX_BODY,
    OVERLONG,
    IrcDecodeError,
    IrcFramer,
    IrcInputTooLong,
    IrcMessage,
    IrcSyntaxError,
    Overlong,
    parse_message,
)

# Limits
#: Lines waiting in one client's queue before it is dropped for flooding.
RECVQ_LINES = 200
#: Bytes waiting in one client's queue before it is dropped for flooding.
RECVQ_BYTES = 64 * 1024


class IrcState(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    CLOSED = "closed"


@dataclass(slots=True)
class Registration:
    """What a client has said before registration (RFC 2812 §3.1, Modern IRC).

    ``PASS`` must come before ``NICK``/``USER`` complete registration; the
    last one given counts. A client that sends ``CAP LS`` or ``CAP REQ``
    first holds registration until ``CAP END``.
    """

    password: str | None = None
    nick: str | None = None
    username: str | None = None
    realname: str | None = None
    negotiating: bool = False
    cap_version: int = 0

    @property
    def complete(self) -> bool:
        return self.nick is not None and self.username is not None and not self.negotiating


class _Over(Registration):
    """Registration once it is over: one shared, read-only instance (:data:`REGISTRATION_OVER`).

    A registered client's door reads the user, not this; an instance each was
    80 B of every idle client (issue 16). Writing to it is a bug (it would reach
    every client), so it refuses.
    """

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"registration is over: {name} may not change")


REGISTRATION_OVER: Registration = object.__new__(_Over)
for _field in fields(Registration):
    object.__setattr__(REGISTRATION_OVER, _field.name, _field.default)


#: A command handler: called with the door that owns the protocol and the message.
Handler = Callable[[Any, IrcMessage], None]
#: A fast-path handler: the door, then a :class:`ChannelText`'s target, text and size.
FastHandler = Callable[[Any, str, str, int], None]


@dataclass(frozen=True)
class CommandSpec:
    """One row of the command table.

    Attributes:
        handler: what the door calls once the checks below have passed.
        min_params: fewer parameters get ``461 ERR_NEEDMOREPARAMS``.
        pre_reg: usable before registration completes.
        cost: flood-clock cost, in units of ``1 / flood_rate`` seconds.
        fast: for PRIVMSG only, what a line in the fast path's shape is given
            instead of ``handler`` (see :class:`ChannelText`); None: no fast path.
    """

    handler: Handler
    min_params: int = 0
    pre_reg: bool = False
    cost: float = 1.0
    fast: FastHandler | None = None


# Events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandReceived:
    """A well-formed command that passed the table's checks: call its handler."""

    message: IrcMessage
    spec: CommandSpec


class ChannelText:
    """``PRIVMSG #channel :text`` read by the fast path: call ``spec.fast``.

    ``size`` is the line's length in bytes (what the relayed line's length
    is reckoned from). A plain class, not a frozen dataclass: one is made
    per message, and a frozen dataclass's ``__init__`` costs several times
    as much.
    """

    __slots__ = ("size", "spec", "target", "text")

    def __init__(self, spec: CommandSpec, target: str, text: str, size: int) -> None:
        self.spec = spec
        self.target = target
        self.text = text
        self.size = size


@dataclass(frozen=True)
class Refused:
    """A line answered with a numeric and otherwise ignored.

    ``label`` is the line's IRCv3 ``label`` tag, if it parsed far enough to
    have one: the refusal is that command's response (labeled-response).
    """

    numeric: str
    params: tuple[str, ...]
    label: str | None = None


@dataclass(frozen=True)
class Undecodable:
    """A line that was not UTF-8 (IRCv3 UTF8ONLY: answer ``FAIL <command> INVALID_UTF8``)."""

    command: str


@dataclass(frozen=True)
class Wait:
    """Flood control holds the queue: ask again in ``seconds``."""

    seconds: float


IrcEvent = ChannelText | CommandReceived | Refused | Undecodable | Wait

#: The queue of every connection with nothing queued, never appended to: an
#: empty deque is 760 bytes, a quarter of an idle client's budget (issue 16).
_IDLE: deque[bytes | Overlong] = deque(maxlen=0)

_TOO_LONG = Refused(ERR_INPUTTOOLONG, ("Input line was too long",))
_NOT_REGISTERED = Refused(ERR_NOTREGISTERED, ("You have not registered",))


class IrcProtocol:
    """One IRC connection: framing, flood clock, registration state, command checks.

    Args:
        commands: the command table, by upper-case command name.
        flood_rate: commands a second a client may send on average; None: no
            flood control.
        flood_burst: commands it may send at once before being paced.
        now: the time the connection was made, on the door's monotonic clock.
    """

    __slots__ = ("allowance", "commands", "framer", "penalty", "penalty_at", "pending",
                 "pending_bytes", "reg", "state")

    def __init__(self, commands: Mapping[str, CommandSpec], *, flood_rate: float | None,
                 flood_burst: int, now: float) -> None:
        self.commands = commands
        self.state = IrcState.REGISTERING
        self.reg = Registration()
        self.framer = IrcFramer()
        self.pending: deque[bytes | Overlong] = _IDLE
        self.pending_bytes = 0
        self.penalty = 1.0 / flood_rate if flood_rate else 0.0
        self.allowance = flood_burst / flood_rate if flood_rate else 0.0
        self.penalty_at = now

    @property
    def registered(self) -> bool:
        return self.state is IrcState.REGISTERED

    @property
    def flooded(self) -> bool:
        """More queued than a client that paces itself ever sends: drop it."""
        return len(self.pending) > RECVQ_LINES or self.pending_bytes > RECVQ_BYTES

    def receive_data(self, data: bytes) -> bool:
        """Queue the complete lines in ``data``; True if there was at least one.

        Half a line is no sign of life: idleness and keep-alive count lines.
        """
        if self.state is IrcState.CLOSED:
            return False
        items = self.framer.feed(data)
        if not items:
            return False
        pending = self.pending
        if pending is _IDLE:
            pending = self.pending = deque()
        for item in items:
            pending.append(item)
            self.pending_bytes += len(item) if isinstance(item, bytes) else 0
        return True

    def receive_eof(self) -> None:
        """The client will say no more: what it said still counts, flood control or not."""
        self.penalty = 0.0

    def complete_registration(self) -> None:
        self.state = IrcState.REGISTERED
        self.reg = REGISTRATION_OVER  # what it said is the user's now

    def close(self) -> None:
        """Quit or dropped: nothing queued is processed any more."""
        self.state = IrcState.CLOSED
        self.pending = _IDLE
        self.pending_bytes = 0

    def next_event(self, now: float) -> IrcEvent | None:
        """The next thing for the door to do, or None when the queue is empty."""
        pending = self.pending
        while pending and self.state is not IrcState.CLOSED:
            if self.penalty:
                if self.penalty_at < now:
                    self.penalty_at = now
                ahead = self.penalty_at - now
                if ahead > self.allowance:
                    return Wait(ahead - self.allowance)
            item = pending.popleft()
            if isinstance(item, bytes):
                self.pending_bytes -= len(item)
                if item.startswith(b"PRIVMSG #") and self.state is IrcState.REGISTERED:
                    fast = self._channel_text(item)
                    if fast is not None:
                        return fast
            event = self._interpret(item)
            if event is not None:
                return event
        if not pending:
            self.pending = _IDLE  # drained: give its memory back
        return None

    def _interpret(self, item: bytes | Overlong) -> IrcEvent | None:
        if item is OVERLONG:
            self.penalty_at += self.penalty
            return _TOO_LONG
        assert isinstance(item, bytes)
        if not item.strip(b" \r"):
            return None  # "Servers and clients SHOULD ignore empty lines."
        try:
            message = parse_message(item)
        except IrcInputTooLong:
            self.penalty_at += self.penalty
            return _TOO_LONG
        except IrcDecodeError as exc:
            self.penalty_at += self.penalty
            return Undecodable(exc.command)
        except IrcSyntaxError as exc:
            self.penalty_at += self.penalty
            return Refused(ERR_UNKNOWNERROR, ("*", f"Malformed message: {exc}"))
        command = message.command
        spec = self.commands.get(command)
        self.penalty_at += self.penalty * (spec.cost if spec else 1.0)
        registered = self.state is IrcState.REGISTERED
        label = message.tags.get("label")
        if spec is None:
            if registered:
                return Refused(ERR_UNKNOWNCOMMAND, (command, "Unknown command"), label)
            return _NOT_REGISTERED
        if not registered and not spec.pre_reg:
            return _NOT_REGISTERED
        if len(message.params) < spec.min_params:
            return Refused(ERR_NEEDMOREPARAMS, (command, "Not enough parameters"), label)
        return CommandReceived(message, spec)

    def _channel_text(self, item: bytes) -> ChannelText | None:
        """``PRIVMSG #channel :text`` exactly, or None for the general parser.

        What the general path would refuse or treat specially is left to it:
        a NUL (400), over :data:`~sockhub.codec.irc.MAX_BODY` bytes (417),
        invalid UTF-8 (IRCv3 UTF8ONLY ``FAIL``), no ``:`` before the text
        (a middle parameter, or 412), empty text (412), several targets
        (Modern IRC, PRIVMSG: "<target>{,<target>}"), and CTCP (``\\x01``:
        ACTION and the +C check). With none of those, the general parser's
        params would be exactly ``(channel, text)`` (Modern IRC, "Parameters":
        the trailing parameter is everything after the ``:``).
        """
        if len(item) > MAX_BODY or 0 in item:  # 0: a NUL byte
            return None
        try:
            line = item.decode("utf-8")
        except UnicodeDecodeError:
            return None
        space = line.find(" ", 9)
        if space < 0 or line[space + 1 : space + 2] != ":":
            return None
        target = line[8:space]
        text = line[space + 2 :]
        if not text or text[0] == "\x01" or "," in target:
            return None
        spec = self.commands.get("PRIVMSG")
        if spec is None or spec.fast is None:
            return None
        self.penalty_at += self.penalty * spec.cost
        return ChannelText(spec, target, text, len(item))
