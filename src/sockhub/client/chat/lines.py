"""Server lines, sans-I/O: what each line of the line door (docs/chat-line.md) says.

:func:`parse_server_line` gives a line's kind and the spans of its parts;
the renderer colours the spans and the state learns from the fields. A
module of its own because it is the one place that knows the server's line
formats, and is tested with strings alone.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any


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
