"""The line door: one nc/telnet user of the chat hub (docs/chat-line.md).

It parses lines with ``protocols.chat_line``, calls the chat service
through :class:`~sockhub.doors.api.ChatApi`, and renders the hub's events
back into lines, every user-supplied string made visible
(``chat_line.visible``) so no one's terminal receives another's control
codes. Flood control is a token bucket that drops lines over it and then
disconnects; a client that picks no nick within ``registration_timeout``
is told and closed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar

from sockhub import metrics
from sockhub._version import __version__
from sockhub.codec.lines import encode_line
from sockhub.doors.api import OPER_ATTEMPTS, ChatApi, LoginResult
from sockhub.doors.flood import FloodGuard, Verdict
from sockhub.doors.owned import NickGuard, regain, watch_nick
from sockhub.hub import HubError, User
from sockhub.hub.events import (
    AccountChanged,
    HubEvent,
    Joined,
    Kicked,
    Message,
    MessageRun,
    NickChanged,
    Parted,
    Private,
    RealnameChanged,
    Signal,
    Wallops,
)
from sockhub.hub.names import HISTORY_MAX, fold
from sockhub.hub.sessions import acted_elsewhere, deliver_each, members_of
from sockhub.logs import RateLimitedLog
from sockhub.protocols.base import ConnectionInfo, LineProtocol, Timer
from sockhub.protocols.chat_line import (
    CTCP_ANSWERED,
    Command,
    CommandError,
    help_lines,
    parse_ctcp,
    parse_line,
    render,
    stamp,
    visible,
)

log = logging.getLogger("sockhub.chat")
#: Lines any client can cause at will, logged at a bounded rate.
_floods = RateLimitedLog(log)
#: Messages delivered to line-door users, for ``GET /metrics``.
_counts = metrics.door("line")


#: The one rendering cache of the line doors: the last event rendered for
#: every viewer alike (not a private message) and its bytes, so that a
#: fan-out to 500 members renders once. ``_rendered_message`` is that event
#: when it is a room Message (else None): nothing in :meth:`LineDoor.deliver`
#: but queueing the bytes concerns one, so the rest of its room skip the
#: checks other events need. Module globals, not class attributes: fewer
#: loads per recipient, and a global's is the cheaper.
_rendered_event: object = None
_rendered_message: Message | None = None
_rendered_bytes = b""


#: The same for the last run of room messages (deliver_run): its lines, joined.
_rendered_run: object = None
_rendered_run_bytes = b""


def _rendered(event: HubEvent, data: bytes) -> None:
    global _rendered_event, _rendered_message, _rendered_bytes
    _rendered_event, _rendered_bytes = event, data
    _rendered_message = event if type(event) is Message else None


class LineDoor(LineProtocol):
    """One nc/telnet user of the chat hub (see docs/chat-line.md)."""

    #: Its messages are counted under this door in ``GET /metrics``.
    metrics_door: ClassVar[str] = "line"
    #: It shows every message of its rooms: leaving one moves the account's read
    #: marker to the newest message (docs/accounts.md, "Read markers").
    marks_read: ClassVar[bool] = True

    __slots__ = (
        "_held",
        "_login_pending",
        "_login_timer",
        "_reg_timer",
        "chat",
        "current",
        "flood",
        "guard",
        "oper_failures",
        "queued",
        "user",
    )

    def __init__(self, chat: ChatApi) -> None:
        super().__init__()
        self.chat = chat
        self.user: User | None = None
        self.current: str | None = None
        self.flood: FloodGuard | None = None
        self.oper_failures = 0
        self._reg_timer: Timer | None = None
        self._login_timer: Timer | None = None
        self._login_pending = False
        self.guard: NickGuard | None = None
        #: A command waits for a scrypt (:meth:`hold`): lines read meanwhile wait in
        #: ``queued``, an end of file as None after them. The list is made by
        #: the first hold: an idle client that never held has none (56 B, issue 16).
        self._held = False
        self.queued: list[str | None] | None = None

    # Engine side --------------------------------------------------------------

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        settings = self.chat.settings
        if settings.flood_rate is not None:
            self.flood = FloodGuard(settings.flood_rate, settings.flood_burst, self.clock.time())
        self.info_line(f"welcome to {settings.line_name} chat; /help lists commands")
        self.info_line("enter a nick (or an empty line for a guest nick):")
        if settings.registration_timeout is not None:
            self._reg_timer = self.clock.call_later(
                settings.registration_timeout, self._registration_expired
            )

    def receive_eof(self) -> None:
        if self._held:  # "/oper ..., /quit" piped: answered first, then closed
            assert self.queued is not None  # made by hold()
            self.queued.append(None)
            return
        super().receive_eof()

    def connection_lost(self) -> None:
        self._held = False  # an answer under way is not heard
        self.queued = None
        self._login_pending = False  # an identify under way is not heard
        for timer in (self._login_timer, self.guard):
            if timer is not None:
                timer.cancel()
        if self.user is not None:
            self.chat.quit(self.user, "connection lost", via=self)
            self.user = None

    def closing_notice(self, reason: str) -> None:
        self.info_line(reason)

    def disconnect(self, reason: str) -> None:
        """Closed by the server (KILL, NickServ GHOST): say why, then hang up."""
        self.info_line(f"disconnected: {reason}")
        self.close()
        self.wake()

    def _registration_expired(self) -> None:
        if self.user is None and not self._closing:
            timeout = self.chat.settings.registration_timeout
            log.info("chat: %s chose no nick in %g seconds; closed", self.info.peer, timeout)
            self.send_error(f"no nick chosen within {timeout:g} seconds; closing")
            self.close()

    # Hub side (Member) -----------------------------------------------------

    def deliver(self, event: HubEvent) -> None:
        if event is _rendered_message:  # a room message the fan-out has rendered
            if not self._closing:
                out = self._outgoing
                out.append(_rendered_bytes)  # send(), minus its checks
                _counts.messages_out += 1
                if len(out) == 1:  # more queued already: its flush is scheduled (see IrcDoor)
                    self.wake()
            return
        kind = type(event)
        if self._closing or kind is Signal or kind is AccountChanged \
                or kind is RealnameChanged or kind is Wallops:  # nothing to show
            return
        if kind is NickChanged and self.user is not None:
            assert isinstance(event, NickChanged)
            if fold(event.new) == self.user.key:
                self._watch_nick()
        if kind is Private:
            assert self.user is not None
            data = encode_line(render(event, self.user.nick))
            _counts.messages_out += 1
            assert isinstance(event, Private)
            self._ctcp_request(event)
        elif event is _rendered_event:  # private messages depend on the viewer: not cached
            data = _rendered_bytes
        else:
            data = encode_line(render(event, ""))
            _rendered(event, data)  # a Message: the rest of the room takes the fast path above
        if kind is Message:
            _counts.messages_out += 1
        out = self._outgoing
        out.append(data)  # send(), minus its checks: done above
        if len(out) == 1:  # more queued already: its flush is scheduled (see IrcDoor)
            self.wake()
        if kind is Kicked or kind is Parted or kind is Joined:
            self._own_move(event)  # type: ignore[arg-type]  # narrowed by the kinds above

    def deliver_run(self, run: MessageRun) -> None:
        """Several room messages of one commit in one room: their lines, joined once, queued.

        Every line user sees a room message alike, their own too, so the
        run is rendered once for the whole fan-out (as :meth:`deliver` renders a message).
        """
        if self._closing:
            return
        global _rendered_run, _rendered_run_bytes
        if run is not _rendered_run:
            try:
                _rendered_run_bytes = b"".join([encode_line(render(message, ""))
                                                for message in run.messages])
            except Exception:  # one message that fails costs only itself, as one by one
                deliver_each(self, run)
                return
            _rendered_run = run
        _counts.messages_out += len(run.messages)
        out = self._outgoing
        out.append(_rendered_run_bytes)
        if len(out) == 1:  # as in deliver(): one wake per turn
            self.wake()

    def _own_move(self, event: Kicked | Parted | Joined) -> None:
        """Follow this user's rooms when a kick or another connection moves them."""
        user = self.user
        if user is None or fold(event.nick) != user.key:
            return
        if type(event) is Kicked:
            self._left_room(event.room)
        elif isinstance(event, Parted | Joined) and acted_elsewhere(event, self):
            if type(event) is Parted:
                self._left_room(event.room)
            elif self.current is None:
                self.current = event.room

    def _ctcp_request(self, event: Private) -> None:
        """Answer a CTCP VERSION, PING or TIME sent to this user, as their client would.

        The answer is a NOTICE (CTCP: replies are NOTICEs, so two programs
        never answer each other for ever), sent on the next turn of the loop:
        this runs inside the hub's delivery of ``event``. Only private
        requests are answered; a room's would make every line user answer.
        """
        assert self.user is not None
        if event.notice or event.action or fold(event.target) != self.user.key:
            return
        ctcp = parse_ctcp(event.text)
        if ctcp is None or ctcp[0] not in CTCP_ANSWERED or fold(event.sender) == self.user.key:
            return
        command, args = ctcp
        if command == "VERSION":
            args = f"sockhub {__version__} line door (a plain-text terminal)"
        elif command == "TIME":
            args = datetime.fromtimestamp(self.clock.wall(), UTC).strftime(
                "%a, %d %b %Y %H:%M:%S +0000")
        answer = f"\x01{command} {args}\x01" if args else f"\x01{command}\x01"
        user, sender = self.user, event.sender

        def send() -> None:
            if self.user is user and not self._closing:
                with contextlib.suppress(HubError):  # the asker left meanwhile
                    self.chat.private(user, sender, answer, notice=True)
        self.clock.call_later(0, send)

    # Lines -------------------------------------------------------------------

    def info_line(self, text: str) -> None:
        self.send_line(f"-- {text}")

    def send_line(self, text: str) -> None:
        """Queue one line, made visible: it may quote someone's text (chat_line.visible)."""
        self.send(encode_line(visible(text)))

    def line_received(self, line: str) -> None:
        if self._held:
            assert self.queued is not None  # made by hold()
            self.queued.append(line)
            return
        if self.flood is not None:
            verdict = self.flood.check(self.clock.time())
            if verdict != "pass":
                self._flooding(verdict)
                return
        if self.user is not None and not line.startswith("/"):
            try:  # a message to the room, the commonest line: parse_line's Command skipped
                self._cmd_say(line)
            except HubError as exc:
                self.send_error(str(exc))
            return
        try:
            command = parse_line(line)
        except CommandError as exc:
            self.send_error(str(exc))
            return
        try:
            if self.user is None:
                self._register(command)
            else:
                self.COMMANDS[command.name](self, *command.args)
        except HubError as exc:
            self.send_error(str(exc))

    def hold(self) -> Callable[[Callable[[], None]], None]:
        """Take no more of this client's lines until the returned ``resume(answer)``.

        For a command whose answer waits for a scrypt on the check threads
        (register, reset, /oper): everyone else is served meanwhile, and this
        client's own replies stay in the order of its commands. Lines already
        read wait in :attr:`queued` (one read's worth: the engine stops reading,
        ``set_reading``); ``resume`` says the answer, then takes them up.
        """
        self._held = True
        if self.queued is None:
            self.queued = []
        self.set_reading(False)

        def resume(answer: Callable[[], None]) -> None:
            if not self._held:
                return  # hung up meanwhile
            self._held = False
            self.set_reading(True)
            try:
                answer()
            except HubError as exc:
                self.send_error(str(exc))
            except Exception:  # a bug costs this answer, not the client's later lines
                log.exception("chat: a held command failed for %s", self.info.peer)
                self.send_error("internal error")
            queued = self.queued
            while queued and not self._held and not self._closing:
                line = queued.pop(0)
                if line is None:  # the end of file read while held: now it counts
                    super(LineDoor, self).receive_eof()
                else:
                    self.line_received(line)
            self.wake()

        return resume

    def _flooding(self, verdict: Verdict) -> None:
        if verdict == "warn":
            self.send_error("flood control: you are sending too fast; line dropped, slow down")
        elif verdict == "disconnect":
            self.send_error("flood control: disconnected for flooding")
            _floods.log("flood: disconnected {count} more clients",
                        "flood: disconnected %s", self.info.peer)
            self.close()

    # Before a nick is chosen ----------------------------------------------

    def _register(self, command: Command) -> None:
        if command.name == "say":
            nick = command.args[0].strip() or self.chat.guest_nick()
        elif command.name == "nick":
            nick = command.args[0]
        elif command.name in ("quit", "help"):
            self.COMMANDS[command.name](self, *command.args)
            return
        elif command.name == "identify" and len(command.args) == 2:
            # A password on connect: log in, then take the account's name.
            self._identify(command.args[0], command.args[1], arriving=True)
            return
        else:
            self.send_error("choose a nick first: type it, or /nick NAME")
            return
        self._arrive(nick)

    def _arrive(self, nick: str, account: str | None = None, generation: str = "") -> None:
        if account is not None and not self.chat.account_generation(account) == generation:
            raise HubError("account_changed", f"account {account} was dropped or registered "
                           "again meanwhile; log in again")
        # The address interned, as the IRC door's host is: the users of one
        # address (a NAT, a proxy, a load test) share the string (issue 16).
        user = self.chat.register(nick, self, address=sys.intern(self._host),
                                  secure=self.info.transport == "tls", account=account)
        self.user = user
        if account is not None:
            self.chat.log_in(user, account)
        if self._reg_timer is not None:
            self._reg_timer.cancel()
            self._reg_timer = None
        self.info_line(f"you are {user.nick}" + (f", logged in as {account}" if account else ""))
        self._watch_nick()
        if user.rooms:  # joined this account's user, already present (multiclient)
            count = len(members_of(user.member))
            self.info_line(f"also connected elsewhere ({count} connections); in "
                           + " ".join(room.name for room in user.rooms.values()))
            self._cmd_join(list(user.rooms.values())[-1].name)
            return
        self._cmd_join(self.chat.default_room)

    @property
    def _host(self) -> str:
        peer = self.info.peer
        return peer.rpartition(":")[0].strip("[]") if ":" in peer else peer

    def _notice(self, text: str) -> None:
        self.info_line(text)
        self.wake()

    def _watch_nick(self) -> None:
        """This user holds a new nick: watch it if it is someone's (doors/owned.py)."""
        assert self.user is not None
        self.guard = watch_nick(self.guard, self.chat, self.user, self._nick_guard)

    def _nick_guard(self) -> NickGuard:
        return NickGuard(self.chat, self.clock, self._notice, "/identify PASSWORD",
                         busy=lambda: self._login_pending)

    # Accounts (docs/accounts.md) ----------------------------------------------

    def _cmd_register(self, *args: str) -> None:
        user = self.user
        assert user is not None
        if len(args) == 2 and not user.is_oper:
            self.send_error("usage: /register PASSWORD (it registers your nick)")
            return
        name, password = (args[0], args[1]) if len(args) == 2 else (user.nick, args[0])
        resume = self.hold()

        def registered(result: str | HubError) -> None:
            if isinstance(result, HubError):
                raise result
            if len(args) == 2:
                self.info_line(f"account {result} registered")
                return
            if self.user is user:
                self.chat.log_in(user, result)
                self.info_line(f"account {result} registered; you are logged in")

        self.chat.account_register_later(user, name, password, address=self.info.peer,
                                         then=lambda result: resume(lambda: registered(result)))

    def _cmd_identify(self, *args: str) -> None:
        assert self.user is not None
        name, password = (args[0], args[1]) if len(args) == 2 else (self.user.nick, args[0])
        self._identify(name, password, arriving=False)

    def _identify(self, name: str, password: str, *, arriving: bool,
                  then: Callable[[str], None] | None = None) -> None:
        """Check a password off the loop (``account_identify_later``), then act on it."""
        if self._login_timer is not None or self._login_pending:
            self.send_error("wait for the answer to your last attempt")
            return
        self._login_pending = True
        user = self.user

        def checked(result: LoginResult) -> None:
            if not self._login_pending or self.user is not user:
                return  # hung up (or arrived otherwise) meanwhile
            self._login_pending = False
            try:
                self._identified(result, arriving=arriving, then=then)
            except HubError as exc:
                self.send_error(str(exc))
            self.wake()

        self.chat.account_identify_later(name, password, address=self.info.peer, then=checked)

    def _identified(self, result: LoginResult, *, arriving: bool,
                    then: Callable[[str], None] | None) -> None:
        if result.refusal is not None:
            self.send_error(result.refusal)
            return
        if result.account is None:
            self._login_timer = self.clock.call_later(result.delay, self._wrong_password)
            return
        if then is not None:
            then(result.account)
        elif arriving:
            self._arrive(result.account, result.account, generation=result.generation)
        else:
            assert self.user is not None
            self.chat.log_in(self.user, result.account, generation=result.generation)
            self.info_line(f"you are logged in as {result.account}")

    def _wrong_password(self) -> None:
        self._login_timer = None
        self.send_error("wrong account name or password")
        self.wake()

    def _cmd_regain(self, *args: str) -> None:
        """REGAIN (NickServ's): the owner takes their nick back at once (doors/owned.py)."""
        account = self._logged_in()
        if account is not None:
            assert self.user is not None
            self.info_line(regain(self.chat, self.user, args[0] if args else account))

    def _cmd_logout(self) -> None:
        assert self.user is not None
        if self.user.account is None:
            self.send_error("you are not logged in")
            return
        self.chat.log_out(self.user)
        self.info_line("you are logged out")
        self._watch_nick()

    def _logged_in(self) -> str | None:
        assert self.user is not None
        if self.user.account is None:
            self.send_error("log in to an account first: /identify PASSWORD")
        return self.user.account

    def _cmd_password(self, old: str, new: str) -> None:
        account = self._logged_in()
        if account is not None:
            user = self.user
            assert user is not None

            def change(_: str) -> None:
                # Told later, as the identify before it is: no hold here.
                self.chat.account_set_password_later(user, new, then=changed)

            def changed(error: HubError | None) -> None:
                if self.user is not user:
                    return
                if error is not None:
                    self.send_error(str(error))
                else:
                    self.info_line(f"the password of {account} is changed")
                self.wake()

            self._identify(account, old, arriving=False, then=change)

    def _cmd_drop(self, password: str) -> None:
        account = self._logged_in()
        if account is not None:
            user = self.user
            assert user is not None

            def drop(_: str) -> None:
                self.chat.account_drop(user)
                self.info_line(f"account {account} is dropped")

            self._identify(account, password, arriving=False, then=drop)

    def _cmd_resetpass(self, name: str, password: str) -> None:
        assert self.user is not None
        resume = self.hold()

        def done(error: HubError | None) -> None:
            if error is not None:
                raise error
            self.info_line(f"the password of {name} is set")

        self.chat.account_reset_later(self.user, name, password,
                                      then=lambda error: resume(lambda: done(error)))

    # Commands ----------------------------------------------------------------

    def _cmd_say(self, text: str) -> None:
        if not text or text.isspace():  # an empty or blank line: as if Enter alone
            return
        if self.current is None:
            self.send_error("you are in no room; /join #ROOM first")
            return
        assert self.user is not None
        self.chat.say(self.user, self.current, text, via=self)

    def _cmd_me(self, text: str) -> None:
        if self.current is None:
            self.send_error("you are in no room; /join #ROOM first")
            return
        assert self.user is not None
        self.chat.say(self.user, self.current, text, action=True, via=self)

    def _cmd_nick(self, nick: str) -> None:
        assert self.user is not None
        self.chat.rename(self.user, nick)

    def _cmd_join(self, room: str, password: str | None = None) -> None:
        user = self.user
        assert user is not None
        existing = user.rooms.get(fold(room))
        if existing is not None:  # already there: make it the current room
            self.current = existing.name
            self.info_line(f"talking in {existing.name}")
            return
        self.chat.join(user, room, password=password, via=self)
        joined = user.rooms[fold(room)]
        self.current = joined.name
        if joined.topic:
            self.info_line(f"topic of {joined.name}: {joined.topic}")
        if self.chat.is_quiet(joined):  # a big room: its operators, not everyone
            ops = sorted(u.nick for u in joined.operators_present())
            self.info_line(f"in {joined.name}: {len(joined.members)} members; operators: "
                           f"{' '.join(ops) or 'none'} (/who {joined.name} lists everyone)")
        else:
            self.info_line(
                f"in {joined.name}: {' '.join(sorted(u.nick for u in joined.members.values()))}"
            )
        self._send_history(joined.name, self.chat.settings.history, joining=True)

    def _send_history(self, room: str, limit: int, *, always_end: bool = False,
                      joining: bool = False) -> None:
        user = self.user
        if joining and user is not None and user.account is not None:
            # Logged in: what the account has not read, wherever it read the
            # rest (IRC's MARKREAD, another line or web session), and the
            # marker moves past what is shown here.
            messages = self.chat.replay(user, room, limit) if limit > 0 else []
            if messages:
                try:
                    self.chat.mark_read(user, room, math.floor(messages[-1].ts * 1000))
                except HubError as exc:  # a Redis bus's markers unreachable: said, shown anyway
                    self.info_line(f"read marker not moved: {exc}")
        else:
            messages = self.chat.history(room, limit) if limit > 0 else []
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
        self.chat.part(self.user, room, reason, via=self)
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
        me = self.user.key if self.user is not None else ""
        rooms = sorted((r for r in self.chat.rooms() if not r.hidden or me in r.members),
                       key=lambda r: r.key)  # secret (+s/+p) rooms: members only
        self.info_line(f"{len(rooms)} room(s):")
        for room in rooms:
            topic = f": {room.topic}" if room.topic else ""
            self.info_line(f"  {room.name} ({len(room.members)}){topic}")

    def _cmd_who(self, room: str | None = None) -> None:
        name = room or self.current
        if name is None:
            self.send_error("usage: /who #ROOM")
            return
        found = self.chat.find_room(name)
        if found is None:
            raise HubError("no_such_room", f"no such room: {name}")
        nicks = sorted(
            ("@" if key in found.operators else "") + user.nick
            for key, user in found.members.items()
        )
        self.info_line(f"in {found.name} ({len(nicks)}): {' '.join(nicks)}")

    def _cmd_msg(self, target: str, text: str) -> None:
        assert self.user is not None
        self.chat.private(self.user, target, text, via=self)

    def _cmd_topic(self, *args: str) -> None:
        assert self.user is not None
        room, text = self._room_and_rest(args)
        if room is None:
            self.send_error("usage: /topic #ROOM [TEXT]")
            return
        if not text:
            found = self.chat.find_room(room)
            if found is None:
                raise HubError("no_such_room", f"no such room: {room}")
            self.info_line(
                f"topic of {found.name}: {found.topic}"
                if found.topic
                else f"{found.name} has no topic"
            )
            return
        self.chat.set_topic(self.user, room, text)

    def _cmd_history(self, *args: str) -> None:
        """``/history [N]`` of the current room, or ``/history NICK [N]``: a private
        conversation of the account you are logged in to, from any door."""
        peer = args[0] if args and not args[0].isdigit() else None
        count = args[-1] if args and args[-1].isdigit() else None
        if len(args) > (1 if peer is None else 2) or (peer is not None and len(args) == 2
                                                       and count is None):
            self.send_error("usage: /history [N] or /history NICK [N]")
            return
        limit = int(count) if count is not None else self.chat.settings.history
        if not 1 <= limit <= HISTORY_MAX:
            self.send_error(f"/history takes 1 to {HISTORY_MAX} messages")
            return
        if peer is not None:
            self._private_history(peer, limit)
            return
        if self.current is None:
            self.send_error("you are in no room")
            return
        self._send_history(self.current, limit, always_end=True)

    def _private_history(self, peer: str, limit: int) -> None:
        user = self.user
        assert user is not None
        if user.account is None:
            self.send_error("private messages are kept for accounts: /identify PASSWORD first")
            return
        messages = self.chat.private_history(user, peer, limit)
        for message in messages:
            where = "[pm]" if fold(message.room) == user.key else f"[pm to {message.room}]"
            body = (f"** {message.nick} {message.text}" if message.action
                    else f"<{message.nick}> {message.text}")
            self.send_line(f"[history] {stamp(message.ts)} {where} {body}")
        count = len(messages)
        self.info_line(f"end of history with {peer} ({count} message{'s' * (count != 1)})")

    def _cmd_quit(self, reason: str = "") -> None:
        if self.user is not None:
            self.chat.quit(self.user, reason, voluntary=True, via=self)
            self.user = None
        self.info_line("bye")
        self.close()

    def _cmd_help(self, name: str | None = None) -> None:
        for line in help_lines(name):
            self.send_line(line)

    def _cmd_oper(self, name: str, password: str) -> None:
        assert self.user is not None
        resume = self.hold()

        def checked(ok: bool) -> None:
            if ok:
                self.info_line("you are now a server operator")
                return
            self.oper_failures += 1
            self.send_error("wrong operator name or password")
            if self.oper_failures >= OPER_ATTEMPTS:
                self.send_error("too many failed attempts; closing")
                self.close()

        self.chat.oper_later(self.user, name, password,
                             then=lambda ok: resume(lambda: checked(ok)))

    def _cmd_kick(self, *args: str) -> None:
        assert self.user is not None
        room, rest = self._room_and_rest(args)
        nick, _, reason = rest.partition(" ")
        if room is None or not nick:
            self.send_error("usage: /kick [#ROOM] NICK [REASON]")
            return
        self.chat.kick(self.user, room, nick, reason)

    def _cmd_ban(self, *args: str, add: bool = True) -> None:
        assert self.user is not None
        room, mask = self._room_and_rest(args)
        if room is None or not mask:
            self.send_error(f"usage: /{'ban' if add else 'unban'} [#ROOM] MASK")
            return
        self.chat.ban(self.user, room, mask, add=add)

    def _cmd_unban(self, *args: str) -> None:
        self._cmd_ban(*args, add=False)

    def _cmd_bans(self, room: str | None = None) -> None:
        name = room or self.current
        if name is None:
            self.send_error("usage: /bans #ROOM")
            return
        masks = self.chat.bans(name)
        self.info_line(f"bans of {name}: {' '.join(masks) if masks else 'none'}")

    def _cmd_room(self, verb: str, *args: str) -> None:
        """``/room VERB [#ROOM] [ARG]``: registered rooms (docs/accounts.md), the current
        room unless one is named; the rules are the chat service's (``services/rooms.py``)."""
        user = self.user
        assert user is not None
        verb = verb.lower()
        room, arg = self._room_and_rest(args)
        wants_arg = verb in ("addop", "delop", "transfer")
        if (verb not in _ROOM_VERBS or room is None or (wants_arg and not arg)
                or (arg and verb not in ("op", *_ROOM_ARG_VERBS))):
            self.send_error("usage: /room register|info|drop [#ROOM], /room op [#ROOM] [NICK], "
                            "/room addop|delop|transfer [#ROOM] ACCOUNT")
            return
        chat = self.chat
        if verb == "register":
            registration = chat.room_register(user, room)
            self.info_line(f"{registration.name} is registered to your account "
                           f"{registration.founder}")
        elif verb == "info":
            registration = chat.room_info(room)
            when = datetime.fromtimestamp(registration.registered, UTC)
            operators = " ".join(registration.operators.values()) or "none"
            self.info_line(f"{registration.name}: founder {registration.founder}, registered "
                           f"{when:%Y-%m-%d %H:%M} UTC; operator accounts: {operators}")
        elif verb == "drop":
            registration = chat.room_drop(user, room)
            self.info_line(f"{registration.name} is no longer registered")
        elif verb == "op":
            target = chat.room_op(user, room, arg or None)
            self.info_line(f"{target.nick} is an operator of {chat.room_info(room).name}")
        elif verb == "transfer":
            account = chat.room_transfer(user, room, arg)
            self.info_line(f"{chat.room_info(room).name} now belongs to {account}")
        else:
            add = verb == "addop"
            account = chat.room_operator(user, room, arg, add=add)
            self.info_line(f"{account} is {'now' if add else 'no longer'} an operator account "
                           f"of {chat.room_info(room).name}")

    #: Every command by the name ``protocols.chat_line`` parses it to; arity is checked there.
    COMMANDS: ClassVar[dict[str, Callable[..., None]]] = {
        "say": _cmd_say, "me": _cmd_me, "nick": _cmd_nick, "join": _cmd_join,
        "part": _cmd_part, "rooms": _cmd_rooms, "who": _cmd_who, "msg": _cmd_msg,
        "topic": _cmd_topic, "history": _cmd_history, "quit": _cmd_quit, "help": _cmd_help,
        "oper": _cmd_oper, "kick": _cmd_kick, "ban": _cmd_ban, "unban": _cmd_unban,
        "bans": _cmd_bans, "register": _cmd_register, "identify": _cmd_identify,
        "logout": _cmd_logout, "regain": _cmd_regain, "password": _cmd_password, "drop": _cmd_drop,
        "resetpass": _cmd_resetpass, "room": _cmd_room,
    }


#: ``/room`` verbs (``LineDoor._cmd_room``), and those that take an account.
_ROOM_VERBS = frozenset({"register", "info", "drop", "op", "addop", "delop", "transfer"})
_ROOM_ARG_VERBS = ("addop", "delop", "transfer")
