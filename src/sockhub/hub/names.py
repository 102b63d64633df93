"""Nickname and room-name rules, shared by every door.

Nicknames follow the IRC grammar (RFC 2812 §2.3.1, as modern servers relax
it) so that a user of the line door is addressable from IRC without any
translation: a letter or one of ``[]\\`_^{|}`` first, then letters, digits,
those specials and ``-``; at most :data:`NICK_MAX` characters. Room names
are what modern IRC servers accept (Modern IRC, "Channels"): ``#`` and then
anything but spaces, commas, colons and control characters, so ``#c++``,
``##linux`` and ``#café`` are rooms; at most :data:`ROOM_MAX` UTF-8 bytes
(ISUPPORT ``CHANNELLEN``, which servers count in bytes). Both compare case-insensitively
with ASCII case mapping (ISUPPORT ``CASEMAPPING=ascii``): ``Alice`` and
``alice`` are the same user.

Free text (messages, topics, reasons, away messages, real names) goes
through :func:`clean_text` on its way into the hub, from every door: a
terminal control character (ESC, BEL, NUL, DEL, the C1 range...) becomes
its visible ``cat -v`` form (``^[``, ``^G``, ``^@``, ``^?``, ``M-^[``), so
no door, and no history replay, can hand one to a terminal or an IRC client.
IRC's formatting codes and CTCP's delimiter pass: IRC clients expect them
(the line door hides them itself when it renders a line).
"""

from __future__ import annotations

import functools
import re

NICK_MAX = 30
#: Longest room name, in UTF-8 bytes (ISUPPORT ``CHANNELLEN``).
ROOM_MAX = 50
TOPIC_MAX = 390  # fits in one IRC line with prefix and channel name
#: Longest user name (the ``user`` of ``nick!user@host``; IRC's ISUPPORT ``USERLEN``).
USERNAME_MAX = 16
#: Longest away message; longer ones are cut (IRC clients send what users type).
AWAY_MAX = 200
#: Longest real name (IRC's GECOS; ISUPPORT ``NAMELEN``).
REALNAME_MAX = 150
#: Longest room password (IRC's channel key); IRC clients send it as one word.
PASSWORD_MAX = 32
#: Largest member limit a room may be given.
LIMIT_MAX = 100_000
#: Rooms one user may be in at once (ISUPPORT ``CHANLIMIT``).
ROOMS_PER_USER = 50
#: Ban masks one room may hold (ISUPPORT ``MAXLIST``).
BANS_PER_ROOM = 100
#: The most messages one history request returns.
HISTORY_MAX = 1000

_NICK = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}\-]*\Z")
#: IRC formatting codes (Modern IRC, "Message Formatting"): bold 0x02, colour
#: 0x03, hex colour 0x04, reset 0x0F, monospace 0x11, reverse 0x16, italics
#: 0x1D, strikethrough 0x1E, underline 0x1F. They change how IRC clients draw
#: text and move no cursor, so they may reach IRC users.
IRC_FORMATTING = "\x02\x03\x04\x0f\x11\x16\x1d\x1e\x1f"
#: CTCP's delimiter (``\x01ACTION waves\x01``), which IRC clients also expect.
CTCP_DELIMITER = "\x01"
#: Every control character: C0, DEL and C1 (U+0080-U+009F, which an 8-bit
#: terminal reads as ESC sequences: U+009B is CSI).
CONTROLS = "".join(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)))
_UNSAFE = re.compile(
    "[" + "".join(re.escape(c) for c in CONTROLS if c not in IRC_FORMATTING + CTCP_DELIMITER) + "]"
)
#: A lone UTF-16 surrogate (JSON's "\\ud800"): no UTF-8 encoding exists for it.
_SURROGATE = re.compile("[\ud800-\udfff]")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(name: str) -> str:
    """The case-folded key of a nick or room (ASCII case mapping).

    Called several times per message: ``str.lower`` of an ASCII string is the
    ASCII mapping and several times faster than ``translate`` with a table.
    """
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)


