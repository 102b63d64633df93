"""Colours, sans-I/O: how a parsed server line looks on a terminal.

A stable colour per nick, the user's own nick and mentions of it in bold,
events and history greyed, errors in red. Apart from the parsing so that
the look can change without touching what a line means; prompt_toolkit
only supplies the style types here.
"""

from __future__ import annotations

import re
import zlib

from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.styles import Style

from sockhub.client.chat.lines import Kind, ServerLine
from sockhub.hub.names import fold

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
