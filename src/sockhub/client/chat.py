"""``sockhub chat``: a terminal client for the chat hub's line door.

Theory of operation
-------------------

Two layers, as in the rest of sockhub (see shared/DESIGN.md):

* **Sans-I/O** (the top half of this file). :func:`parse_server_line` turns
  one server line (docs/chat-line.md) into a :class:`ServerLine`: a kind
  plus the spans of its time, room, nicks and text. :func:`render` colours
  those spans; :class:`ChatState` follows the conversation (own nick,
  current room, who is in which room) for the prompt, the completer and
  reconnection; :func:`complete` proposes Tab completions; :class:`Backoff`
  is the reconnect schedule. None of it touches a socket or a terminal, so
  tests feed it strings.
* **I/O** (the bottom half). :class:`ChatClient` owns the connection and
  the reconnect loop. A *screen* reads the user's lines and shows server
  lines: :class:`_PromptScreen` (prompt_toolkit, when stdin and stdout are
  terminals: incoming lines print above the line being typed) or
  :class:`_PlainScreen` (plain lines in and out, for scripts and pipes).

The client's phases on one connection::

    OFFLINE --connect--> GREETING --"-- enter a nick"/send nick--> REGISTERING
    REGISTERING --"-- you are NICK"--> READY (re-join rooms, send held lines)
    REGISTERING --"error: ..."--> CHOOSING --user types a nick--> READY

Lines typed in GREETING or REGISTERING are held and sent once the server
has answered the nick, so a script's first lines are not taken for nicks;
lines typed while OFFLINE are refused with ``-- not connected`` (never
dropped silently). A ``/quit`` (or the end of piped input) typed then
waits its turn behind them.

Actions (``T #room ** nick text``) and room events (``T #room * nick
joined``) have different markers, so ``/me joined`` cannot pass for a join.
docs/chat-client.md describes the client for users.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import random
import re
import ssl
import sys
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.application import in_terminal
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.renderer import print_formatted_text
from prompt_toolkit.styles import Style

from sockhub.hub.names import fold
from sockhub.protocols.chat_line import COMMANDS

#: The server's default ``--max-line`` for chat (docs/chat-line.md). A longer
#: line would make the server close the connection, so the client refuses it.
MAX_LINE = 8192
#: How long ``/quit`` waits for the server's ``-- bye`` and close.
QUIT_WAIT = 2.0
CONNECT_TIMEOUT = 10.0
#: StreamReader limit: generous, since the server caps its own lines.
READ_LIMIT = 1 << 20


# Sans-I/O: server lines ---------------------------------------------------


class Kind(enum.StrEnum):
    """What a server line is; decides its colour and what the state learns."""

    MESSAGE = "message"  # T #room <nick> text, or an action: T #room ** nick text
    HISTORY = "history"  # [history] DATE T #room <nick> text
    PRIVATE = "private"  # T [pm] <nick> text
    PRIVATE_SENT = "private-sent"  # T [pm to other] <nick> text
    JOIN = "join"
    PART = "part"
    KICK = "kick"  # nick was kicked by other (text)
    QUIT = "quit"
    NICK = "nick"  # nick is now known as other
    TOPIC = "topic"
    BAN = "ban"  # nick banned/unbanned text (the mask)
    INFO = "info"  # -- text
    ERROR = "error"  # error: text
    OTHER = "other"


@dataclass(frozen=True)
class ServerLine:
    """One parsed server line; ``spans`` locate its parts in ``raw`` for colouring.

    ``nick`` is who acted (author, joiner, old nick, kicked user, banner);
    ``other`` is the second nick (new nick, kicker, private-message target).
    """

    kind: Kind
    raw: str
    time: str = ""
    room: str = ""
    nick: str = ""
    other: str = ""
    text: str = ""
    action: bool = False
    added: bool = False  # BAN: banned rather than unbanned
    spans: tuple[tuple[int, int, str], ...] = ()


_TIME = r"(?P<time>\d\d:\d\d:\d\d)"
_WHO = r"(?:<(?P<nick>[^>\s]+)>|\*\* (?P<anick>\S+))"
_LINE_FORMS: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    (Kind.MESSAGE, re.compile(_TIME + r" (?P<room>#\S+) <(?P<nick>[^>\s]+)> (?P<text>.*)\Z")),
    (Kind.MESSAGE, re.compile(_TIME + r" (?P<room>#\S+) \*\* (?P<anick>\S+) (?P<text>.*)\Z")),
    (Kind.OTHER, re.compile(_TIME + r" (?P<room>#\S+) \* (?P<nick>\S+) (?P<rest>.*)\Z")),
    (
        Kind.PRIVATE_SENT,
        re.compile(_TIME + r" \[pm to (?P<other>\S+)\] " + _WHO + r" (?P<text>.*)\Z"),
    ),
    (Kind.PRIVATE, re.compile(_TIME + r" \[pm\] " + _WHO + r" (?P<text>.*)\Z")),
    (Kind.NICK, re.compile(_TIME + r" \* (?P<nick>\S+) is now known as (?P<other>\S+)\Z")),
    (Kind.QUIT, re.compile(_TIME + r" \* (?P<nick>\S+) quit(?: \((?P<text>.*)\))?\Z")),
    (
        Kind.HISTORY,
        re.compile(
            r"\[history\] (?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?P<room>#\S+) "
            + _WHO
            + r" (?P<text>.*)\Z"
        ),
    ),
)
# What follows "T #room * nick " for room events; anything else is an event
# this client does not know (shown as it is).
_ROOM_EVENTS: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    (Kind.JOIN, re.compile(r"joined\Z")),
    (Kind.PART, re.compile(r"left(?: \((?P<text>.*)\))?\Z")),
    (Kind.KICK, re.compile(r"was kicked by (?P<other>\S+)(?: \((?P<text>.*)\))?\Z")),
    (Kind.TOPIC, re.compile(r"set the topic: (?P<text>.*)\Z")),
    (Kind.TOPIC, re.compile(r"cleared the topic\Z")),
    (Kind.BAN, re.compile(r"(?P<verb>banned|unbanned) (?P<mask>\S+)\Z")),
)
_ROLES = {"time": "time", "room": "room", "nick": "nick", "anick": "nick", "other": "nick",
          "text": "text", "mask": "mask"}
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def sanitize(text: str) -> str:
    """Replace control characters, so a peer cannot drive the terminal with escapes."""
    return _CONTROL.sub("?", text)


def parse_server_line(raw: str) -> ServerLine:
    """Parse one line from the server (without its line end) into a :class:`ServerLine`."""
    if raw.startswith("-- ") or raw == "--":
        return ServerLine(Kind.INFO, raw, text=raw[3:])
    if raw.startswith("error: "):
        return ServerLine(Kind.ERROR, raw, text=raw[7:])
    for kind, pattern in _LINE_FORMS:
        m = pattern.match(raw)
        if m is None:
            continue
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        spans = [(m.start(g), m.end(g), _ROLES[g]) for g in groups if g in _ROLES]
        fields: dict[str, Any] = {
            "kind": kind,
            "time": groups.get("time", ""),
            "room": groups.get("room", ""),
            "nick": groups.get("nick") or groups.get("anick", ""),
            "other": groups.get("other", ""),
            "text": groups.get("text", ""),
            "action": "anick" in groups,
        }
        if "rest" in groups:  # T #room * nick REST: a room event
            fields.update(_room_event(groups["rest"], m.start("rest"), spans))
        return ServerLine(raw=raw, spans=tuple(sorted(spans)), **fields)
    return ServerLine(Kind.OTHER, raw)


def _room_event(rest: str, offset: int, spans: list[tuple[int, int, str]]) -> dict[str, Any]:
    for kind, pattern in _ROOM_EVENTS:
        m = pattern.match(rest)
        if m is None:
            continue
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        spans += [(offset + m.start(g), offset + m.end(g), _ROLES[g])
                  for g in groups if g in _ROLES]
        return {
            "kind": kind,
            "action": False,
            "other": groups.get("other", ""),
            "text": groups.get("text") or groups.get("mask", ""),
            "added": groups.get("verb") == "banned",
        }
    spans.append((offset, offset + len(rest), "text"))
    return {"kind": Kind.OTHER, "text": rest}


# Sans-I/O: colours --------------------------------------------------------

#: Twelve nick colours, readable on dark and light backgrounds, none of them
#: the red that marks errors. prompt_toolkit maps them down to the terminal's depth.
NICK_COLOURS = (
    "#d78700", "#5fafd7", "#87af00", "#af87ff", "#00afaf", "#d75f87",
    "#5f87ff", "#afaf00", "#ff8700", "#00af87", "#d787d7", "#87afaf",
)
STYLE = Style.from_dict({
    "time": "#8a8a8a",
    "info": "#8a8a8a",
    "history": "#8a8a8a",
    "event": "#a8a8a8",
    "error": "ansired bold",
    "room": "bold",
    "pm": "ansimagenta",
    "own": "bold underline",
    "mention": "bold",
    "prompt": "bold",
    "prompt.offline": "ansired",
    **{f"nick.{i}": colour for i, colour in enumerate(NICK_COLOURS)},
})
_BASE_STYLE = {
    Kind.INFO: "class:info",
    Kind.ERROR: "class:error",
    Kind.HISTORY: "class:history",
    Kind.PRIVATE: "class:pm",
    Kind.PRIVATE_SENT: "class:pm",
    **{k: "class:event" for k in (Kind.JOIN, Kind.PART, Kind.KICK, Kind.QUIT, Kind.NICK,
                                  Kind.TOPIC, Kind.BAN)},
}
_NICK_CHARS = r"A-Za-z0-9\[\]\\`_^{|}\-"


def nick_style(nick: str, own: str | None = None) -> str:
    """The style of a nick: a colour from a stable hash (the same in every run), bold if own."""
    colour = zlib.crc32(fold(nick).encode()) % len(NICK_COLOURS)
    if own and fold(nick) == fold(own):
        return f"class:nick.{colour} class:own"
    return f"class:nick.{colour}"


def mentions(text: str, nick: str) -> bool:
    """Whether ``text`` names ``nick`` as a whole word (case-insensitively)."""
    pattern = rf"(?<![{_NICK_CHARS}]){re.escape(fold(nick))}(?![{_NICK_CHARS}])"
    return re.search(pattern, fold(text)) is not None


def render(line: ServerLine, own: str | None = None) -> StyleAndTextTuples:
    """Colour a line; the fragments' text is exactly ``line.raw``."""
    base = _BASE_STYLE.get(line.kind, "")
    text_style = base
    if (own and line.kind in (Kind.MESSAGE, Kind.PRIVATE) and fold(line.nick) != fold(own)
            and mentions(line.text, own)):
        text_style = f"{base} class:mention"
    fragments: StyleAndTextTuples = []
    pos = 0
    for start, end, role in line.spans:
        if start > pos:
            fragments.append((base, line.raw[pos:start]))
        part = line.raw[start:end]
        if role == "nick":
            style = nick_style(part, own)
        elif role == "text":
            style = text_style
        elif role in ("time", "room"):
            style = f"{base} class:{role}"
        else:
            style = base
        fragments.append((style, part))
        pos = end
    if pos < len(line.raw):
        fragments.append((base, line.raw[pos:]))
    return fragments


