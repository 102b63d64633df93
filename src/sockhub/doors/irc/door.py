"""IrcDoor: one IRC client of the chat hub, between the engine, the protocol and the service.

Theory of operation
-------------------

The door is three things at once, each kept to its own part of this class:

* a sockhub ``Protocol`` the engine drives: bytes go to the sans-I/O
  :class:`~sockhub.protocols.irc.protocol.IrcProtocol`, whose events the
  door acts on, arming the timers they ask for (flood-control waits, the
  PING keep-alive, the registration deadline) on the injected clock;
* the caller of the command handlers (``registration.py``,
  ``channels.py``, ``queries.py``, listed in ``commands.py``), which it
  passes itself to, and the owner of their output: every line leaves
  through :meth:`IrcDoor.emit`, so that a command carrying an IRCv3
  ``label`` has all of its replies captured and returned as one labeled
  response (a single tagged line, a ``labeled-response`` batch, or an
  ``ACK``);
* a hub ``Member``: :meth:`deliver` renders hub events as IRC lines. An
  event is rendered once per capability profile and the bytes shared by
  every IRC member of a channel, as the line door does.

Keep-alive: after ``irc_ping_interval`` seconds without a line from the
client the door sends ``PING``; if nothing arrives within
``irc_ping_timeout`` more, the client is dropped and its channels see
``QUIT :Ping timeout: N seconds`` (Modern IRC, QUIT: the reason reflects
"the nature of the event which caused it"). A client must also finish
registration within ``registration_timeout``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import ClassVar

from sockhub import metrics
from sockhub.codec.irc import (
    ERR_UNKNOWNERROR,
    IrcMessage,
    escape_tag_value,
    format_time,
    serialize,
)
from sockhub.doors.api import ChatApi
from sockhub.doors.irc import readmarker
from sockhub.doors.irc.accounts import AccountState, nick_changed
from sockhub.doors.irc.accounts import connection_lost as accounts_lost
from sockhub.doors.irc.accounts import settling as accounts_settling
from sockhub.doors.irc.chanserv import CHANSERV, CHANSERV_SOURCE
from sockhub.doors.irc.commands import COMMANDS
from sockhub.doors.irc.monitor import Monitor
from sockhub.doors.irc.monitor import connection_lost as monitor_lost
from sockhub.doors.irc.sessions import joined_elsewhere
from sockhub.errors import ProtocolError
from sockhub.hub import HubError, User
from sockhub.hub.events import (
    AccountChanged,
    AwayChanged,
    BanChanged,
    HubEvent,
    Invited,
    Joined,
    Kicked,
    Message,
    MessageRun,
    ModeChanged,
    NickChanged,
    Parted,
    Private,
    Quit,
    RealnameChanged,
    Signal,
    TopicChanged,
    Wallops,
)
from sockhub.hub.names import fold
from sockhub.hub.sessions import acted_elsewhere, deliver_each
from sockhub.logs import RateLimitedLog
from sockhub.protocols.base import ConnectionInfo, Protocol, Timer
from sockhub.protocols.irc.errors import hub_error_reply
from sockhub.protocols.irc.protocol import (
    ChannelText,
    CommandReceived,
    CommandSpec,
    IrcProtocol,
    IrcState,
    Refused,
    Undecodable,
    Wait,
)
from sockhub.protocols.irc.vocabulary import (
    ACCOUNT_TAG,
    EXTENDED_JOIN,
    MESSAGE_TAGS,
    SERVER_TIME,
    irc_host,
    irc_source,
    render_event,
    render_message,
    render_private,
    render_signal,
)

log = logging.getLogger("sockhub.irc")
#: Commands whose room messages may wait for the loop turn's group commit.
_GROUPED = frozenset({"PRIVMSG", "NOTICE"})
#: Drops are one line per connection, which a flood of connections controls.
_drops = RateLimitedLog(log)
#: Messages delivered to IRC-door users, for ``GET /metrics``.
_counts = metrics.door("irc")

#: One rendering of the last event per capability profile, shared by every IRC
#: member it is delivered to (see LineDoor for the same idea). Module globals,
#: not class attributes: read once per delivery, and a global is the cheaper read.
_cache_event: object = None
_cache: dict[int, bytes] = {}
#: The same for the last run of room messages (deliver_run): joined, and each message.
_run_cache_run: object = None
_run_cache: dict[int, tuple[bytes, list[bytes]]] = {}

#: The text of the 400 a command that failed inside the server gets.
INTERNAL_ERROR = "Internal error; the command was not carried out"


def irc_refusal(reason: str) -> bytes:
    """What an IRC client refused at the door (server full) is told."""
    return serialize("ERROR", (f"Closing Link: {reason}",))


#: The capability sets connections hold, each kept once (bounded: a set is
#: a subset of what CAP LS offers, but their number need not be small).
_CAP_SETS: dict[frozenset[str], frozenset[str]] = {}
_CAP_SETS_MAX = 256


class IrcDoor(Protocol):
    """One IRC client of the chat hub (see docs/irc.md)."""

    #: Its messages are counted under this door in ``GET /metrics``.
    metrics_door: ClassVar[str] = "irc"

    __slots__ = (
        "_batch_seq", "_capture", "_drain_timer", "_eof_held", "_held", "_held_label",
        "_held_later", "_in_command", "_last_seen", "_lost_reason", "_ping_sent",
        "_ping_timer", "_reg_deadline", "acct", "caps", "chat", "host", "irc", "markers",
        "monitor", "profile", "server_name", "user",
    )

    #: Hosted by the web door (:class:`WebSocketIrcDoor`): no STS (a browser cannot
    #: take a TLS port's raw IRC). A class attribute, not a slot of every connection.
    websocket: ClassVar[bool] = False

    # Idleness is "no complete line", not "no byte".
    counts_messages = True

    def __init__(self, chat: ChatApi, commands: dict[str, CommandSpec] = COMMANDS) -> None:
        super().__init__()
        self.chat = chat
        settings = chat.settings
        # Interned: irc_name asks the host name afresh, a string of every client's (issue 16).
        self.server_name = sys.intern(settings.irc_name)
        self.irc = IrcProtocol(commands, flood_rate=settings.flood_rate,
                               flood_burst=settings.flood_burst, now=0.0)
        self.user: User | None = None
        self.caps: frozenset[str] = frozenset()  # the one empty frozenset: no memory
        self.profile = 0
        self.host = "localhost"
        self._drain_timer: Timer | None = None
        self._last_seen = 0.0
        self._ping_sent: float | None = None
        self._ping_timer: Timer | None = None
        #: When an unregistered client is dropped (``registration_timeout``), on the
        #: clock; None once registered or without one. The keep-alive timer checks it:
        #: one wheel timer a connection, not two (issue 16).
        self._reg_deadline: float | None = None
        self._capture: list[bytes] | None = None
        self._batch_seq = 0
        self._lost_reason = "Connection closed"
        #: SASL, NickServ and owned-nick state, made on first use (accounts.account_state).
        self.acct: AccountState | None = None
        #: Read markers of a user without an account: this connection's (readmarker.py),
        #: made on first use.
        self.markers: dict[str, int] | None = None
        #: MONITOR's list, made on first use (monitor.py).
        self.monitor: Monitor | None = None
        # hold(): a command waits for a scrypt; no more commands are taken meanwhile.
        self._held = False
        self._held_later = False  # the command that held has returned: resume ends it
        self._held_label: tuple[str, list[bytes]] | None = None
        self._in_command = False
        self._eof_held = False

    # Engine side ------------------------------------------------------------

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        peer = info.peer
        # Interned: the clients of one address share it (issue 16: idle memory).
        self.host = sys.intern(irc_host(peer.rpartition(":")[0].strip("[]") if ":" in peer
                                        else ""))
        now = self.clock.time()
        self._last_seen = now
        self.irc.penalty_at = now
        settings = self.chat.settings
        if settings.registration_timeout is not None:
            self._reg_deadline = now + settings.registration_timeout
        self._arm_ping(settings.irc_ping_interval)

    def receive_data(self, data: bytes) -> None:
        if not self.irc.receive_data(data):
            return  # half a line (or closed): not a sign of life
        self.active = True
        self._last_seen = self.clock.time()
        self._drain()
        # What flood control could not let through yet waits; too much of it
        # means a client that does not pace itself at all.
        if self.irc.flooded:
            self.drop("Excess Flood")

    def receive_eof(self) -> None:
        # The client will say no more: what it said still counts (a piped
        # "NICK, USER, PRIVMSG, QUIT"), flood control or not.
        self.irc.receive_eof()
        self._drain()
        if self._held:  # answered first (resume), then closed
            self._eof_held = True
            return
        if self.irc.state is not IrcState.CLOSED:
            self._lost_reason = "Connection closed"
            self.close()

    def connection_lost(self) -> None:
        self._held = False  # an answer under way is not heard
        self.irc.close()
        accounts_lost(self)
        monitor_lost(self)
        for timer in (self._drain_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        if self.user is not None:
            self.chat.quit(self.user, self._lost_reason, via=self)
            self.user = None

    def closing_notice(self, reason: str) -> None:
        self.emit(serialize("ERROR", (f"Closing Link: {self.host} ({reason})",)))

    # Input: the protocol's events -------------------------------------------

    def _drain(self) -> None:
        self._drain_timer = None
        irc = self.irc
        # One reading of the clock for the lines read together: the flood
        # clock then counts the time spent on them as not yet passed, which
        # can only pace a client sooner, never let more through.
        now = self.clock.time()
        while irc.state is not IrcState.CLOSED and not self._closing:
            if self._held or (self.user is None and accounts_settling(self)):
                return  # held (hold/resume), or SASL's verdict first (resume_input): in order
            event = irc.next_event(now)
            if event is None:
                return
            if type(event) is ChannelText:  # PRIVMSG #channel :text, the fast path
                self._dispatch_text(event)
                continue
            kind = type(event)
            if kind is CommandReceived:
                assert isinstance(event, CommandReceived)
                self._dispatch(event.message, event.spec)
            elif kind is Refused:
                assert isinstance(event, Refused)
                self.chat.commit()  # replies in command order (see _dispatch)
                if event.label is not None and "labeled-response" in self.caps:
                    # labeled-response: an unknown command's 421 is its response too
                    self._capture = []
                    self.reply(event.numeric, *event.params)
                    captured, self._capture = self._capture, None
                    self._send_labeled(event.label, captured)
                else:
                    self.reply(event.numeric, *event.params)
            elif kind is Undecodable:
                assert isinstance(event, Undecodable)
                # UTF8ONLY (IRCv3): a server that advertises it may answer FAIL.
                self.emit(self.line("FAIL", event.command, "INVALID_UTF8",
                                    "Message rejected: it was not valid UTF-8"))
            else:
                assert isinstance(event, Wait)
                if self._drain_timer is None:
                    self._drain_timer = self.clock.call_later(event.seconds, self._drain)
                return

    def resume_input(self) -> None:
        """Read the lines held while a SASL answer was checked (accounts.settling)."""
        if self._drain_timer is None:
            self._drain()

    def _dispatch(self, message: IrcMessage, spec: CommandSpec) -> None:
        command = message.command
        if command not in _GROUPED:
            # Replies keep the order of the commands: the echo of a PRIVMSG
            # still waiting for its group commit goes out before the PONG
            # (or any reply) to a command sent after it. A flood of messages
            # still shares one commit per loop turn.
            self.chat.commit()
        label = message.tags.get("label") if "labeled-response" in self.caps else None
        if label is not None:
            self._capture = []
        self._in_command = True
        try:
            spec.handler(self, message)
        except Exception as exc:
            self._command_failed(command, exc)
        finally:
            self._in_command = False
            if self._held:  # answered later (hold): so is its labeled response
                self._held_later = True
                if label is not None:
                    self._held_label = (label, self._capture or [])
                self._capture = None
            elif label is not None:
                # The echo of a labeled PRIVMSG belongs to its labeled response:
                # commit now rather than at the end of the loop turn.
                self.chat.commit()
                captured, self._capture = self._capture or [], None
                self._send_labeled(label, captured)

    def _dispatch_text(self, event: ChannelText) -> None:
        """:meth:`_dispatch` for the fast path's ``PRIVMSG #channel :text``.

        The same steps for a line with no tags (so no label): no commit
        first (a room message waits for the loop turn's group commit), and
        the same answers to a handler's failure.
        """
        fast = event.spec.fast
        assert fast is not None
        self._in_command = True
        try:
            fast(self, event.target, event.text, event.size)
        except Exception as exc:
            self._command_failed("PRIVMSG", exc)
        finally:
            self._in_command = False
            if self._held:
                self._held_later = True
                self._capture = None

    def _command_failed(self, command: str, exc: Exception) -> None:
        """Answer a handler's failure (:meth:`_dispatch`, :meth:`_dispatch_text`).

        Called from the ``except`` arm only: the commands that succeed pay no call.
        """
        if isinstance(exc, HubError):
            self.hub_error(command, exc)
        elif isinstance(exc, ProtocolError):  # a handler's own refusal of what it was sent
            self.reply(ERR_UNKNOWNERROR, command, str(exc))
        else:
            # A bug must cost one command, not the connection or the server.
            log.error("irc: %s failed for %s", command, self.info.peer, exc_info=exc)
            self.reply(ERR_UNKNOWNERROR, command, INTERNAL_ERROR)

    def hold(self) -> Callable[[Callable[[], None]], None]:
        """Take no more commands from this client until the returned ``resume(answer)``.

        For a command whose answer waits for a scrypt on the check threads
        (REGISTER, NickServ REGISTER/RESETPASS, OPER): everyone else is served
        meanwhile, and this client's replies keep the order of its commands,
        its labeled response included (the answer is captured under the
        command's label). Commands read meanwhile wait in the protocol's
        queue, and the engine stops reading (``set_reading``).
        """
        self._held = True
        self._held_later = not self._in_command
        self.set_reading(False)

        def resume(answer: Callable[[], None]) -> None:
            if not self._held:
                return  # hung up meanwhile
            self._held = False
            self.set_reading(True)
            if not self._held_later:  # answered at once: still inside the command
                answer()
                return
            label, self._held_label = self._held_label, None
            if label is not None:
                self._capture = label[1]
            try:
                answer()
            except HubError as exc:
                self.hub_error("*", exc)
            except Exception:
                log.exception("irc: a held command failed for %s", self.info.peer)
                self.reply(ERR_UNKNOWNERROR, "*", INTERNAL_ERROR)
            finally:
                if label is not None:
                    self.chat.commit()
                    captured, self._capture = self._capture or [], None
                    self._send_labeled(label[0], captured)
            self._drain()
            if self._eof_held and not self._held:
                self._eof_held = False
                if self.irc.state is not IrcState.CLOSED:
                    self._lost_reason = "Connection closed"
                    self.close()
            self.wake()

        return resume

    def hub_error(self, command: str, exc: HubError, channel: str = "*") -> None:
        """Answer a refusal of the hub with its standard numeric (protocols/irc/errors.py)."""
        refusal = hub_error_reply(command, exc, channel)
        self.reply(refusal.numeric, *refusal.params)

    # Registration, keep-alive, leaving --------------------------------------

    def registered(self, user: User) -> None:
        """Registration completed as ``user``: the deadline no longer applies."""
        self.user = user
        self.irc.complete_registration()
        self._reg_deadline = None  # the keep-alive timer may wake at it still: it pings then

    def _arm_ping(self, delay: float) -> None:
        """The keep-alive check in ``delay`` seconds, or at the registration deadline if sooner."""
        deadline = self._reg_deadline
        if deadline is not None:
            delay = min(delay, deadline - self.clock.time())
        # The door itself is the callback (__call__): a bound method held by the
        # timer was 64 B of every idle client (issue 16).
        self._ping_timer = self.clock.call_later(delay, self)

    def __call__(self) -> None:
        """The keep-alive timer fired (:meth:`_arm_ping`)."""
        self._ping_check()

    def _ping_check(self) -> None:
        if self.irc.state is IrcState.CLOSED:
            return
        settings = self.chat.settings
        now = self.clock.time()
        deadline = self._reg_deadline
        # (A microsecond's grace: the timer was set for the deadline less the time then.)
        if deadline is not None and now >= deadline - 1e-6:
            self._reg_deadline = None
            if self.irc.state is IrcState.REGISTERING:
                self.drop("Registration timed out")
                return
        if self._ping_sent is not None and self._last_seen <= self._ping_sent:
            waited = now - self._ping_sent
            if waited >= settings.irc_ping_timeout:
                self.drop(f"Ping timeout: {round(settings.irc_ping_timeout)} seconds")
                return
            self._arm_ping(settings.irc_ping_timeout - waited)
            return
        self._ping_sent = None
        quiet = now - self._last_seen
        if quiet < settings.irc_ping_interval:
            self._arm_ping(settings.irc_ping_interval - quiet)
            return
        self._ping_sent = now
        self.emit(serialize("PING", (self.server_name,)))
        self.wake()
        self._arm_ping(settings.irc_ping_timeout)

    def disconnect(self, reason: str) -> None:
        """The service ended this connection (KILL); it has already told the others."""
        if self.irc.state is IrcState.CLOSED:
            return
        self.user = None
        self.emit(serialize("ERROR", (f"Closing Link: {self.host} ({reason})",)))
        self.irc.close()
        self.wake()
        self.close()

    def drop(self, reason: str) -> None:
        """Disconnect with ``ERROR`` and tell the client's channels why."""
        if self.irc.state is IrcState.CLOSED:
            return
        _drops.log("irc: dropped {count} more clients", "irc: dropped %s (%s): %s",
                   self.info.peer, self.user.nick if self.user is not None else self.irc.reg.nick,
                   reason, detail=reason)
        if self.user is not None:
            self.chat.quit(self.user, reason, via=self)
            self.user = None
        self.emit(serialize("ERROR", (f"Closing Link: {self.host} ({reason})",)))
        self.irc.close()
        self.wake()
        self.close()

    # Output -----------------------------------------------------------------

    @property
    def nick(self) -> str:
        """The client's nick in replies: ``*`` until registered (Modern IRC, numerics)."""
        return self.user.nick if self.user is not None else "*"

    def emit(self, data: bytes) -> None:
        """Queue one or more serialized lines (captured while a label is being answered)."""
        if self._capture is not None:
            self._capture.append(data)
        else:
            self.send(data)

    def _tags(self) -> dict[str, str] | None:
        return {"time": format_time(self.clock.wall())} if self.profile & SERVER_TIME else None

    def line(self, command: str, *params: str) -> bytes:
        """A line from the server (its name as the source)."""
        return serialize(command, params, source=self.server_name, tags=self._tags())

    def reply(self, numeric: str, *params: str) -> None:
        """A numeric reply: ``:server NNN <client> params...``."""
        self.emit(serialize(numeric, (self.nick, *params), source=self.server_name,
                            tags=self._tags()))

    def send_from(self, source: str, command: str, *params: str,
                  tags: dict[str, str] | None = None) -> None:
        all_tags = {**(self._tags() or {}), **(tags or {})}
        self.emit(serialize(command, params, source=source, tags=all_tags or None))

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
        wanted = frozenset(caps)
        # Clients mostly ask for the same few sets: share them (a set is
        # 216 bytes a connection, 10,000 idle clients; issue 16).
        shared = _CAP_SETS.get(wanted)
        if shared is None:
            shared = wanted
            if len(_CAP_SETS) < _CAP_SETS_MAX:
                _CAP_SETS[wanted] = wanted
        self.caps = shared
        profile = 0
        if "server-time" in self.caps:
            profile |= SERVER_TIME
        if "message-tags" in self.caps:
            profile |= MESSAGE_TAGS
        if "extended-join" in self.caps:
            profile |= EXTENDED_JOIN
        if "account-tag" in self.caps:
            profile |= ACCOUNT_TAG
        self.profile = profile

    # Hub side (Member) ------------------------------------------------------

    def marker_moved(self, target: str, ms: int) -> None:
        """MarkerWatcher: the account's marker moved on another connection."""
        if not self._closing:
            readmarker.send_marker(self, target, ms)
            self.wake()

    def source_of(self, nick: str) -> str:
        """``nick!user@host`` of a user, or the bare nick if they are gone."""
        user = self.chat.find_user(nick)
        if user is None:
            return CHANSERV_SOURCE if nick == CHANSERV else nick  # it gives ops by account
        return irc_source(user.nick, user.username, user.address)

    def deliver(self, event: HubEvent) -> None:
        me = self.user
        if me is None or self._closing:
            return
        if type(event) is Message:  # the per-recipient path: no more than it needs
            # The hub puts the sender's own registered nick in the event, and
            # nicks are unique case-insensitively: an exact compare suffices
            # (and saves two case-folds per delivery).
            if (event.nick == me.nick and "echo-message" not in self.caps
                    and not acted_elsewhere(event, self)):
                return  # another connection's own message is shown (multiclient)
            # The per-recipient path: the shared rendering and emit(), inlined.
            data = _cache.get(self.profile) if event is _cache_event else None
            if data is None:
                data = self._shared_message(event)
            _counts.messages_out += 1
            capture = self._capture
            if capture is not None:
                capture.append(data)
                self.wake()
                return
            out = self._outgoing
            out.append(data)
            # Output already queued has its flush scheduled (or is inside
            # receive_data, which the engine flushes): wake once per turn.
            if len(out) == 1:
                self.wake()
            return
        kind = type(event)
        if kind is Private:
            assert isinstance(event, Private)
            self._deliver_private(event, me)
        elif kind is Signal:
            assert isinstance(event, Signal)
            self._deliver_signal(event, me)
        elif kind is NickChanged:
            assert isinstance(event, NickChanged)
            user = self.chat.find_user(event.new)
            old = event.old
            if user is not None:
                old = f"{event.old}!{user.username or event.old}@{irc_host(user.address)}"
            self.emit(self._shared(event, event.old, source=old))
            if fold(event.new) == me.key:
                nick_changed(self, me)
        elif kind is AccountChanged:
            assert isinstance(event, AccountChanged)
            if "account-notify" in self.caps and fold(event.nick) != me.key:
                self.send_from(self.source_of(event.nick), "ACCOUNT", event.account or "*")
        elif kind is AwayChanged:
            assert isinstance(event, AwayChanged)
            if "away-notify" in self.caps and fold(event.nick) != me.key:
                params = (event.message,) if event.message else ()
                self.send_from(self.source_of(event.nick), "AWAY", *params)
        elif kind is RealnameChanged:
            assert isinstance(event, RealnameChanged)
            if "setname" in self.caps:  # IRCv3 setname: never to clients without it
                self.send_from(self.source_of(event.nick), "SETNAME", event.realname)
        elif kind is Wallops:
            assert isinstance(event, Wallops)
            self.send_from(self.source_of(event.nick), "WALLOPS", event.text)
        elif kind is Invited:
            assert isinstance(event, Invited)
            inviter = self.chat.find_user(event.by)
            account = inviter.account if inviter is not None else None
            tags = {"account": account} if account and self.profile & ACCOUNT_TAG else None
            self.send_from(self.source_of(event.by), "INVITE", event.nick, event.room,
                           tags=tags)
        elif kind is Quit:
            assert isinstance(event, Quit)
            self.emit(self._shared(event, event.nick))
        elif isinstance(event, Kicked | BanChanged | ModeChanged):
            self.emit(self._shared(event, event.by))
        else:
            assert isinstance(event, Joined | Parted | TopicChanged)
            self.emit(self._shared(event, event.nick))
            if kind is Joined and fold(event.nick) == me.key:
                assert isinstance(event, Joined)
                if acted_elsewhere(event, self):  # another connection joined: as JOIN replies
                    joined_elsewhere(self, event.room)
            elif kind is Joined and "away-notify" in self.caps and fold(event.nick) != me.key:
                # away-notify: "when a user joins and has an away message set".
                joiner = self.chat.find_user(event.nick)
                if joiner is not None and joiner.away:
                    self.send_from(self.source_of(joiner.nick), "AWAY", joiner.away)
        self.wake()

    def _shared(self, event: HubEvent, actor: str, *, source: str | None = None) -> bytes:
        global _cache_event, _cache
        if event is not _cache_event:
            _cache_event = event
            _cache = {}
        profile = self.profile
        data = _cache.get(profile)
        if data is None:
            user = self.chat.find_user(actor)
            realname = user.realname if user is not None else ""
            account = user.account if user is not None else None
            bot = user is not None and user.bot
            data = render_event(event, source or self.source_of(actor), profile,
                                realname=realname, account=account, bot=bot)
            _cache[profile] = data
        return data

    def _shared_message(self, event: Message) -> bytes:
        """:meth:`_shared` for a room message: once per message and profile.

        The sender as the message recorded them (they may be gone already);
        the live user is looked up only for the tags that name their account
        or bot mode (IRCv3 account-tag, bot-mode), which the profile may not have.
        """
        global _cache_event, _cache
        if event is not _cache_event:
            _cache_event = event
            _cache = {}
        profile = self.profile
        data = _cache[profile] = self._render_message(event, profile)
        return data

    def _render_message(self, event: Message, profile: int) -> bytes:
        account = None
        bot = False
        if profile & (ACCOUNT_TAG | MESSAGE_TAGS):
            user = self.chat.find_user(event.nick)
            if user is not None:
                account, bot = user.account, user.bot
        return render_message(event, irc_source(event.nick, event.username, event.address),
                              profile, account=account, bot=bot)

    def deliver_run(self, run: MessageRun) -> None:
        """Several room messages of one commit in one room (the hub's fan-out): one piece.

        Each message rendered once per capability profile, as
        :meth:`deliver` renders it, and the run joined once per profile; a
        recipient who sent some of the run and has no echo-message gets
        the others (the same rule as :meth:`deliver`), joined for them alone.
        """
        me = self.user
        if me is None or self._closing:
            return
        if self._capture is not None:  # inside a labeled command: deliver() captures each
            deliver_each(self, run)
            return
        global _run_cache_run, _run_cache
        if run is not _run_cache_run:
            _run_cache_run, _run_cache = run, {}
        profile = self.profile
        rendered = _run_cache.get(profile)
        if rendered is None:
            try:
                parts = [self._render_message(message, profile) for message in run.messages]
            except Exception:  # one message that fails costs only itself, as one by one
                deliver_each(self, run)
                return
            rendered = _run_cache[profile] = (b"".join(parts), parts)
        if me.nick in run.senders and "echo-message" not in self.caps:
            mine = me.nick
            kept = [part for message, part in zip(run.messages, rendered[1], strict=True)
                    if message.nick != mine or acted_elsewhere(message, self)]
            if not kept:
                return
            data, count = b"".join(kept), len(kept)
        else:
            data, count = rendered[0], len(run.messages)
        _counts.messages_out += count
        out = self._outgoing
        out.append(data)
        if len(out) == 1:  # as in deliver(): one wake per turn
            self.wake()

    def _deliver_private(self, event: Private, me: User) -> None:
        to_me = fold(event.target) == me.key
        from_me = fold(event.sender) == me.key
        echo = "echo-message" in self.caps or acted_elsewhere(event, self)
        source = self.source_of(event.sender)
        sender = self.chat.find_user(event.sender)
        account = sender.account if sender is not None else None
        bot = sender is not None and sender.bot
        if from_me and echo and to_me:
            # A message to oneself: the echo (the command's response, which a
            # label marks) and the delivery, which is not a response and so
            # goes out unlabeled (labeled-response; ergo does the same).
            self.send(render_private(event, source, self.profile, account=account, bot=bot))
            _counts.messages_out += 1
        if to_me or (from_me and echo):
            self.emit(render_private(event, source, self.profile, account=account, bot=bot))
            _counts.messages_out += 1

    def _deliver_signal(self, event: Signal, me: User) -> None:
        """TAGMSG, to clients with ``message-tags`` only: as a private message,
        a TAGMSG to oneself comes twice with ``echo-message`` (echo, delivery)."""
        if "message-tags" not in self.caps:
            return
        from_me = fold(event.sender) == me.key
        echo = "echo-message" in self.caps or acted_elsewhere(event, self)
        sender = self.chat.find_user(event.sender)
        data = render_signal(event, self.source_of(event.sender), self.profile,
                             bot=sender is not None and sender.bot)
        if event.room is not None:
            if not from_me or echo:
                self.emit(data)
            return
        to_me = fold(event.target or "") == me.key
        if from_me and echo and to_me:
            self.send(data)  # the delivery, unlabeled (see _deliver_private)
        if to_me or (from_me and echo):
            self.emit(data)


def _add_tag(line: bytes, tag: bytes) -> bytes:
    if line.startswith(b"@"):
        return b"@" + tag + b";" + line[1:]
    return b"@" + tag + b" " + line


def _has_batch(line: bytes) -> bool:
    if not line.startswith(b"@"):
        return False
    tags = line[1 : line.find(b" ")]
    return any(t.startswith(b"batch=") for t in tags.split(b";"))


class WebSocketIrcDoor(IrcDoor):
    """An IRC client of the web door, over a WebSocket (doors/web/door.py): no STS."""

    __slots__ = ()

    websocket = True
