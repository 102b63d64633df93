"""RFC 6455 after the handshake, the server's side, sans-I/O: client bytes in, events out.

websockets judges the opening handshake (Origin, subprotocol, the 101 or
4xx: ``door.py: WebDoor._upgrade``); from the 101 on, the web door speaks
the protocol with this module alone, so an open WebSocket holds one small
:class:`ClientFrames` rather than a ``ServerProtocol`` with its parser
generator, buffers and queues for its whole life (issue 16: idle memory,
and websockets' parser was ~8% of the server at N=10).

:meth:`ClientFrames.receive` reads the client's bytes, however TCP cut
them, into events in order: a complete text message (``str``, UTF-8
checked), a complete binary message (``bytes``), :class:`Ping`,
:class:`Pong`, the client's :class:`Close` (checked), or a
:class:`Failure`: the close code and reason the server must fail the
connection with (RFC 6455 §7.1.7). Nothing after a close or a failure is
read. What to answer (a pong, the close's echo, a close frame) is the
door's to send, in the order of the events: the builders are here too.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Final

try:  # websockets' C unmasking (the handshake's library, a dependency anyway)
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C speedups
    from websockets.utils import apply_mask

#: Opcodes (RFC 6455 §5.2; §11.8).
CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA
_OPCODES = frozenset((CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG))

#: Close codes (RFC 6455 §7.4.1).
NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
POLICY = 1008
TOO_BIG = 1009
INTERNAL_ERROR = 1011

#: The codes a close frame may carry (§7.4.1, §7.4.2, and IANA's registry
#: for 1012-1014), besides 3000-4999 (§7.4.2: registered and private use).
#: 1004-1006 and 1015 are never sent in a frame; 1016-2999 are for future RFCs.
_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                          1014))

#: Fragments one message may come in. Each costs the server a little whatever
#: its size (an empty one is 6 bytes on the wire): without a cap, fragments of
#: nothing would hold memory that the size limit never counts. Browsers never
#: fragment what they send; 1009 past it (§7.4.1: too big to process).
FRAGMENTS_MAX = 1024
#: The most a 64-bit length may say: its top bit must be 0 (§5.2).
_LENGTH_MAX = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping (§5.5.2): answer it with a pong carrying the same payload."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong (§5.5.3): the client is there; an unsolicited one needs no answer."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The client's close frame, checked (§5.5.1, §7.1.5, §7.1.6): ``code`` None when it
    carried none (1005 is never sent). ``payload`` is what the echo carries."""

    code: int | None
    reason: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Failure:
    """The connection fails (§7.1.7): send a close frame with ``code`` and ``reason``, then
    close the TCP connection without waiting for the client's."""

    code: int
    reason: str


Event = str | bytes | Ping | Pong | Close | Failure


class _Fragments:
    """A fragmented message being put back together (§5.4): made only for one."""

    __slots__ = ("count", "data", "decoder")

    def __init__(self, text: bool) -> None:
        #: A text message's UTF-8, checked fragment by fragment (§8.1: fail as soon
        #: as it cannot be UTF-8; a character cut across two fragments is fine);
        #: what it decodes is dropped, the message is decoded once, whole.
        self.decoder = codecs.getincrementaldecoder("utf-8")() if text else None
        #: The payloads so far, in one buffer: what is held is what the size limit
        #: counts, however many fragments brought it.
        self.data = bytearray()
        self.count = 0

    @property
    def size(self) -> int:
        return len(self.data)


