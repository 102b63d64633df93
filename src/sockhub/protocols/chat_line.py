"""The chat line door's wire format, sans-I/O: commands in, lines out.

Theory of operation
-------------------

Input is one line per action (see docs/chat-line.md). A line starting with
``/`` is a command, anything else a message to the current room; ``//``
escapes a message that starts with a slash. :func:`parse_line` turns a line
into a :class:`Command` after checking its arity once, from the
:data:`COMMANDS` table, so handlers never re-check argument counts.

Output is one readable line per event, with the server's UTC time::

    12:01:33 #lobby <alice> hi
    12:01:40 #lobby * bob joined
    12:01:45 #lobby ** bob waves               (a /me action: two stars)
    -- replies to your commands start with two dashes
    error: problems start with "error:"

:func:`render` turns a hub event into that line; it is pure, so a door can
render an event once and send the same bytes to every member.

Control characters
------------------

Everything a line user is shown passes through :func:`visible` (``render``
calls it, and the door calls it for its own lines), because any of it may
hold another user's text: a message, a topic, a reason, an echo of a bad
command. A terminal obeys control characters, so ``ESC [2J`` would clear
every reader's screen and ``ESC ]0;...BEL`` retitle their windows. The hub
already turns such characters into their ``cat -v`` form as text arrives
(``hub/names.py: clean_text``), but that lets IRC's formatting codes
through, and history written by older versions was not cleaned; so the line
door hides IRC formatting (bold, colours: formatting, not content) and shows
any other control character as ``cat -v`` does (``^[``, ``^?``, ``M-^[``),
whatever its origin. The result holds no C0, DEL or C1 character at all.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sockhub.hub.events import (
    AwayChanged,
    BanChanged,
    HubEvent,
    Invited,
    Joined,
    Kicked,
    Message,
    ModeChange,
    ModeChanged,
    NickChanged,
    Parted,
    Private,
    Quit,
    TopicChanged,
)
from sockhub.hub.names import CONTROLS, control_picture


@dataclass(frozen=True)
class CommandSpec:
    """One command's shape: ``min_args``..``max_args`` words, the last may be free text."""

    usage: str
    summary: str
    min_args: int = 0
    max_args: int = 0
    rest: bool = False  # the last argument takes the rest of the line, spaces and all


COMMANDS: dict[str, CommandSpec] = {
    "nick": CommandSpec("/nick NAME", "choose or change your nick", 1, 1),
    "join": CommandSpec(
        "/join #ROOM [PASSWORD]", "join a room (created if new) and talk there", 1, 2
    ),
    "part": CommandSpec(
        "/part [#ROOM] [REASON]", "leave a room (default: the current one)", 0, 2, rest=True
    ),
    "rooms": CommandSpec("/rooms", "list rooms with their users and topics"),
    "who": CommandSpec("/who [#ROOM]", "list the users in a room", 0, 1),
    "msg": CommandSpec("/msg NICK TEXT", "send a private message", 2, 2, rest=True),
    "me": CommandSpec("/me ACTION", "describe an action: ** alice waves", 1, 1, rest=True),
    "topic": CommandSpec("/topic [#ROOM] [TEXT]", "show or set a room's topic", 0, 2, rest=True),
    "history": CommandSpec("/history [NICK] [N]", "show the last N messages of the current "
                           "room, or of your account's private messages with NICK", 0, 2),
    "quit": CommandSpec("/quit [REASON]", "leave the chat", 0, 1, rest=True),
    "help": CommandSpec("/help [COMMAND]", "list commands, or explain one", 0, 1),
    "oper": CommandSpec("/oper NAME PASSWORD", "become a server operator", 2, 2),
    "register": CommandSpec(
        "/register PASSWORD", "register your nick as an account (an operator may give "
        "NAME PASSWORD)", 1, 2,
    ),
    "identify": CommandSpec(
        "/identify [ACCOUNT] PASSWORD", "log in to an account (before a nick: ACCOUNT "
        "PASSWORD logs in and takes that nick)", 1, 2,
    ),
    "logout": CommandSpec("/logout", "log out of your account"),
    "regain": CommandSpec(
        "/regain [NICK]", "take your account's nick back from whoever holds it", 0, 1
    ),
    "password": CommandSpec("/password OLD NEW", "change your account's password", 2, 2),
    "drop": CommandSpec("/drop PASSWORD", "delete your account", 1, 1),
    "resetpass": CommandSpec(
        "/resetpass ACCOUNT PASSWORD", "set an account's password (operators)", 2, 2
    ),
    "kick": CommandSpec(
        "/kick [#ROOM] NICK [REASON]", "remove someone from a room (operators)", 1, 3, rest=True
    ),
    "ban": CommandSpec(
        "/ban [#ROOM] MASK", "ban a nick, an address or nick!user@host (operators)", 1, 2
    ),
    "unban": CommandSpec("/unban [#ROOM] MASK", "lift a ban (operators)", 1, 2),
    "bans": CommandSpec("/bans [#ROOM]", "list a room's bans", 0, 1),
    "room": CommandSpec(
        "/room VERB [#ROOM] [ARG]", "registered rooms: register, info, drop, op [NICK], "
        "addop/delop/transfer ACCOUNT", 1, 3,
    ),
}