# Sans-I/O: what the client knows ----------------------------------------

_YOU_ARE = re.compile(r"you are (\S+)\Z")
_TALKING_IN = re.compile(r"talking in (#\S+)\Z")
_IN_ROOM = re.compile(r"in (#\S+)( \(\d+\))?: (.*)\Z")  # the count only in /who replies
_ROOM_LIST = re.compile(r"\s+(#\S+) \(\d+\)")


@dataclass(frozen=True)
class Resume:
    """Where the user was when a connection broke: what to restore on the next one."""

    nick: str
    rooms: tuple[str, ...]
    current: str | None

    def rejoin_lines(self) -> list[str]:
        """``/join`` lines that put the user back, the current room last so it is current again."""
        lines = [f"/join {room}" for room in self.rooms if room != self.current]
        if self.current:
            lines.append(f"/join {self.current}")
        return lines


@dataclass
class ChatState:
    """What the client has learnt from the server's lines on this connection.

    Keys are folded names (``fold``), values as the server spells them.
    ``known_rooms`` and ``seen`` survive reconnection: they only feed completion.
    """

    nick: str | None = None
    current: str | None = None
    rooms: dict[str, str] = field(default_factory=dict)  # rooms we are in, in join order
    members: dict[str, dict[str, str]] = field(default_factory=dict)
    known_rooms: dict[str, str] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)

    def is_me(self, nick: str) -> bool:
        return self.nick is not None and fold(nick) == fold(self.nick)

    def apply(self, line: ServerLine) -> None:
        """Learn from one server line."""
        kind = line.kind
        if kind is Kind.INFO:
            self._apply_info(line.text)
        elif kind is Kind.JOIN:
            self._add_member(line.room, line.nick)
            if self.is_me(line.nick):
                self._enter(line.room)
        elif kind in (Kind.PART, Kind.KICK):
            if self.is_me(line.nick):
                self._leave(line.room)
            else:
                self.members.get(fold(line.room), {}).pop(fold(line.nick), None)
        elif kind is Kind.QUIT:
            for members in self.members.values():
                members.pop(fold(line.nick), None)
            self.seen.pop(fold(line.nick), None)
        elif kind is Kind.NICK:
            self._rename(line.nick, line.other)
        elif kind is Kind.MESSAGE:
            self._add_member(line.room, line.nick)
        elif kind is Kind.PRIVATE:
            self.seen[fold(line.nick)] = line.nick
        elif kind is Kind.PRIVATE_SENT:
            self.seen[fold(line.other)] = line.other
        elif kind is Kind.HISTORY:
            self.known_rooms.setdefault(fold(line.room), line.room)

    def _apply_info(self, text: str) -> None:
        if m := _YOU_ARE.match(text):
            self.nick = m.group(1)
        elif m := _TALKING_IN.match(text):
            self._enter(m.group(1))
        elif m := _IN_ROOM.match(text):
            room, is_who, names = m.groups()
            nicks = [name.lstrip("@") for name in names.split()]
            if not is_who:  # the reply to our own join: we are in, and it is current
                self._enter(room)
            self.members[fold(room)] = {fold(n): n for n in nicks}
            self.seen.update((fold(n), n) for n in nicks)
            self.known_rooms.setdefault(fold(room), room)
        elif m := _ROOM_LIST.match(text):
            self.known_rooms.setdefault(fold(m.group(1)), m.group(1))

    def _enter(self, room: str) -> None:
        self.rooms.setdefault(fold(room), room)
        self.known_rooms.setdefault(fold(room), room)
        self.current = self.rooms[fold(room)]

    def _leave(self, room: str) -> None:
        self.rooms.pop(fold(room), None)
        self.members.pop(fold(room), None)
        if self.current is not None and fold(self.current) == fold(room):
            # As the server does: the most recently joined room becomes current.
            self.current = list(self.rooms.values())[-1] if self.rooms else None

    def _add_member(self, room: str, nick: str) -> None:
        self.known_rooms.setdefault(fold(room), room)
        self.seen[fold(nick)] = nick
        if fold(room) in self.rooms:
            self.members.setdefault(fold(room), {})[fold(nick)] = nick

    def _rename(self, old: str, new: str) -> None:
        if self.is_me(old):
            self.nick = new
        for members in self.members.values():
            if members.pop(fold(old), None) is not None:
                members[fold(new)] = new
        self.seen.pop(fold(old), None)
        self.seen[fold(new)] = new

    def connection_lost(self) -> Resume | None:
        """Forget the connection; return what to restore, or None if not registered."""
        resume = None
        if self.nick is not None:
            resume = Resume(self.nick, tuple(self.rooms.values()), self.current)
        self.nick = None
        self.rooms.clear()
        self.members.clear()
        return resume

    def nicks(self, room: str | None = None) -> list[str]:
        """Nicks to complete: a room's members, or everyone seen; never our own."""
        pool = self.members.get(fold(room), {}) if room else self.seen
        return sorted((n for n in pool.values() if not self.is_me(n)), key=fold)

    def room_names(self, *, mine: bool = False) -> list[str]:
        return sorted((self.rooms if mine else self.known_rooms).values(), key=fold)


