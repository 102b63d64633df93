"""The run's shape and its message format: who sends, who expects what, what a line says.

Shared by every process of a run (the parent forks the workers with one
:class:`Plan`) and by the pure accounting in :mod:`.receiver`; a module of
its own because it is the contract between the two sides of the bench
(what a sender writes is what a receiver parses).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

Mode = Literal["line", "ncat", "irc", "ws"]
MODES: tuple[Mode, ...] = ("line", "ncat", "irc", "ws")

#: Marks a bench message inside whatever prefix the server adds.
MARKER = b"bench~"


@dataclass(frozen=True)
class Plan:
    """The shape of one run, shared by every process: who sends, who expects what.

    Clients are numbered 0..clients-1; clients 0..senders-1 are also senders,
    and a sender's id is its client number.
    """

    clients: int
    senders: int
    messages: int
    room: str = "#bench"
    mode: Mode = "line"
    #: IRC mode: the senders negotiate ``echo-message`` (the server offers it).
    irc_echo: bool = False
    #: WebSocket mode: where the web door's ``/ws`` is (``ws://host:port/ws``).
    url: str = ""

    def nick(self, client: int) -> str:
        """The nick of a client in line and IRC mode: ``b0001`` for client 0."""
        return f"b{client + 1:04d}"

    @property
    def echoes(self) -> bool:
        """Does a sender get its own messages back (its acknowledgement)?"""
        return self.mode in ("line", "ws") or (self.mode == "irc" and self.irc_echo)

    def greeting(self, client: int) -> bytes:
        """What a client sends as soon as it is connected (IRC: registration)."""
        if self.mode != "irc":
            return b""
        return f"CAP LS 302\r\nNICK {self.nick(client)}\r\nUSER b 0 * :b\r\n".encode()

    def hello(self, client: int) -> bytes:
        """What a client sends to join the room (line mode: its nick too; ncat: nothing).

        WebSocket mode: the payload of one text frame (the JSON ``join``).
        """
        if self.mode == "ncat":
            return b""
        if self.mode == "irc":
            return f"JOIN {self.room}\r\n".encode()
        if self.mode == "ws":
            return _json({"type": "join", "room": self.room})
        return f"{self.nick(client)}\n/join {self.room}\n".encode()

    def wants_echo(self, client: int) -> bool:
        """IRC: a sender asks for ``echo-message`` when the run uses it."""
        return self.mode == "irc" and self.irc_echo and client < self.senders

    def skips_own(self, client: int) -> bool:
        """Without an echo (ncat, IRC without echo-message) a sender gets none of its own."""
        return not self.echoes and client < self.senders

    def ws_hello(self, client: int) -> bytes:
        """WebSocket mode: the JSON ``hello`` a client sends once the WebSocket is open."""
        return _json({"type": "hello", "version": 1, "nick": self.nick(client)})

    def wrap(self, text: str) -> bytes:
        """One bench message as the client sends it (WebSocket mode: a frame's payload)."""
        if self.mode == "irc":
            return f"PRIVMSG {self.room} :{text}\r\n".encode()
        if self.mode == "ws":
            return _json({"type": "say", "room": self.room, "text": text})
        return f"{text}\n".encode()

    def expected(self, client: int) -> int:
        """Messages ``client`` must receive."""
        return (self.senders - self.skips_own(client)) * self.messages

    @property
    def total_expected(self) -> int:
        """Deliveries of a perfect run: every message to every client that should get it."""
        return sum(self.expected(client) for client in range(self.clients))


def _json(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def message_text(sender: int, seq: int, sent_ns: int) -> str:
    """The text of one bench message; the server adds its own prefix around it."""
    return f"bench~{sender}~{seq}~{sent_ns}"


def parse_payload(line: bytes) -> tuple[bytes, int, int, int] | None:
    """Split a received line into (prefix, sender, seq, sent_ns).

    Returns None for lines that are not bench messages (joins, notices).

    Raises:
        ValueError: the line holds the marker but not a well-formed message.
    """
    start = line.find(MARKER)
    if start < 0:
        return None
    fields = line[start + len(MARKER) :].split(b"~")
    if len(fields) != 3:
        raise ValueError(f"malformed bench message: {line[:120]!r}")
    sender, seq, sent_ns = fields
    return line[:start], int(sender), int(seq), int(sent_ns)  # int() ignores the CR


def parse_irc(line: bytes) -> tuple[bytes, bytes, list[bytes]]:
    """Split one IRC line into (source, COMMAND, params); tags are dropped.

    ``:nick!u@h PRIVMSG #c :hi there`` gives ``(b"nick!u@h", b"PRIVMSG",
    [b"#c", b"hi there"])``; an empty line gives an empty command.
    """
    line = line.rstrip(b"\r\n")
    if line.startswith(b"@"):
        line = line.partition(b" ")[2]
    source = b""
    if line.startswith(b":"):
        source, _, line = line[1:].partition(b" ")
    head, colon, trailing = line.partition(b" :")
    if not colon and head.startswith(b":"):  # no middle params at all
        head, colon, trailing = b"", b":", head[1:]
    words = head.split()
    if not words:
        return source, b"", []
    return source, words[0].upper(), words[1:] + ([trailing] if colon else [])


def cap_names(text: bytes) -> set[bytes]:
    """The capability names of a ``CAP LS`` list (``sasl=PLAIN`` gives ``sasl``)."""
    return {item.partition(b"=")[0] for item in text.split()}


def irc_author(prefix: bytes, room: bytes) -> bytes | None:
    """The nick that sent a channel message, from what precedes its text.

    ``@time=… :b0002!~b@host PRIVMSG #bench :`` gives ``b0002``; anything
    that is not a PRIVMSG to ``room`` gives None.
    """
    if prefix.startswith(b"@"):
        prefix = prefix.partition(b" ")[2]
    nick, bang, rest = prefix.partition(b"!")
    if not (bang and nick.startswith(b":") and rest.lower().endswith(
            b" privmsg " + room.lower() + b" :")):
        return None
    return nick[1:]