@dataclass(frozen=True)
class Command:
    """A parsed line: ``name`` is a key of COMMANDS, or ``"say"`` for a message."""

    name: str
    args: tuple[str, ...] = ()


class CommandError(ValueError):
    """A line that is not a valid command; the message is for the user."""


def parse_line(line: str) -> Command:
    """Parse one input line.

    Raises:
        CommandError: unknown command or wrong number of arguments.
    """
    if not line.startswith("/"):
        return Command("say", (line,))
    if line.startswith("//"):
        return Command("say", (line[1:],))
    head, _, tail = line[1:].partition(" ")
    name = head.lower()
    spec = COMMANDS.get(name)
    if spec is None:
        raise CommandError(f"unknown command /{head}; /help lists commands")
    tail = tail.strip()
    if not tail:
        args: list[str] = []
    elif spec.rest:
        args = tail.split(None, max(spec.max_args - 1, 0))
    else:
        args = tail.split()
    if not spec.min_args <= len(args) <= spec.max_args:
        raise CommandError(f"usage: {spec.usage}")
    return Command(name, tuple(args))


def help_lines(name: str | None = None) -> list[str]:
    """Lines for /help, or for /help COMMAND."""
    if name is not None:
        spec = COMMANDS.get(name.lstrip("/").lower())
        if spec is None:
            return [f"error: no such command /{name.lstrip('/')}"]
        return [f"-- {spec.usage}: {spec.summary}"]
    width = max(len(spec.usage) for spec in COMMANDS.values())
    lines = ["-- commands (a line without / is a message to your current room):"]
    lines += [f"--   {spec.usage:<{width}}  {spec.summary}" for spec in COMMANDS.values()]
    return lines