# Sans-I/O: completion -----------------------------------------------------

# What each command's arguments are, for completion: "nick" (members of the
# room in question), "anyone" (every nick seen), "room" (every room known),
# "myroom" (rooms we are in), "command". "myroom|nick" is a room if the word
# starts with '#', else a nick, and the next argument is a nick only if a
# room came first (/kick [#ROOM] NICK [REASON]).
_ARG_KINDS: dict[str, tuple[str, ...]] = {
    "msg": ("anyone",),
    "join": ("room",),
    "part": ("myroom",),
    "who": ("room",),
    "topic": ("myroom",),
    "bans": ("room",),
    "help": ("command",),
    "kick": ("myroom|nick", "nick"),
    "ban": ("myroom|anyone", "anyone"),
    "unban": ("myroom|anyone", "anyone"),
}


def complete(state: ChatState, before_cursor: str) -> list[tuple[str, int]]:
    """Completions of the word before the cursor: ``(replacement, start offset)`` pairs.

    The start offset is negative, as prompt_toolkit's ``Completion`` wants.
    """
    words = before_cursor.split(" ")
    word, head = words[-1], words[0]
    if not head.startswith("/") or head.startswith("//"):  # a message: nicks in the room
        return _matching(state.nicks(state.current), word, ": " if len(words) == 1 else " ")
    if len(words) == 1:
        return [(f"/{name} ", -len(word)) for name in COMMANDS
                if f"/{name}".startswith(word.lower())]
    kinds = _ARG_KINDS.get(head[1:].lower(), ())
    index, room = len(words) - 2, state.current
    if kinds and "|" in kinds[0]:
        if index == 0:
            room_kind, nick_kind = kinds[0].split("|")
            kinds = (room_kind if word.startswith("#") else nick_kind,)
        elif words[1].startswith("#"):
            room = words[1]
        else:
            return []  # /kick NICK REASON: the reason is free text
    if index >= len(kinds):
        return []
    kind = kinds[index]
    if kind in ("nick", "anyone"):
        return _matching(state.nicks(room if kind == "nick" else None), word, " ")
    if kind in ("room", "myroom"):
        return _matching(state.room_names(mine=kind == "myroom"), word, " ")
    return _matching(COMMANDS, word.lstrip("/"), " ", offset=len(word))  # a command name