class ClientFrames:
    """What one client's bytes say, frame by frame (RFC 6455 §5, the server reading).

    ``max_size`` caps a message's data payload, fragments together (1009);
    control frames injected between fragments do not count against it.
    """

    __slots__ = ("_inbox", "_message", "done", "max_size")

    def __init__(self, max_size: int) -> None:
        #: The start of a frame not yet complete: b"" between frames, else a
        #: bytearray grown in place (a frame sent a byte at a time costs linear time).
        self._inbox: bytes | bytearray = b""
        self._message: _Fragments | None = None
        #: A close or a failure was read: nothing after it is (§1.4, §7.1.7).
        self.done = False
        self.max_size = max_size

    def receive(self, data: bytes) -> list[Event]:
        """The events of ``data`` (never empty), in order; an incomplete frame waits."""
        if self.done:
            return []
        inbox = self._inbox
        if inbox:
            assert isinstance(inbox, bytearray)
            inbox += data
            if len(inbox) < self._frame_end(inbox):
                return []
            data, self._inbox = bytes(inbox), b""
        events: list[Event] = []
        size = len(data)
        at = 0
        while at < size:
            if size - at < 2:
                self._inbox = bytearray(data[at:])
                break
            first, second = data[at], data[at + 1]
            # A final, masked TEXT or BINARY frame with no RSV bit: every frame of a
            # busy chat, and never one to refuse from its first two bytes.
            if second < 0x80 or (first != 0x81 and first != 0x82):
                refusal = _refusal(first, second)
                if refusal is not None:
                    self._fail(events, PROTOCOL_ERROR, refusal)
                    break
            length = second & 0x7F
            start = at + 6  # the two bytes, then the masking key (§5.2, §5.3)
            if length >= 126:  # a 16-bit or 64-bit extended length (§5.2)
                start = at + (8 if length == 126 else 14)
                if size < start - 4:  # (the masking key may wait: the length is enough)
                    self._inbox = bytearray(data[at:])
                    break
                length = int.from_bytes(data[at + 2:start - 4], "big")
                if length > _LENGTH_MAX:  # §5.2: "the most significant bit MUST be 0"
                    self._fail(events, PROTOCOL_ERROR, "invalid frame length")
                    break
            message = self._message
            if not first & 0x08 and length > self.max_size - (message.size if message else 0):
                # A data frame over what is left of the message: refused from its header,
                # its payload unread (§10.4; 1009, §7.4.1).
                self._fail(events, TOO_BIG, "message too big")
                break
            end = start + length
            if end > size:
                self._inbox = bytearray(data[at:])
                break
            payload = apply_mask(data[start:end], data[start - 4:start])  # §5.3
            at = end
            if message is None and first == 0x81:
                try:
                    events.append(payload.decode())  # §8.1: text is UTF-8
                except UnicodeDecodeError:
                    self._fail(events, INVALID_DATA, "text frames must be UTF-8")
                    break
            elif message is None and first == 0x82:
                events.append(payload)
            else:
                event = self._other(first, payload)
                if event is not None:
                    events.append(event)
                    if type(event) is Close or type(event) is Failure:
                        self.done, self._message = True, None
                        break
        return events

    def _fail(self, events: list[Event], code: int, reason: str) -> None:
        events.append(Failure(code, reason))
        self.done, self._message, self._inbox = True, None, b""

    def _frame_end(self, head: bytearray) -> int:
        """Where the frame that ``head`` begins ends, as far as its header tells (§5.2);
        0 (read it now) for a header that is already one to refuse."""
        if len(head) < 2:
            return 2
        first, second = head[0], head[1]
        if _refusal(first, second) is not None:
            return 0
        length = second & 0x7F
        start = 6
        if length >= 126:
            start = 8 if length == 126 else 14
            if len(head) < start - 4:
                return start - 4
            length = int.from_bytes(head[2:start - 4], "big")
            if length > _LENGTH_MAX:
                return 0
        message = self._message
        if not first & 0x08 and length > self.max_size - (message.size if message else 0):
            return 0
        return start + length

    def _other(self, first: int, payload: bytes) -> Event | None:
        """A frame off the fast path: a fragment, a control frame, or one out of place."""
        opcode = first & 0x0F
        message = self._message
        if opcode in (TEXT, BINARY):
            if message is not None:  # §5.4: no other message inside a fragmented one
                return Failure(PROTOCOL_ERROR, "expected a continuation frame")
            message = self._message = _Fragments(opcode == TEXT)
            # the first fragment is never final: a final one took the fast path
            return self._add(message, payload, final=False)
        if opcode == CONTINUATION:
            if message is None:  # §5.4: a continuation of nothing
                return Failure(PROTOCOL_ERROR, "unexpected continuation frame")
            return self._add(message, payload, final=bool(first & 0x80))
        if opcode == PING:
            return Ping(payload)
        if opcode == PONG:
            return Pong(payload)
        # CLOSE: §5.4 lets control frames come between fragments, a close too; the
        # unfinished message is dropped with the connection.
        return _close(payload)

    def _add(self, message: _Fragments, payload: bytes, *, final: bool) -> Event | None:
        """One fragment more; the whole message once ``final``."""
        message.count += 1
        if message.count > FRAGMENTS_MAX:
            return Failure(TOO_BIG, "message in too many fragments")
        message.data += payload
        decoder = message.decoder
        if decoder is not None:
            try:  # §8.1, fragment by fragment
                decoder.decode(payload, final)
            except UnicodeDecodeError:
                return Failure(INVALID_DATA, "text frames must be UTF-8")
            if _surrogate_ahead(decoder.getstate()[0]):
                return Failure(INVALID_DATA, "text frames must be UTF-8")
        if not final:
            return None
        self._message = None
        if decoder is not None:
            return message.data.decode()  # checked above: cannot fail
        return bytes(message.data)