def control_picture(char: str) -> str:
    """A control character as ``cat -v`` shows it; a tab is shown as a space.

    C0 and DEL in caret notation (NUL ``^@``, BEL ``^G``, ESC ``^[``, DEL
    ``^?``); C1 as ``M-`` and the caret form of its low seven bits (U+009B,
    CSI, is ``M-^[``).
    """
    code = ord(char)
    if code == 0x09:
        return " "
    if code >= 0x80:
        return "M-" + control_picture(chr(code - 0x80))
    return "^" + chr(code ^ 0x40)


def _picture(match: re.Match[str]) -> str:
    return control_picture(match.group())


def clean_text(text: str) -> str:
    """``text`` with every control character but IRC formatting and CTCP made visible.

    The hub applies this to free text from every door (see the module
    docstring); a text with nothing to change is returned as is, cheaply.
    A lone surrogate (which no UTF-8 text can carry, so no door could send
    or store it) becomes U+FFFD.
    """
    if text.isprintable():
        return text
    if not text.isascii():
        text = _SURROGATE.sub("\ufffd", text)
    return _UNSAFE.sub(_picture, text)


#: Names no user may take: the IRC door answers ``/msg NickServ`` and
#: ``/msg ChanServ`` itself, and a user holding the name would get the
#: passwords other doors' users send it, or pose as the one who gives ops.
RESERVED_NICKS = frozenset({"nickserv", "chanserv"})


def nick_problem(nick: str) -> str | None:
    """Why ``nick`` is not a valid nickname, or None if it is."""
    if not nick:
        return "a nick cannot be empty"
    if len(nick) > NICK_MAX:
        return f"a nick is at most {NICK_MAX} characters"
    if not _NICK.match(nick):
        return (
            "a nick starts with a letter or one of []\\`_^{|} and continues with "
            "letters, digits, - or those"
        )
    if fold(nick) in RESERVED_NICKS:
        return "that name belongs to the accounts service"
    return None


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be a room password, or None if it can.

    RFC 2812 §2.3.1: a channel key is 1-23 printable characters with no
    space; we allow up to :data:`PASSWORD_MAX` and refuse commas and colons
    too, since IRC's JOIN separates keys with commas.
    """
    if not password:
        return "a password cannot be empty"
    if len(password) > PASSWORD_MAX:
        return f"a password is at most {PASSWORD_MAX} characters"
    if any(c in " ,:" or c in CONTROLS for c in password):
        return "a password has no spaces, commas, colons or control characters"
    return None


#: What no room name may contain: IRC's separators (space, comma; a colon
#: would start a trailing parameter) and control characters (BEL among them,
#: which Modern IRC names).
_ROOM_FORBIDDEN = frozenset(" ,:" + CONTROLS + "\u00a0\u1680\u2028\u2029\u3000\ufeff")


def room_problem(name: str) -> str | None:
    """Why ``name`` is not a valid room name, or None if it is.

    The reasons are meant for people: a door shows them as they are.
    """
    if not name.startswith("#"):
        return "a room name starts with #"
    if len(name) == 1:
        return "a room name needs something after the #"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > ROOM_MAX:
        return f"a room name is at most {ROOM_MAX} bytes (this one is {size})"
    bad = next((c for c in name if c in _ROOM_FORBIDDEN or c.isspace()
                or "\ud800" <= c <= "\udfff"), None)
    if bad is not None:
        shown = "a space" if bad.isspace() else repr(bad)
        return (f"a room name cannot contain {shown} "
                "(no spaces, commas, colons or control characters)")
    return None


@functools.lru_cache(maxsize=1024)
def _mask_regex(mask: str) -> re.Pattern[str]:
    parts = []
    chars = iter(mask)
    for char in chars:
        if char == "\\":  # an escaped wildcard stands for itself
            parts.append(re.escape(next(chars, "\\")))
        elif char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def mask_match(mask: str, text: str) -> bool:
    """IRC wildcard matching (Modern IRC, "Wildcard Expressions").

    ``*`` matches any run of characters and ``?`` exactly one; ``\\``
    escapes either. Everything else, ``[`` and ``]`` included (they are
    nick characters), matches itself: unlike :func:`fnmatch.fnmatch`.
    """
    return _mask_regex(mask).fullmatch(text) is not None
