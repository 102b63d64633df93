"""IRC messages, sans-I/O: framing, parsing, serializing, numerics.

Theory of operation
-------------------

An IRC stream is a sequence of lines, each ending with CR LF (Modern IRC,
"Message Format"; a lone LF is accepted too, as the Modern document asks of
servers). :class:`IrcFramer` cuts the stream into lines without ever
holding more than :data:`MAX_LINE` bytes: a longer line is *discarded* up to
its line ending and reported as :data:`OVERLONG`, so the connection survives
and the door can answer ``417 ERR_INPUTTOOLONG`` instead of hanging up.

:func:`parse_message` turns one line into an :class:`IrcMessage`::

    ['@' <tags> SPACE] [':' <source> SPACE] <command> <params> <crlf>

and enforces the two size limits of the wire:

* the message without its tags is at most 512 bytes *with* its CR LF
  (RFC 1459 §2.3), so :data:`MAX_BODY` = 510 bytes here;
* the tag data a client sends is at most 4094 bytes (IRCv3 message-tags,
  "Size limit": ``'@' <tag_data 4094> ' '``). Servers "MUST reply with
  ERR_INPUTTOOLONG ... and MUST NOT truncate tags".

For an over-long body the Modern document lets a server either answer
ERR_INPUTTOOLONG or truncate; sockhub refuses (raises
:class:`IrcInputTooLong`), because a silently shortened message is worse
than a refused one the user can resend.

The codec decides nothing about replies: it raises, and the door turns the
error into a numeric (one place, see ``doors/irc/door.py``).

:func:`serialize` is the inverse, used for every line the server sends: it
adds the ``:`` before a last parameter that needs it and never lets a CR,
LF or NUL inside a parameter split a line in two (line injection).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sockhub.errors import DecodeError, LimitExceeded, ProtocolError

# Limits ----------------------------------------------------------------------

#: Bytes of a message without tags and without its CR LF: 512 - 2 (RFC 1459 §2.3).
MAX_BODY = 510
#: Bytes of tag data (between '@' and the space) a client may send (message-tags).
MAX_CLIENT_TAG_DATA = 4094
#: The whole tags section, '@' and trailing space included, server and client
#: tags combined (message-tags "combined_max"): what a client must accept.
MAX_TAGS_SECTION = 8191
#: The longest line the framer buffers: a full tags section, a full body and
#: CR LF. Anything longer cannot be valid and is discarded unread.
MAX_LINE = MAX_TAGS_SECTION + MAX_BODY + 2


class IrcInputTooLong(LimitExceeded):
    """A line, its tags or its body past the IRC limits: answer 417."""


class IrcDecodeError(DecodeError):
    """A line that is not UTF-8. ``command`` is its command, if one could be read."""

    def __init__(self, message: str, command: str = "*") -> None:
        super().__init__(message)
        self.command = command


class IrcSyntaxError(ProtocolError):
    """A line that is not an IRC message at all (no command, a NUL byte)."""


# Framing ---------------------------------------------------------------------


class Overlong:
    """Marks a line that was longer than the framer's limit and was dropped."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "OVERLONG"


OVERLONG = Overlong()


class IrcFramer:
    """Split a byte stream into IRC lines (CR LF or LF), bounded.

    Args:
        max_line: the longest line kept, in bytes, without its ending.
            Longer lines are dropped as they arrive and reported as
            :data:`OVERLONG` once their ending is seen.
    """

    __slots__ = ("_buffer", "_discarding", "max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self.max_line = max_line
        #: The part line waiting for its LF: the one shared empty ``bytes`` while
        #: there is none, which is nearly always (a bytearray each was 56 B of
        #: every idle client, issue 16).
        self._buffer = b""
        self._discarding = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | Overlong]:
        """Add received bytes; return complete lines (endings removed) in order.

        One ``split`` of what arrived (a busy client sends many lines per
        read) rather than a search and two copies per line (issue 16). A part
        line waiting is joined to what arrived in one copy.
        """
        out: list[bytes | Overlong] = []
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return out
            self._discarding = False
            out.append(OVERLONG)
            data = data[end + 1 :]
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        lines = data.split(b"\n")
        rest = lines.pop()  # after the last LF: part of a line, or b""
        max_line = self.max_line
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            out.append(OVERLONG if len(line) > max_line else line)
        if rest:
            # A partial line may hold max_line bytes and a CR waiting for its LF.
            if len(rest) > max_line + 1:
                self._discarding = True
            else:
                self._buffer = rest
        return out