def _matching(
    names: Iterable[str], word: str, suffix: str, offset: int | None = None
) -> list[tuple[str, int]]:
    start = -(len(word) if offset is None else offset)
    return [(name + suffix, start) for name in names if fold(name).startswith(fold(word))]


class ChatCompleter(Completer):
    """prompt_toolkit's side of :func:`complete`."""

    def __init__(self, state: ChatState) -> None:
        self.state = state

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        for text, start in complete(self.state, document.text_before_cursor):
            spec = COMMANDS.get(text.strip().lstrip("/")) if text.startswith("/") else None
            meta = spec.summary if spec else None
            yield Completion(text, start, display=text.strip(), display_meta=meta)


# Sans-I/O: reconnect schedule ---------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter: ``initial`` doubling up to ``maximum`` seconds.

    Jitter takes up to ``jitter`` (a fraction) off each delay, so clients that
    lost the same server do not all come back in the same instant.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.25

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based); ``rand`` in [0, 1)."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * rand)


# I/O: screens -------------------------------------------------------------


class _PlainScreen:
    """Line by line on stdin and stdout: for pipes and scripts, where there is no prompt."""

    def __init__(self) -> None:
        self._lines: asyncio.Queue[str | None] | None = None

    def show(self, fragments: StyleAndTextTuples) -> None:
        with contextlib.suppress(BrokenPipeError):
            print("".join(text for _, text, *_ in fragments), flush=True)

    def refresh(self) -> None:
        pass

    async def read_line(self) -> str:
        """The next line of stdin. Raises EOFError at its end."""
        if self._lines is None:
            self._lines = asyncio.Queue()
            threading.Thread(
                target=_read_stdin, args=(asyncio.get_running_loop(), self._lines), daemon=True
            ).start()
        line = await self._lines.get()
        if line is None:
            self._lines.put_nowait(None)  # stay at the end
            raise EOFError
        return line

    async def close(self) -> None:
        pass


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    # A thread, as in connect.py: asyncio cannot watch every kind of stdin.
    # os.read, not sys.stdin: a thread blocked inside sys.stdin holds its lock,
    # and Python aborts at exit when a daemon thread holds it.
    pending = b""
    while True:
        try:
            chunk = os.read(0, 65536)
        except OSError:
            chunk = b""
        if chunk:
            *lines, pending = (pending + chunk).split(b"\n")
        else:  # the end: a last line without its newline still counts
            lines, pending = [pending] if pending else [], b""
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(queue.put_nowait, line)
        if not chunk:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, None)
            return