#: IRC formatting (Modern IRC, "Message Formatting"): a colour code 0x03 takes
#: up to two digits and an optional comma and two more, a hex colour 0x04 six
#: hex digits (and a comma and six more); the other codes stand alone.
_IRC_FORMATTING = re.compile(
    r"\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?"
    r"|\x04(?:[0-9A-Fa-f]{6}(?:,[0-9A-Fa-f]{6})?)?"
    r"|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)
_CONTROL = re.compile("[" + re.escape(CONTROLS) + "]")


def _picture(match: re.Match[str]) -> str:
    return control_picture(match.group())


def visible(text: str) -> str:
    """``text`` as a line user may safely see it: no control character left.

    IRC formatting codes are removed with their colour numbers; a tab becomes
    a space; any other C0 or C1 control character and DEL is shown as
    ``cat -v`` shows it: ESC as ``^[``, NUL as ``^@``, DEL as ``^?``, U+009B
    as ``M-^[``. Text with nothing to change costs one ``isprintable()``.
    """
    if text.isprintable():
        return text
    return _CONTROL.sub(_picture, _IRC_FORMATTING.sub("", text))


#: The last second :func:`clock` formatted, and its text: a room's messages
#: of one second share it (``strftime`` per rendered message was 12% of the
#: line door's server CPU per room message in the issue 16 profile).
_clock_last: tuple[float, str] = (math.nan, "")


def clock(ts: float) -> str:
    """``HH:MM:SS`` (UTC) of the whole second ``ts`` falls in."""
    global _clock_last
    second = ts // 1
    last = _clock_last
    if last[0] == second:
        return last[1]
    text = datetime.fromtimestamp(second, UTC).strftime("%H:%M:%S")
    _clock_last = (second, text)
    return text


def stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def render(event: HubEvent, viewer: str) -> str:
    """One output line for ``event`` as ``viewer`` (a nick) should see it, made :func:`visible`."""
    return visible(_render(event, viewer))


def _render(event: HubEvent, viewer: str) -> str:
    if isinstance(event, Message):
        ctcp = None if event.action else parse_ctcp(event.text)
        if ctcp is not None:
            kind = "reply" if event.notice else "request"
            body = f"* {event.nick} sent a CTCP {ctcp[0]} {kind} to the room"
        elif event.action:
            body = f"** {event.nick} {event.text}"
        elif event.notice:
            body = f"-{event.nick}- {event.text}"
        else:
            body = f"<{event.nick}> {event.text}"
        if event.history:
            return f"[history] {stamp(event.ts)} {event.room} {body}"
        return f"{clock(event.ts)} {event.room} {body}"
    if isinstance(event, Private):
        to_viewer = event.target.lower() == viewer.lower() and event.sender != viewer
        ctcp = None if event.action else parse_ctcp(event.text)
        if ctcp is not None:
            return f"{clock(event.ts)} {_render_ctcp(event, ctcp, to_viewer)}"
        kind = "notice" if event.notice else "pm"
        where = f"[{kind}]" if to_viewer else f"[{kind} to {event.target}]"
        if event.action:
            body = f"** {event.sender} {event.text}"
        elif event.notice:
            body = f"-{event.sender}- {event.text}"
        else:
            body = f"<{event.sender}> {event.text}"
        return f"{clock(event.ts)} {where} {body}"
    if isinstance(event, Joined):
        return f"{clock(event.ts)} {event.room} * {event.nick} joined"
    if isinstance(event, Parted):
        return f"{clock(event.ts)} {event.room} * {event.nick} left{_reason(event.reason)}"
    if isinstance(event, Quit):
        return f"{clock(event.ts)} * {event.nick} quit{_reason(event.reason)}"
    if isinstance(event, NickChanged):
        return f"{clock(event.ts)} * {event.old} is now known as {event.new}"
    if isinstance(event, TopicChanged):
        if not event.topic:
            return f"{clock(event.ts)} {event.room} * {event.nick} cleared the topic"
        return f"{clock(event.ts)} {event.room} * {event.nick} set the topic: {event.topic}"
    if isinstance(event, Kicked):
        return (
            f"{clock(event.ts)} {event.room} * {event.nick} was kicked by {event.by}"
            f"{_reason(event.reason)}"
        )
    if isinstance(event, BanChanged):
        verb = "banned" if event.added else "unbanned"
        return f"{clock(event.ts)} {event.room} * {event.by} {verb} {event.mask}"
    if isinstance(event, ModeChanged):
        what = "; ".join(describe_change(change) for change in event.changes)
        return f"{clock(event.ts)} {event.room} * {event.by} {what}"
    if isinstance(event, AwayChanged):
        if event.message is None:
            return f"{clock(event.ts)} * {event.nick} is back"
        return f"{clock(event.ts)} * {event.nick} is away: {event.message}"
    if isinstance(event, Invited):
        return (
            f"{clock(event.ts)} * {event.by} invites you to {event.room} "
            f"(/join {event.room})"
        )
    raise TypeError(f"cannot render {type(event).__name__}")


_FLAG_WORDS = {
    "moderated": ("made the room moderated", "lifted moderation"),
    "no_external": ("let only members talk", "let outsiders talk"),
    "invite_only": ("made the room invite-only", "opened the room to all"),
    "topic_lock": ("locked the topic", "unlocked the topic"),
    "secret": ("made the room secret", "made the room public"),
    "private": ("made the room private", "made the room public"),
    "no_ctcp": ("refused CTCP requests", "allowed CTCP requests"),
    "password": ("set a password", "removed the password"),
    "limit": ("limited the room to {} members", "removed the member limit"),
    "operator": ("made {} an operator", "took operator status from {}"),
    "voice": ("gave a voice to {}", "took the voice of {}"),
}


def describe_change(change: ModeChange) -> str:
    """A room setting change in words; a password is never shown."""
    on, off = _FLAG_WORDS.get(change.flag, (f"set {change.flag}", f"unset {change.flag}"))
    phrase = on if change.on else off
    return phrase.format(change.arg) if "{}" in phrase else phrase


#: CTCP requests the line door answers on its users' behalf: a terminal has
#: no IRC client to answer them, and IRC users send PING to measure lag and
#: VERSION or TIME out of habit. Others are shown, never answered.
CTCP_ANSWERED = frozenset({"VERSION", "PING", "TIME"})


def parse_ctcp(text: str) -> tuple[str, str] | None:
    """A CTCP message's command and arguments (``\\x01PING 123\\x01`` → ``("PING", "123")``).

    None when ``text`` is no CTCP message. The closing ``\\x01`` is optional
    (CTCP, "Message Syntax": clients must accept its absence).
    """
    if not text.startswith("\x01"):
        return None
    command, _, args = text[1:].removesuffix("\x01").partition(" ")
    if not command or not command.isprintable():
        return None
    return command.upper(), args


def _render_ctcp(event: Private, ctcp: tuple[str, str], to_viewer: bool) -> str:
    """A private CTCP message as a line, never the raw ``\\x01`` bytes it arrived as."""
    command, args = ctcp
    if not to_viewer:
        return f"[ctcp to {event.target}] {command} {args}".rstrip()
    if event.notice:
        return f"[ctcp reply] {event.sender}: {command} {args}".rstrip()
    answer = "the server answered for you" if command in CTCP_ANSWERED else "not answered"
    return f"[ctcp] {event.sender} sent CTCP {command}; {answer}"


def _reason(reason: str) -> str:
    return f" ({reason})" if reason else ""