# Messages ----------------------------------------------------------------------

_TAG_KEY = re.compile(r"\+?(?:[A-Za-z0-9][A-Za-z0-9.\-]*/)?[A-Za-z0-9\-]+\Z")
_COMMAND = re.compile(r"[A-Za-z]+\Z|[0-9]{3}\Z")
_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPE = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})


@dataclass(frozen=True, slots=True)
class IrcMessage:
    """One IRC message.

    Attributes:
        command: upper-cased command or three-digit numeric.
        params: parameters, the ``:`` of a trailing one removed (Modern IRC:
            a trailing parameter "MUST NOT be treated specially" once parsed).
        source: the prefix without its ``:``, or None.
        tags: tag keys to unescaped values (``""`` for a tag without value).
    """

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def valid_command(self) -> bool:
        """A command made of letters, or a three-digit numeric."""
        return bool(_COMMAND.match(self.command))

    def to_bytes(self) -> bytes:
        return serialize(self.command, self.params, source=self.source, tags=self.tags)


def parse_message(line: bytes) -> IrcMessage:
    """Parse one line (without its CR LF) sent by a client.

    Raises:
        IrcInputTooLong: tag data over :data:`MAX_CLIENT_TAG_DATA` bytes, or a
            body over :data:`MAX_BODY` bytes.
        IrcDecodeError: the line is not UTF-8.
        IrcSyntaxError: NUL byte, or no command.
    """
    if b"\0" in line:
        raise IrcSyntaxError("NUL byte in message")
    tags: dict[str, str] = {}
    rest = line
    if rest.startswith(b"@"):
        space = rest.find(b" ")
        if space < 0:
            raise IrcSyntaxError("tags without a command")
        raw_tags = rest[1:space]
        if len(raw_tags) > MAX_CLIENT_TAG_DATA:
            raise IrcInputTooLong(
                f"tag data longer than {MAX_CLIENT_TAG_DATA} bytes", limit=MAX_CLIENT_TAG_DATA
            )
        rest = rest[space:].lstrip(b" ")
        tags = _parse_tags(raw_tags)
    if len(rest) > MAX_BODY:
        raise IrcInputTooLong(f"message longer than {MAX_BODY + 2} bytes", limit=MAX_BODY)
    try:
        text = rest.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IrcDecodeError(
            f"invalid UTF-8 at byte {exc.start}", _guess_command(rest)
        ) from None
    source: str | None = None
    if text.startswith(":"):
        source, _, text = text[1:].partition(" ")
        text = text.lstrip(" ")
    command, _, text = text.partition(" ")
    if not command:
        raise IrcSyntaxError("no command")
    params: list[str] = []
    while text:
        text = text.lstrip(" ")
        if not text:
            break
        if text.startswith(":"):
            params.append(text[1:])
            break
        param, _, text = text.partition(" ")
        params.append(param)
    return IrcMessage(command.upper(), tuple(params), source, tags)


def _guess_command(rest: bytes) -> str:
    words = rest.decode("latin-1").split()
    if words and words[0].startswith(":"):
        words = words[1:]
    if words and _COMMAND.match(words[0]):
        return words[0].upper()
    return "*"