class _PromptScreen:
    """prompt_toolkit: an input line at the bottom, server lines printed above it."""

    def __init__(self, state: ChatState, prompt: Callable[[], StyleAndTextTuples]) -> None:
        self.session: PromptSession[str] = PromptSession(
            message=prompt,
            completer=ChatCompleter(state),
            complete_while_typing=False,  # Tab completes, as in IRC clients and shells
            erase_when_done=True,  # the server echoes what we said; show it once
            style=STYLE,
        )
        self._pending: list[StyleAndTextTuples] = []
        self._printer: asyncio.Task[None] | None = None

    def show(self, fragments: StyleAndTextTuples) -> None:
        # Lines are batched and printed by one task, in order: one redraw of
        # the prompt per batch rather than per line when a room is busy.
        self._pending.append(fragments)
        if self._printer is None or self._printer.done():
            self._printer = asyncio.get_running_loop().create_task(self._print_pending())

    async def _print_pending(self) -> None:
        output = self.session.output
        while self._pending:
            batch, self._pending = self._pending, []
            async with in_terminal():  # hides the prompt, prints, draws it again
                for fragments in batch:
                    print_formatted_text(output, [*fragments, ("", "\n")], STYLE)
                output.flush()

    def refresh(self) -> None:
        """Draw the prompt again: the phase or the current room changed."""
        if self.session.app.is_running:
            self.session.app.invalidate()

    async def read_line(self) -> str:
        """The next line typed. Raises EOFError (Ctrl-D) or KeyboardInterrupt (Ctrl-C)."""
        return await self.session.prompt_async()

    async def close(self) -> None:
        if self._printer is not None:
            await self._printer


