"""One client's reading side, sans-I/O, and exactly-once, in-order accounting.

Bytes in (any split), counts out: :class:`Receiver` follows one client's
registration and join and hands every bench message to its :class:`Tally`;
:class:`Counts` sums a set of them. Pure, so the checks that make a run
trustworthy are unit-tested without a server; the worker only feeds it.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from sockhub.client.chatbench.plan import (
    MARKER,
    Plan,
    cap_names,
    irc_author,
    parse_irc,
    parse_payload,
)

#: The web door's JSON chat protocol (docs/web-protocol.md).
WS_SUBPROTOCOL = Subprotocol("sockhub.v1")
_OPCODES = frozenset(int(opcode) for opcode in Opcode)
#: A bench message as the web door writes it (docs/web-protocol.md: ``message``;
#: ``source`` is ``nick!user@host``); anything else, or the same in another key
#: order or spacing, goes to json.loads, at several times the cost: a test
#: (tests/cli/test_chat_bench.py) keeps this in step with the door's rendering.
_WS_MESSAGE = re.compile(
    rb'\{"type":"message","id":\d+,"room":"([^"\\]*)","nick":"([^"\\]*)",'
    rb'(?:"source":"[^"\\]*",)?"text":"bench~(\d+)~(\d+)~(\d+)"').match

#: A partial line longer than this is not a chat line: count it and drop it.
MAX_PARTIAL = 64 * 1024


def _fast_lines(plan: Plan) -> Any:
    """``findall`` over a chunk of whole lines: (nick digits, sender, seq, sent_ns) per
    bench message in the shape the plan's door writes it, each match one whole line.

    A chunk whose matches are as many as its newlines is all bench messages, and
    is counted without a Python step per line but the tally's (the paced load
    is 250k deliveries a second into one core); any other chunk takes the
    line-by-line path, which reports what is wrong with it.
    """
    if plan.mode == "irc":
        head = rb":b(\d+)![^ \r\n]* PRIVMSG " + re.escape(plan.room.encode()) + rb" :"
    elif plan.mode == "line":  # "[history]" replays go the slow way (and are skipped there)
        head = rb"(?!\[history\])[^~\n]* <b(\d+)> "
    else:
        return None
    return re.compile(rb"(?<![^\n])" + head + rb"bench~(\d+)~(\d+)~(\d+)\r?\n").findall


class SharedStream:
    """The bytes every receiver of one worker gets in a paced run, kept (and parsed) once.

    A chat server sends each room message to every member as the same bytes, in
    one order, so the receivers of a process read one stream: the first to
    read a stretch of it appends it here and parses its lines (a few hundred
    messages a second, not 250k deliveries); every other receiver only checks
    that its bytes are the same (``bytearray.startswith`` at its offset, a
    memcmp) and logs (time, offset). The per-delivery accounting, its
    :class:`Tally` and latencies, is replayed from that log after the window
    (:meth:`Receiver.settle`), so every check still holds per receiver. A
    receiver whose bytes differ, or a stretch that is not all bench message
    lines (a PING, an error, a garbled line), leaves the stream for the
    line-by-line path at that offset.
    """

    def __init__(self, plan: Plan) -> None:
        self.data = bytearray()
        #: Per complete message, in stream order: where its line ends, who sent it, etc.
        self.ends: array[int] = array("q")
        self.senders: array[int] = array("q")
        self.seqs: array[int] = array("q")
        self.sent_ns: array[int] = array("q")
        self.closed = False
        self._parsed = 0  # offset of the end of the last complete line
        self._findall = _fast_lines(plan)
        self._digits = [plan.nick(s)[1:].encode() for s in range(plan.senders)]

    def extend(self, more: bytes) -> bool:
        """Append bytes no receiver has read yet; False (and closed) unless they are bench
        message lines only, each from the author it names."""
        if self.closed or self._findall is None:
            return False
        data = self.data
        base = self._parsed
        tail = bytes(data[base:]) + more if len(data) > base else more
        end = tail.rfind(b"\n") + 1
        if len(tail) - end > MAX_PARTIAL:
            self.closed = True
            return False
        if end:
            whole = tail[:end]
            found = self._findall(whole)
            if len(found) != whole.count(b"\n"):
                self.closed = True
                return False
            digits = self._digits
            at = 0
            for nick, s, q, t in found:
                sender = int(s)
                if sender >= len(digits) or nick != digits[sender]:
                    self.closed = True  # the line-by-line path counts it as garbled
                    return False
                at = whole.index(b"\n", at) + 1
                self.ends.append(base + at)
                self.senders.append(sender)
                self.seqs.append(int(q))
                self.sent_ns.append(int(t))
            self._parsed = base + end
        data += more
        return True


class Tally:
    """Exactly-once, in-order accounting of what one client received.

    Each sender's messages are numbered 0..messages-1 and sent in that order
    on one TCP connection, so a receiver must see each number exactly once
    and in increasing order. A number seen twice is *duplicated*; a number
    arriving after a higher one from the same sender is *reordered*; a number
    never seen is *lost*; a sender or number outside the plan (or a sender's
    own message where no echo is expected) is *unexpected*.
    """

    __slots__ = ("_high", "_marks", "counts", "duplicated", "expected", "messages",
                 "received", "reordered", "skip", "unexpected")

    def __init__(self, senders: int, messages: int, *, skip: int | None = None) -> None:
        self.messages = messages
        self.skip = skip
        self._marks = [bytearray(messages) for _ in range(senders)]
        self._high = [-1] * senders
        #: Distinct messages received from each sender (what pacing reads).
        self.counts = [0] * senders
        self.expected = (senders - (skip is not None and 0 <= skip < senders)) * messages
        self.received = 0
        self.duplicated = 0
        self.reordered = 0
        self.unexpected = 0

    def record(self, sender: int, seq: int) -> bool:
        """Count one received message; True if it is the first copy of an expected one."""
        if not (0 <= sender < len(self._marks) and 0 <= seq < self.messages) or sender == self.skip:
            self.unexpected += 1
            return False
        marks = self._marks[sender]
        if marks[seq]:
            self.duplicated += 1
            return False
        marks[seq] = 1
        self.received += 1
        self.counts[sender] += 1
        if seq < self._high[sender]:
            self.reordered += 1
        else:
            self._high[sender] = seq
        return True

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def complete(self) -> bool:
        return self.received >= self.expected


class Receiver:
    """One client's reading side, sans-I/O: bytes in; readiness, errors and a Tally out.

    Args:
        plan: the run.
        client: this client's number.
        latencies: where to append send-to-receipt times in ns (shared by
            every receiver of a process, so merging is one array).
    """

    def __init__(self, plan: Plan, client: int, latencies: array[int] | None = None,
                 stream: SharedStream | None = None) -> None:
        self.plan = plan
        self.client = client
        self.tally = Tally(plan.senders, plan.messages,
                           skip=client if plan.skips_own(client) else None)
        self.latencies: array[int] = latencies if latencies is not None else array("q")
        self.greeted = False  # any line at all (IRC: the end of the MOTD): the server has us
        self.ready = False
        self.errors: list[str] = []
        self.garbled = 0
        self.last_ns = 0  # when the last expected message arrived
        #: IRC: what the client must send back (PONG, CAP REQ/END); the I/O drains it.
        self.outbox = bytearray()
        self.echo_acked = False
        self._caps: set[bytes] = set()
        self._partial = b""
        self._room = plan.room.encode()
        self._nicks = [plan.nick(s).encode() for s in range(plan.senders)]
        # Line mode: ready once the server reports our own join of the room
        # (it sends the line after the join is applied, so from then on every
        # message to the room reaches us). ncat: once it has said anything.
        self._ready_mark = (
            f" {plan.room} * {plan.nick(client)} joined\r".lower().encode()
            if plan.mode == "line" else b""
        )
        self._prefixes = [f" <{plan.nick(s)}> ".encode() for s in range(plan.senders)]
        self._findall = _fast_lines(plan)
        self._digits = [nick[1:] for nick in self._nicks]  # b"0001" of b"b0001"
        #: Paced runs: the process's shared stream, our offset in it (-1: not yet in
        #: it, -2: left it), and the (time, offset) of each read while in it.
        self._stream = stream if self._findall is not None else None
        self._pos = -1
        self._reads: array[int] = array("q")
        self._replayed = 0
        #: WebSocket mode: the client side of RFC 6455 (websockets' sans-I/O protocol).
        self._ws: ClientProtocol | None = None
        self._ws_open = False
        self._ws_buffer = b""
        self._fragments: list[bytes] = []
        self._room_folded = self._room.lower()
        self._own_nick = plan.nick(client)

    @property
    def complete(self) -> bool:
        if self._pos >= 0:
            assert self._stream is not None
            ends, want = self._stream.ends, self.tally.expected - self.tally.received
            return want <= 0 or (len(ends) >= self._replayed + want
                                 and self._pos >= ends[self._replayed + want - 1])
        return self.tally.complete

    def opening(self) -> bytes:
        """What to send as soon as the connection is made (IRC: registration; ws: handshake)."""
        if self.plan.mode != "ws":
            return self.plan.greeting(self.client)
        self._ws = ClientProtocol(parse_uri(self.plan.url), subprotocols=[WS_SUBPROTOCOL],
                                  max_size=None)
        self._ws.send_request(self._ws.connect())
        return b"".join(self._ws.data_to_send())

    def frame(self, payload: bytes) -> bytes:
        """``payload`` as it goes on the wire: WebSocket mode wraps it in a text frame."""
        ws = self._ws
        if ws is None:
            return payload
        ws.send_text(payload)
        return b"".join(ws.data_to_send())

    def feed(self, data: bytes, now_ns: int) -> None:
        """Account for received bytes (any split), all stamped as arriving at ``now_ns``."""
        if self._ws is not None:
            self._websocket(self._ws, data, now_ns)
            return
        if self._pos >= 0:
            self._in_stream(data, now_ns)
            return
        self._lines(data, now_ns)

    def _lines(self, data: bytes, now_ns: int) -> None:
        if self._partial:
            data = self._partial + data
        end = data.rfind(b"\n") + 1
        if end < len(data):
            self._partial = data[end:]
            data = data[:end]
            if len(self._partial) > MAX_PARTIAL:
                self.garbled += 1
                self._partial = b""
        else:
            self._partial = b""
        if not data:
            return
        if self._pos == -1 and self._stream is not None and self.ready and MARKER in data:
            start = data.rfind(b"\n", 0, data.find(MARKER)) + 1
            if not data.startswith(b"[history]", start):
                # The first bench message: from here on, the shared stream.
                rest, self._partial = data[start:] + self._partial, b""
                self._pos = 0
                if start:
                    self._lines(data[:start], now_ns)
                self._in_stream(rest, now_ns)
                return
        if self.plan.mode == "irc":
            self._irc(data, now_ns)
            return
        if not self.ready:
            self.greeted = True
            self.ready = not self._ready_mark or self._ready_mark in data.lower()
        if b"error:" in data:
            self.errors.extend(
                line.decode(errors="replace").strip()
                for line in data.split(b"\n") if line.startswith(b"error:")
            )
        if MARKER in data:
            self._messages(data, now_ns)

    def _in_stream(self, data: bytes, now_ns: int) -> None:
        """Our bytes are the shared stream's at our offset (or extend it): log the read."""
        stream = self._stream
        assert stream is not None
        pos = self._pos
        shared = stream.data
        have = len(shared) - pos
        if have >= len(data):
            same = shared.startswith(data, pos)
        elif have > 0:
            same = shared.startswith(data[:have], pos) and stream.extend(data[have:])
        else:
            same = stream.extend(data)
        if not same:
            self._leave_stream(data, now_ns)
            return
        self._pos = pos = pos + len(data)
        self._reads.append(now_ns)
        self._reads.append(pos)
        self.last_ns = now_ns

    def _leave_stream(self, data: bytes, now_ns: int) -> None:
        """Account for what we read of the stream, then read on line by line."""
        stream = self._stream
        assert stream is not None
        self.settle()
        done = self._replayed
        start = stream.ends[done - 1] if done else 0
        self._partial = bytes(stream.data[start : self._pos])
        self._pos = -2
        self._lines(data, now_ns)

    def settle(self) -> None:
        """Replay the stream reads logged so far into the tally and the latencies."""
        stream = self._stream
        reads = self._reads
        if stream is None or not reads:
            return
        ends, senders, seqs, sent_ns = stream.ends, stream.senders, stream.seqs, stream.sent_ns
        record, latency = self.tally.record, self.latencies.append
        index, count = self._replayed, len(ends)
        for i in range(0, len(reads), 2):
            now_ns, pos = reads[i], reads[i + 1]
            while index < count and ends[index] <= pos:
                if record(senders[index], seqs[index]):
                    latency(now_ns - sent_ns[index])
                index += 1
        self._replayed = index
        del reads[:]

    def _fast(self, data: bytes, now_ns: int) -> bool:
        """Count ``data`` if it is whole bench messages only (True); else leave it (False).

        The in-order case (each sender's next number) is the tally's
        :meth:`Tally.record` unrolled; anything else goes through it.
        """
        findall = self._findall
        if findall is None:
            return False
        found = findall(data)
        if len(found) != data.count(b"\n"):
            return False
        tally = self.tally
        high, marks, counts, record = tally._high, tally._marks, tally.counts, tally.record
        digits, skip, messages = self._digits, tally.skip, tally.messages
        senders = len(digits)
        latency = self.latencies.append
        got = 0
        for nick, s, q, t in found:
            sender = int(s)
            if sender >= senders or nick != digits[sender]:
                self.garbled += 1  # wrong author, or a mangled line
                continue
            seq = int(q)
            if seq == high[sender] + 1 and seq < messages and sender != skip:
                marks[sender][seq] = 1
                high[sender] = seq
                counts[sender] += 1
                got += 1
                latency(now_ns - int(t))
                self.last_ns = now_ns
            elif record(sender, seq):
                latency(now_ns - int(t))
                self.last_ns = now_ns
        tally.received += got
        return True

    def _messages(self, data: bytes, now_ns: int) -> None:
        if self._fast(data, now_ns):
            return
        line_mode = self.plan.mode == "line"
        record = self.tally.record
        latencies = self.latencies
        for line in data.split(b"\n"):
            try:
                parsed = parse_payload(line)
            except ValueError:
                self.garbled += 1
                continue
            if parsed is None:
                continue
            prefix, sender, seq, sent_ns = parsed
            if line_mode:
                if prefix.startswith(b"[history]"):  # replay of an earlier run
                    continue
                if not 0 <= sender < len(self._prefixes) or not prefix.endswith(
                    self._prefixes[sender]
                ):
                    self.garbled += 1  # wrong author, or a mangled line
                    continue
            elif prefix and not _is_ncat_prefix(prefix):
                self.garbled += 1
                continue
            if record(sender, seq):
                latencies.append(now_ns - sent_ns)
                self.last_ns = now_ns


    def _websocket(self, ws: ClientProtocol, data: bytes, now_ns: int) -> None:
        if self._ws_open:
            self._ws_frames(ws, data, now_ns)
            return
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Response):
                if ws.handshake_exc is not None:
                    self.errors.append(f"WebSocket handshake failed: {ws.handshake_exc}")
                else:
                    ws.send_text(self.plan.ws_hello(self.client))
                    # The server says nothing before our hello, so no frame
                    # bytes are buffered inside ``ws``: from here frames are
                    # split below.
                    self._ws_open = True
            elif isinstance(event, Frame):
                self._ws_frame(event, now_ns)
        for chunk in ws.data_to_send():  # the close handshake, the hello
            self.outbox += chunk

    def _ws_frames(self, ws: ClientProtocol, data: bytes, now_ns: int) -> None:
        """Split server frames (RFC 6455 §5.2: unmasked) without a Frame object each.

        websockets' reader costs the load generator about as much per frame
        as the server spends on the delivery; this loop is a third of it.
        Control frames still go through ``ws``: a ping's pong is masked by it.
        """
        if self._ws_buffer:
            data = self._ws_buffer + data
        end = len(data)
        pos = 0
        while end - pos >= 2:
            first, second = data[pos], data[pos + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                head = 4
                if end - pos < head:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4])
            elif length == 127:
                head = 10
                if end - pos < head:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10])
            if second & 0x80:  # a masked server frame: not WebSocket
                self.errors.append("the server sent a masked frame")
                self._ws_buffer = b""
                return
            if end - pos < head + length:
                break
            start = pos + head
            pos = start + length
            opcode = first & 0x0F
            if opcode == 1 and first & 0x80 and not self._fragments:  # a whole text frame
                match = _WS_MESSAGE(data, start, pos)  # no copy of the payload
                if match is None:  # not a bench message in the usual shape: parse it all
                    try:
                        self._ws_event(json.loads(data[start:pos]), now_ns)
                    except (ValueError, KeyError, TypeError):
                        self.garbled += 1
                    continue
                room, nick, sender, seq, sent_ns = match.groups()
                self._ws_message(room.lower() == self._room_folded, nick, int(sender), int(seq),
                                 int(sent_ns), now_ns)
                continue
            payload = data[start:pos]
            if opcode == Opcode.PING:
                ws.send_pong(payload)
                for chunk in ws.data_to_send():
                    self.outbox += chunk
            elif opcode in _OPCODES:
                self._ws_frame(Frame(Opcode(opcode), payload, fin=bool(first & 0x80)), now_ns)
            else:
                self.errors.append(f"the server sent a frame with opcode {opcode}")
        self._ws_buffer = data[pos:]

    def _ws_frame(self, frame: Frame, now_ns: int) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            if not frame.fin:
                self._fragments.append(bytes(frame.data))
                return
            data = bytes(frame.data)
            if self._fragments:
                data = b"".join([*self._fragments, data])
                self._fragments = []
            try:
                self._ws_event(json.loads(data), now_ns)
            except (ValueError, KeyError, TypeError):
                self.garbled += 1
        elif frame.opcode is Opcode.CLOSE and not self.errors:
            self.errors.append(f"the server closed the WebSocket: {bytes(frame.data)[2:]!r}")

    def _ws_event(self, event: dict[str, Any], now_ns: int) -> None:
        """One JSON object of the web door's protocol v1."""
        kind = event["type"]
        if kind == "message":
            text = event["text"]
            if not text.startswith("bench~"):
                return
            fields = text[6:].split("~")
            if len(fields) != 3:
                self.garbled += 1
                return
            self._ws_message(event["room"].lower() == self.plan.room.lower(),
                             event["nick"].encode(), int(fields[0]), int(fields[1]),
                             int(fields[2]), now_ns)
        elif kind == "welcome":
            self.greeted = True
        elif kind in ("joined", "history") and event["room"].lower() == self.plan.room.lower():
            # The join is applied: from now on every message to the room reaches us.
            if kind == "history" or event["nick"] == self._own_nick:
                self.ready = True
        elif kind == "error":
            self.errors.append(f"error {event.get('code')}: {event.get('message')}")

    def _ws_message(self, in_room: bool, nick: bytes, sender: int, seq: int, sent_ns: int,
                    now_ns: int) -> None:
        """One bench message seen over the WebSocket: check its author, count it."""
        if not in_room:
            return
        if not 0 <= sender < len(self._nicks) or nick != self._nicks[sender]:
            self.garbled += 1  # wrong author
            return
        if self.tally.record(sender, seq):
            self.latencies.append(now_ns - sent_ns)
            self.last_ns = now_ns

    def _irc(self, data: bytes, now_ns: int) -> None:
        if self.ready and self._fast(data, now_ns):
            return
        for line in data.split(b"\n"):
            if MARKER in line:
                self._irc_message(line, now_ns)
            elif line:
                self._irc_control(line)

    def _irc_message(self, line: bytes, now_ns: int) -> None:
        try:
            parsed = parse_payload(line)
        except ValueError:
            parsed = None
        if parsed is None:
            self.garbled += 1
            return
        prefix, sender, seq, sent_ns = parsed
        if not 0 <= sender < len(self._nicks) or irc_author(prefix, self._room) != self._nicks[
                sender]:
            self.garbled += 1  # wrong author or channel, or a mangled line
            return
        if self.tally.record(sender, seq):
            self.latencies.append(now_ns - sent_ns)
            self.last_ns = now_ns

    def _irc_control(self, line: bytes) -> None:
        """Registration, the join, PING and errors: everything but bench messages."""
        _, command, params = parse_irc(line)
        if command == b"PING":
            self.outbox += b"PONG :" + (params[-1] if params else b"") + b"\r\n"
        elif command == b"CAP" and len(params) >= 2:
            self._cap(params[1].upper(), params[2:])
        elif command in (b"376", b"422"):  # end of MOTD, or none: registered
            self.greeted = True
        elif command == b"366":  # end of NAMES: the join is applied
            if len(params) >= 2 and params[1].lower() == self._room.lower():
                self.ready = True
        elif command in (b"421", b"451") and b"CAP" in params:
            self._cap(b"LS", [b""])  # no CAP support: nothing offered
        elif command == b"ERROR" or (command.isdigit() and 400 <= int(command) < 600
                                     and command != b"422"):
            self.errors.append(line.decode(errors="replace").strip())

    def _cap(self, sub: bytes, rest: list[bytes]) -> None:
        if sub == b"LS":
            more = len(rest) >= 2 and rest[0] == b"*"
            self._caps |= cap_names(rest[-1] if rest else b"")
            if more:
                return
            if self.plan.wants_echo(self.client):
                if b"echo-message" in self._caps:
                    self.outbox += b"CAP REQ :echo-message\r\n"
                    return
                self.errors.append("the server does not offer echo-message")
            self.outbox += b"CAP END\r\n"
        elif sub in (b"ACK", b"NAK"):
            if sub == b"ACK" and b"echo-message" in cap_names(rest[-1] if rest else b""):
                self.echo_acked = True
            else:
                self.errors.append(f"CAP {sub.decode()} {b' '.join(rest).decode(errors='replace')}")
            self.outbox += b"CAP END\r\n"


def _is_ncat_prefix(prefix: bytes) -> bool:
    """``<user5> ``: ncat puts it before each chunk it relays (not each line)."""
    return prefix.startswith(b"<user") and prefix.endswith(b"> ") and prefix[5:-2].isdigit()


@dataclass
class Counts:
    """What a set of receivers saw, summed (one worker's, or the whole run's)."""

    expected: int = 0
    deliveries: int = 0
    duplicated: int = 0
    reordered: int = 0
    garbled: int = 0

    @property
    def lost(self) -> int:
        return self.expected - self.deliveries

    def add_receivers(self, receivers: Iterable[Receiver]) -> Counts:
        for receiver in receivers:
            receiver.settle()
            tally = receiver.tally
            self.expected += tally.expected
            self.deliveries += tally.received
            self.duplicated += tally.duplicated
            self.reordered += tally.reordered
            self.garbled += tally.unexpected + receiver.garbled
        return self

    def add(self, other: Counts) -> Counts:
        for name in ("expected", "deliveries", "duplicated", "reordered", "garbled"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self