def _parse_tags(raw: bytes) -> dict[str, str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IrcDecodeError(f"invalid UTF-8 in tags at byte {exc.start + 1}") from None
    tags: dict[str, str] = {}
    for item in text.split(";"):
        key, _, value = item.partition("=")
        if not _TAG_KEY.match(key):
            continue  # malformed keys carry no meaning we could relay: drop them
        tags[key] = unescape_tag_value(value)  # a repeated key: the last one wins
    return tags


def unescape_tag_value(value: str) -> str:
    """Undo message-tags escaping; a lone trailing backslash is dropped."""
    if "\\" not in value:
        return value
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        nxt = next(chars, "")
        out.append(_UNESCAPE.get(nxt, nxt))
    return "".join(out)


def escape_tag_value(value: str) -> str:
    return value.translate(_ESCAPE)


def format_tags(tags: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """``@a=b;c`` (with the ``@``, without the trailing space); ``""`` if none."""
    items = tags.items() if isinstance(tags, Mapping) else tags
    parts = [f"{k}={escape_tag_value(v)}" if v else k for k, v in items]
    return "@" + ";".join(parts) if parts else ""


#: Commands whose last parameter is free text: it is always sent with a ``:``,
#: as servers traditionally do, for clients that look for " :" to find it.
_TEXT_LAST = frozenset({"PRIVMSG", "NOTICE", "PART", "KICK", "TOPIC", "CAP", "FAIL", "PONG"})
_TEXT_ONLY = frozenset({"QUIT", "ERROR", "AWAY"})


def serialize(
    command: str,
    params: Iterable[str] = (),
    *,
    source: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> bytes:
    """One wire line, CR LF included.

    The last parameter gets a ``:`` when it is empty, contains a space or
    starts with ``:``, and always for numerics and commands whose last
    parameter is text (``PRIVMSG #c :hi``), which the Modern document
    allows and every client reads. A middle parameter that cannot be one
    (empty, with a space, starting with ``:``; it can only come from a
    client's own trailing parameter echoed back) is made into one, with
    ``*`` for empty and ``_`` for spaces, so the output path never fails.
    CR, LF and NUL inside any part are replaced by spaces so that no value
    can inject a second line.
    """
    parts: list[str] = []
    if tags:
        parts.append(format_tags(tags))
    if source:
        parts.append(":" + source)
    parts.append(command)
    plist = list(params)
    force = command in _TEXT_ONLY or (
        len(plist) >= 2 and (command in _TEXT_LAST or command.isdigit())
    )
    for i, param in enumerate(plist):
        last = i == len(plist) - 1
        if last and (force or not param or " " in param or param.startswith(":")):
            parts.append(":" + param)
        elif not last and (not param or " " in param or param.startswith(":")):
            parts.append(("*" + param if param.startswith(":") else param or "*").replace(" ", "_"))
        else:
            parts.append(param)
    line = " ".join(parts)
    if "\r" in line or "\n" in line or "\0" in line:
        line = line.replace("\r", " ").replace("\n", " ").replace("\0", " ")
    data = line.encode("utf-8")
    tag_bytes = len(parts[0].encode("utf-8")) + 1 if tags else 0
    excess = len(data) - tag_bytes - MAX_BODY
    if excess > 0 and plist:
        # Never send more than 512 bytes of message: cut the last parameter
        # (a topic, a reason) on a character boundary. Callers that must not
        # lose text (PRIVMSG) split it first, see split_utf8.
        data = data[: len(data) - excess]
        data = data.decode("utf-8", errors="ignore").encode("utf-8")
    return data + b"\r\n"


def format_time(ts: float) -> str:
    """The server-time tag value: ``YYYY-MM-DDThh:mm:ss.sssZ`` in UTC.

    Milliseconds are truncated, never rounded up, so a message's time tag
    never names a later instant than the message (history queries compare
    the same truncation, see ``store/history.py``).
    """
    millis = math.floor(ts * 1000)
    seconds, ms = divmod(millis, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms:03d}Z"


def parse_time(text: str) -> float | None:
    """The inverse of :func:`format_time`; None if ``text`` is not one."""
    if not text.endswith("Z"):
        return None
    try:
        stamp = datetime.strptime(text[:-1], "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        try:
            stamp = datetime.strptime(text[:-1], "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            return None
    return stamp.replace(tzinfo=UTC).timestamp()


def split_utf8(text: str, max_bytes: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``max_bytes`` UTF-8 bytes.

    Cuts fall on character boundaries, preferably after a space in the
    second half of a piece, so a long chat message reads naturally as
    several IRC messages.
    """
    if max_bytes < 4:
        raise ValueError("max_bytes must leave room for one character")
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return [text]
    pieces: list[str] = []
    while len(data) > max_bytes:
        cut = max_bytes
        while cut > 0 and (data[cut] & 0xC0) == 0x80:  # inside a character
            cut -= 1
        space = data.rfind(b" ", max_bytes // 2, cut)
        if space > 0:
            cut = space + 1
        pieces.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    if data:
        pieces.append(data.decode("utf-8"))
    return pieces


# Numerics (names as in ergo's irc/numerics.go and the Modern IRC document) ---

RPL_WELCOME = "001"
RPL_YOURHOST = "002"
RPL_CREATED = "003"
RPL_MYINFO = "004"
RPL_ISUPPORT = "005"
RPL_UMODEIS = "221"
RPL_LUSERCLIENT = "251"
RPL_LUSEROP = "252"
RPL_LUSERUNKNOWN = "253"
RPL_LUSERCHANNELS = "254"
RPL_LUSERME = "255"
RPL_LOCALUSERS = "265"
RPL_GLOBALUSERS = "266"
RPL_AWAY = "301"
RPL_USERHOST = "302"
RPL_ISON = "303"
RPL_UNAWAY = "305"
RPL_NOWAWAY = "306"
RPL_WHOISUSER = "311"
RPL_WHOISSERVER = "312"
RPL_WHOISOPERATOR = "313"
RPL_ENDOFWHO = "315"
RPL_WHOISIDLE = "317"
RPL_ENDOFWHOIS = "318"
RPL_WHOISCHANNELS = "319"
RPL_WHOWASUSER = "314"
RPL_ENDOFWHOWAS = "369"
RPL_LISTSTART = "321"
RPL_LIST = "322"
RPL_LISTEND = "323"
RPL_CHANNELMODEIS = "324"
RPL_CREATIONTIME = "329"
RPL_NOTOPIC = "331"
RPL_TOPIC = "332"
RPL_TOPICTIME = "333"
RPL_INVITELIST = "336"
RPL_ENDOFINVITELIST = "337"
RPL_INVITING = "341"
RPL_VERSION = "351"
RPL_WHOREPLY = "352"
RPL_NAMREPLY = "353"
RPL_LINKS = "364"
RPL_ENDOFLINKS = "365"
RPL_WHOSPCRPL = "354"
RPL_ENDOFNAMES = "366"
RPL_BANLIST = "367"
RPL_ENDOFBANLIST = "368"
RPL_INFO = "371"
RPL_MOTD = "372"
RPL_ENDOFINFO = "374"
RPL_MOTDSTART = "375"
RPL_ENDOFMOTD = "376"
RPL_YOUREOPER = "381"
RPL_TIME = "391"
ERR_UNKNOWNERROR = "400"
ERR_NOSUCHNICK = "401"
ERR_NOSUCHSERVER = "402"
ERR_NOSUCHCHANNEL = "403"
ERR_WASNOSUCHNICK = "406"
ERR_CANNOTSENDTOCHAN = "404"
ERR_TOOMANYCHANNELS = "405"
ERR_TOOMANYTARGETS = "407"
ERR_NOORIGIN = "409"
ERR_INVALIDCAPCMD = "410"
ERR_NORECIPIENT = "411"
ERR_NOTEXTTOSEND = "412"
ERR_INPUTTOOLONG = "417"
ERR_UNKNOWNCOMMAND = "421"
ERR_NOMOTD = "422"
ERR_NONICKNAMEGIVEN = "431"
ERR_ERRONEUSNICKNAME = "432"
ERR_NICKNAMEINUSE = "433"
ERR_USERNOTINCHANNEL = "441"
ERR_NOTONCHANNEL = "442"
ERR_USERONCHANNEL = "443"
ERR_NOTREGISTERED = "451"
ERR_NEEDMOREPARAMS = "461"
ERR_ALREADYREGISTERED = "462"
ERR_PASSWDMISMATCH = "464"
ERR_CHANNELISFULL = "471"
ERR_UNKNOWNMODE = "472"
ERR_INVITEONLYCHAN = "473"
ERR_BANNEDFROMCHAN = "474"
ERR_BADCHANNELKEY = "475"
ERR_BADCHANMASK = "476"
ERR_BANLISTFULL = "478"
ERR_NOPRIVILEGES = "481"
ERR_CHANOPRIVSNEEDED = "482"
ERR_UMODEUNKNOWNFLAG = "501"
ERR_USERSDONTMATCH = "502"
ERR_HELPNOTFOUND = "524"
RPL_WHOISSECURE = "671"
ERR_INVALIDMODEPARAM = "696"
RPL_HELPSTART = "704"
RPL_HELPTXT = "705"
RPL_ENDOFHELP = "706"