def _surrogate_ahead(pending: bytes) -> bool:
    """Whether a decoder's held bytes already begin a UTF-16 surrogate (ED A0-BF).

    CPython's incremental decoder waits for the third byte before it refuses
    one, so a message cut there would only fail at its next non-empty
    fragment; §8.1 fails it as soon as it cannot be UTF-8 (RFC 3629 §3).
    """
    return len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0


def _refusal(first: int, second: int) -> str | None:
    """Why a client frame's first two bytes already make it one to refuse (1002), if they do.

    websockets' words for each, as it said them when it read our frames.
    """
    if not second & 0x80:
        return "incorrect masking"  # a client masks every frame (§5.1, §5.3)
    opcode = first & 0x0F
    if opcode not in _OPCODES:
        return "invalid opcode"  # §5.2: reserved for further frames
    if first & 0x70:
        return "reserved bits must be 0"  # §5.2: no extension is negotiated
    if opcode & 0x08:  # §5.5: a control frame
        if not first & 0x80:
            return "fragmented control frame"
        if second & 0x7F > 125:
            return "control frame too long"
    return None


def _close(payload: bytes) -> Close | Failure:
    """The client's close frame, checked (§5.5.1, §7.1.5, §7.1.6, §7.4)."""
    if not payload:
        return Close(None, "", b"")
    if len(payload) == 1:  # §5.5.1: a body starts with a two-byte code
        return Failure(PROTOCOL_ERROR, "close frame too short")
    code = int.from_bytes(payload[:2], "big")
    if code not in _CLOSE_CODES and not 3000 <= code < 5000:
        return Failure(PROTOCOL_ERROR, "invalid status code")
    try:
        reason = payload[2:].decode()  # §5.5.1: the reason is UTF-8
    except UnicodeDecodeError:
        return Failure(INVALID_DATA, "close reason must be UTF-8")
    return Close(code, reason, payload)


# The server's frames (§5.2: a server never masks; no extension, no RSV bit) --------------

def frame(opcode: int, data: bytes) -> bytes:
    """One whole unmasked frame with FIN set.

    websockets' ``Frame.serialize`` checks and runs extensions (none are
    negotiated here) at several times the cost; a test holds the two equal.
    """
    size = len(data)
    first = 0x80 | opcode
    if size < 126:
        return bytes((first, size)) + data
    if size < 0x10000:
        return bytes((first, 126)) + size.to_bytes(2, "big") + data
    return bytes((first, 127)) + size.to_bytes(8, "big") + data


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame: the code, then the reason cut to fit 125 bytes (§5.5, §5.5.1)."""
    data = reason.encode("utf-8", "replace")
    if len(data) > 123:  # cut on a character's boundary: the reason stays UTF-8
        data = data[:123].decode("utf-8", "ignore").encode()
    return frame(CLOSE, code.to_bytes(2, "big") + data)


def ping_frame(payload: bytes) -> bytes:
    """A ping (§5.5.2): at most 125 bytes of payload."""
    return frame(PING, payload[:125])


def pong_frame(payload: bytes) -> bytes:
    """The answer to a ping: the same payload (§5.5.3)."""
    return frame(PONG, payload)