_Screen = _PlainScreen | _PromptScreen


# I/O: the client ----------------------------------------------------------


class Phase(enum.Enum):
    OFFLINE = "offline"
    GREETING = "greeting"  # connected; the nick goes after the server's prompt
    REGISTERING = "registering"  # our nick is sent; the user's lines wait for the answer
    CHOOSING = "choosing"  # the nick was refused; the user's next line is a nick
    READY = "ready"


_QUIT = re.compile(r"/quit(\s|\Z)", re.IGNORECASE)


class ChatClient:
    """One chat session: the connection, reconnecting, and the user's lines."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        nick: str | None,
        tls: ssl.SSLContext | None,
        reconnect: bool,
        interactive: bool,
        backoff: Backoff | None = None,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.wanted_nick = nick or ""  # empty: a guest nick
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        self.state = ChatState()
        self.phase = Phase.OFFLINE
        self.resume: Resume | None = None
        self.held: list[str] = []
        self.quitting = False
        self.writer: asyncio.StreamWriter | None = None
        self.screen: _Screen = (
            _PromptScreen(self.state, self.prompt) if interactive else _PlainScreen()
        )
        self._tried = asyncio.Event()  # the first connection attempt is over
        self._connection: asyncio.Task[int] | None = None

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def prompt(self) -> StyleAndTextTuples:
        """The prompt: the current room, ``nick>`` before registration, ``(offline)``."""
        if self.phase is Phase.OFFLINE:
            return [("class:prompt.offline", "(offline)"), ("", " "),
                    ("class:prompt", self.state.current or ""), ("", "> ")]
        if self.phase is not Phase.READY:
            return [("class:prompt", "nick"), ("", "> ")]
        return [("class:prompt", self.state.current or ""), ("", "> ")]

    def notice(self, text: str) -> None:
        self.screen.show([("class:info", f"-- {text}")])

    # Running -------------------------------------------------------------

    async def run(self) -> int:
        """Chat until the user quits (0), Ctrl-C (130) or, without reconnect, a loss (1)."""
        self._connection = asyncio.create_task(self._connect_loop())
        typing: asyncio.Task[int] | None = None
        try:
            tried = asyncio.create_task(self._tried.wait())
            await asyncio.wait({self._connection, tried}, return_when=asyncio.FIRST_COMPLETED)
            tried.cancel()
            if self._connection.done():
                return self._connection.result()
            # Read the user only now: a script's first lines must not meet "not connected".
            typing = asyncio.create_task(self._input_loop())
            await asyncio.wait({self._connection, typing}, return_when=asyncio.FIRST_COMPLETED)
            if typing.done():
                return typing.result()
            return self._connection.result()
        finally:
            for task in (typing, self._connection):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self.screen.close()

    async def _connect_loop(self) -> int:
        failures = 0
        while True:
            connected = registered = False
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, ssl=self.tls, limit=READ_LIMIT),
                    CONNECT_TIMEOUT,
                )
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                reason = _describe(exc)
            else:
                connected = True
                self._tried.set()
                reason, registered = await self._session(reader, writer)
            self._tried.set()
            if self.quitting:
                return 0
            if not self.reconnect:
                if connected:
                    self.notice(f"connection lost ({reason})")
                else:
                    print(f"sockhub chat: {self.where}: {reason}", file=sys.stderr)
                return 1
            if registered:
                failures = 0
            delay = self.backoff.delay(failures, random.random())
            failures += 1
            if connected:
                self.notice(f"connection lost; reconnecting in {delay:.1f} s")
            else:
                self.notice(f"cannot connect to {self.where} ({reason}); retrying in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, bool]:
        """Talk on one connection until it ends; (why it ended, whether we registered)."""
        self.writer = writer
        self.phase = Phase.GREETING
        self.screen.refresh()
        if self.resume is not None:
            self.notice(f"reconnected to {self.where}")
        reason, registered = "closed by the server", False
        try:
            while raw := await reader.readline():
                self._server_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
                registered = registered or self.phase is Phase.READY
        except ValueError:
            reason = "line too long"
        except (OSError, ssl.SSLError) as exc:
            reason = _describe(exc)
        finally:
            self.writer = None
            self.phase = Phase.OFFLINE
            self.resume = self.state.connection_lost() or self.resume
            if self.held:
                self.notice(f"not connected; {len(self.held)} line(s) not sent")
                self.held.clear()
            self.screen.refresh()
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        return reason, registered

    def _server_line(self, text: str) -> None:
        line = parse_server_line(sanitize(text))
        if self.phase is Phase.GREETING and line.kind is Kind.INFO:
            if line.text.startswith("enter a nick"):
                nick = self.resume.nick if self.resume else self.wanted_nick
                self._send(nick)
                self.phase = Phase.REGISTERING
                return
            if self.resume is not None:
                return  # the welcome again, after a reconnect: noise
        self.state.apply(line)
        self.screen.show(render(line, self.state.nick))
        if line.kind is Kind.INFO and self.state.nick and _YOU_ARE.match(line.text):
            self.phase = Phase.READY
            if self.resume is not None:
                for join in self.resume.rejoin_lines():
                    self._send(join)
                self.resume = None
            self._send_held()
        elif line.kind is Kind.ERROR and self.phase is Phase.REGISTERING:
            self.phase = Phase.CHOOSING
            self.notice("type another nick (or an empty line for a guest nick)")
            self._send_held()
        self.screen.refresh()

    # The user's side -------------------------------------------------------

    async def _input_loop(self) -> int:
        while True:
            try:
                typed = await self.screen.read_line()
            except EOFError:  # Ctrl-D, or the end of a script
                return await self._quit("/quit")
            except KeyboardInterrupt:
                self._interrupt()
                return 130
            for line in typed.splitlines() or [""]:  # a paste may hold several lines
                if _QUIT.match(line):
                    return await self._quit(line)
                self._submit(line)
            if self.writer is not None:
                with contextlib.suppress(OSError, ssl.SSLError):
                    await self.writer.drain()

    def _submit(self, line: str) -> None:
        if self.phase is Phase.OFFLINE:
            self.notice(f"not connected; not sent: {line}")
        elif self.phase in (Phase.GREETING, Phase.REGISTERING):
            self.held.append(line)
        elif self.phase is Phase.READY and not line.strip():
            pass  # nothing to say
        elif len(line.encode()) > MAX_LINE - 2:
            self.notice(f"line too long (the server takes at most {MAX_LINE} bytes); not sent")
        else:
            self._send(line)

    def _send_held(self) -> None:
        held, self.held = self.held, []
        for line in held:
            self._submit(line)

    def _send(self, line: str) -> None:
        if self.writer is not None:
            self.writer.write(line.encode() + b"\n")

    async def _quit(self, line: str) -> int:
        """Send ``/quit``, wait briefly for the server's close, and leave with status 0."""
        self.quitting = True
        assert self._connection is not None
        if self.writer is None:
            return 0
        wait = QUIT_WAIT
        if self.phase in (Phase.GREETING, Phase.REGISTERING):
            self.held.append(line)  # after the lines typed before it, once we have a nick
            wait += CONNECT_TIMEOUT
        else:
            self._send(line)
        await asyncio.wait({self._connection}, timeout=wait)
        return 0

    def _interrupt(self) -> None:
        """Ctrl-C: say goodbye without waiting for the answer."""
        self.quitting = True
        if self.writer is not None:
            self._send("/quit")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.errno:  # asyncio's strerror names the address
        return os.strerror(exc.errno).lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


async def run_chat(
    host: str,
    port: int,
    *,
    nick: str | None,
    tls: ssl.SSLContext | None,
    reconnect: bool = True,
) -> int:
    """Chat on ``host:port`` until the user quits.

    On a terminal the input line stays at the bottom and incoming lines print
    above it; otherwise stdin and stdout are read and written line by line.

    Returns:
        0 after ``/quit`` or Ctrl-D (or the end of piped input), 130 after
        Ctrl-C, 1 when the connection fails or is lost and ``reconnect`` is
        False.
    """
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    client = ChatClient(host, port, nick=nick, tls=tls, reconnect=reconnect,
                        interactive=interactive)
    if not interactive:
        return await client.run()
    with patch_stdout(raw=True):  # stray prints go above the prompt too
        return await client.run()
