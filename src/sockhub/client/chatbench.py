"""``sockhub bench chat``: fan-out load on one chat room, checked message by message.

A chat server's work is fan-out: one line in, N lines out. So the unit here
is the *delivery* (one message reaching one client), and the question is not
only "how many a second" but "did every client get every message exactly
once, in its sender's order". Every message carries its sender, its sequence
number and its send time (``time.monotonic_ns()``: CLOCK_MONOTONIC is one
clock for the whole machine on Linux, so a receiver in another process can
subtract it), and every client checks what it receives.

The run has three phases, coordinated by the parent process over pipes so
that nothing waits on a sleep:

1. *setup*: each worker process connects its share of the clients and waits
   for each greeting, then (line mode) has them all register ``b0001``… and
   join the room at once: a chat server announces every join to the whole
   room, and joins that arrive together share its writes. A client is ready
   when it reads the server's own account of its join. Workers report ready.
   (IRC mode registers on connect, CAP negotiation included, is greeted by
   the end of the MOTD, and is ready at the ``366`` that ends its join.)
2. *window*: the parent says go; K senders each send M messages, paced by
   their acknowledgement (line mode: their own message coming back; ncat
   mode, which has no echo: a witness client in the same process receiving
   it) or by a fixed rate. Workers report their counts when every local
   client has everything, or when nothing has moved for a while.
3. *teardown*: only once every worker has reported does the parent let them
   disconnect, so a worker that finishes early does not make the server
   broadcast departures into the measured window.

The parsing and accounting (:class:`Plan`, :class:`Tally`, :class:`Receiver`)
are pure, byte-in and counts-out, and unit-tested alone; the asyncio and
multiprocessing code below them only moves bytes and numbers around.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import socket
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Literal, cast

from sockhub.engine import loops

Mode = Literal["line", "ncat", "irc"]
MODES: tuple[Mode, ...] = ("line", "ncat", "irc")

#: Marks a bench message inside whatever prefix the server adds.
MARKER = b"bench~"
#: A partial line longer than this is not a chat line: count it and drop it.
MAX_PARTIAL = 64 * 1024
#: Clients per worker process before another process is worth forking.
CLIENTS_PER_PROC = 50
#: Connection attempts in flight, all workers together. sockhub listens with
#: a backlog of 1,024; ncat with 10, and a burst past that leaves clients
#: half-connected and, in our runs, made ncat exit ("getpeername ... failed").
CONNECT_GATE: dict[Mode, int] = {"line": 512, "ncat": 8, "irc": 8}
#: Seconds the parent waits for an IRC server's ``CAP LS`` answer.
CAP_PROBE_TIMEOUT = 5.0
#: Seconds without any send or receipt after which a worker stops waiting.
SETTLE = 2.0
#: Seconds the parent allows past the deadline for workers to report and exit.
GRACE = 5.0


# --------------------------------------------------------------------------
# Pure part: the run's shape, the message format, the accounting.


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

    def nick(self, client: int) -> str:
        """The nick of a client in line and IRC mode: ``b0001`` for client 0."""
        return f"b{client + 1:04d}"

    @property
    def echoes(self) -> bool:
        """Does a sender get its own messages back (its acknowledgement)?"""
        return self.mode == "line" or (self.mode == "irc" and self.irc_echo)

    def greeting(self, client: int) -> bytes:
        """What a client sends as soon as it is connected (IRC: registration)."""
        if self.mode != "irc":
            return b""
        return f"CAP LS 302\r\nNICK {self.nick(client)}\r\nUSER b 0 * :b\r\n".encode()

    def hello(self, client: int) -> bytes:
        """What a client sends to join the room (line mode: its nick too; ncat: nothing)."""
        if self.mode == "ncat":
            return b""
        if self.mode == "irc":
            return f"JOIN {self.room}\r\n".encode()
        return f"{self.nick(client)}\n/join {self.room}\n".encode()

    def wants_echo(self, client: int) -> bool:
        """IRC: a sender asks for ``echo-message`` when the run uses it."""
        return self.mode == "irc" and self.irc_echo and client < self.senders

    def skips_own(self, client: int) -> bool:
        """Without an echo (ncat, IRC without echo-message) a sender gets none of its own."""
        return not self.echoes and client < self.senders

    def wrap(self, text: str) -> bytes:
        """One bench message as the client sends it."""
        if self.mode == "irc":
            return f"PRIVMSG {self.room} :{text}\r\n".encode()
        return f"{text}\n".encode()

    def expected(self, client: int) -> int:
        """Messages ``client`` must receive."""
        return (self.senders - self.skips_own(client)) * self.messages

    @property
    def total_expected(self) -> int:
        """Deliveries of a perfect run: every message to every client that should get it."""
        return sum(self.expected(client) for client in range(self.clients))


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

    def __init__(self, plan: Plan, client: int, latencies: array[int] | None = None) -> None:
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

    @property
    def complete(self) -> bool:
        return self.tally.complete

    def feed(self, data: bytes, now_ns: int) -> None:
        """Account for received bytes (any split), all stamped as arriving at ``now_ns``."""
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

    def _messages(self, data: bytes, now_ns: int) -> None:
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


    def _irc(self, data: bytes, now_ns: int) -> None:
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


def percentile(sorted_values: list[int], fraction: float) -> int:
    """The nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


@dataclass
class ChatBenchResult:
    """What one run measured (``--json`` prints this, plus ``ok``)."""

    target: str
    mode: str
    room: str
    clients: int
    senders: int
    messages: int
    rate: float | None
    window: int
    procs: int
    setup_s: float
    seconds: float
    sent: int
    expected: int
    deliveries: int
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost: int
    duplicated: int
    reordered: int
    garbled: int
    errors: int
    first_error: str
    client_cpu_s: float
    echo: bool = False  # IRC: the senders had echo-message

    @property
    def ok(self) -> bool:
        """Every message reached every client once and in order, and nothing failed."""
        return (self.errors == 0 and self.lost == 0 and self.duplicated == 0
                and self.reordered == 0 and self.garbled == 0
                and self.deliveries == self.expected)

    def report(self) -> str:
        pacing = (f"{self.rate:g} msg/s each" if self.rate else
                  "as fast as acknowledged" if self.window == 1 else
                  f"at most {self.window} unacknowledged each")
        cpu = 100.0 * self.client_cpu_s / self.seconds if self.seconds else 0.0
        lines = [
            f"bench chat {self.target} ({self.mode}{', echo-message' if self.echo else ''}): "
            f"{self.clients} clients in {self.room}, "
            f"{self.senders} senders x {self.messages} messages, {pacing}, "
            f"{self.procs} client process(es)",
            f"setup       {self.setup_s:.2f} s to connect and join",
            f"deliveries  {self.deliveries:,} of {self.expected:,}  "
            f"({self.deliveries_per_s:,.0f}/s over {self.seconds:.2f} s; "
            f"{self.sent:,} messages sent)",
            f"latency     p50 {self.p50_ms:.3f} ms   p99 {self.p99_ms:.3f} ms   "
            f"max {self.max_ms:.3f} ms",
            f"checks      lost {self.lost}  duplicated {self.duplicated}  "
            f"reordered {self.reordered}  garbled {self.garbled}",
            f"errors      {self.errors}" + (f"  (first: {self.first_error})"
                                            if self.first_error else ""),
            f"client CPU  {self.client_cpu_s:.2f} s in the window ({cpu:.0f}% of one core)",
            "result      " + ("ok" if self.ok else "FAILED"),
        ]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok})


# --------------------------------------------------------------------------
# I/O part: one worker process's clients, on one event loop.


class _Run:
    """One worker's progress: what is still outstanding, and when anything last moved."""

    def __init__(self, receivers: int) -> None:
        self.incomplete = receivers
        self.senders_left = 0
        self.done = asyncio.Event()
        self.last_activity = time.monotonic()
        self.first_send_ns = 0
        self.sent = 0
        self.errors: list[str] = []
        self.started = False

    def check(self) -> None:
        if self.started and self.incomplete <= 0 and self.senders_left <= 0:
            self.done.set()

    def fail(self, text: str) -> None:
        self.errors.append(text)


class _Client(asyncio.Protocol):
    """One connection: feeds its Receiver and wakes the senders it paces."""

    def __init__(self, receiver: Receiver, run: _Run) -> None:
        self.receiver = receiver
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.pacers: list[_Sender] = []
        self.closing = False
        self._counted = False
        self._want = ""  # "greeted" or "ready": what the waiter is waiting for
        self._waiter: asyncio.Future[str | None] | None = None

    def until(self, flag: str) -> asyncio.Future[str | None]:
        """A future resolved with None once ``receiver.<flag>``, or with a problem."""
        self._want = flag
        self._waiter = asyncio.get_running_loop().create_future()
        self._check_waiter()
        return self._waiter

    def _check_waiter(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self.receiver.errors:
            waiter.set_result(self.receiver.errors[0])
        elif getattr(self.receiver, self._want):
            waiter.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        greeting = self.receiver.plan.greeting(self.receiver.client)
        if greeting:
            self.transport.write(greeting)

    def data_received(self, data: bytes) -> None:
        receiver = self.receiver
        receiver.feed(data, time.monotonic_ns())
        if receiver.outbox:
            if self.transport is not None:
                self.transport.write(bytes(receiver.outbox))
            receiver.outbox.clear()
        run = self.run
        run.last_activity = time.monotonic()
        if not run.started:
            self._check_waiter()
        elif receiver.errors:
            run.done.set()  # the server refused a line (flood control?): the run failed
        for pacer in self.pacers:
            pacer.pump()
        if not self._counted and receiver.complete:
            self._counted = True
            run.incomplete -= 1
            run.check()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closing:
            return
        why = f"{self.receiver.plan.nick(self.receiver.client)}: server closed the connection"
        if exc is not None:
            why += f" ({exc})"
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(why)
        else:
            self.run.fail(why)
        self.run.done.set()  # nothing more will come: stop waiting

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


class _Sender:
    """Sends one sender's M messages, paced by acknowledgements or by a rate."""

    def __init__(self, client: _Client, acker: Receiver, plan: Plan, window: int,
                 rate: float | None, run: _Run) -> None:
        self.client = client
        self.sender = client.receiver.client
        self.acks = acker.tally.counts
        self.plan = plan
        self.window = window
        self.rate = rate
        self.run = run
        self.next = 0
        self.t0 = 0.0
        self.loop = asyncio.get_running_loop()

    def start(self) -> None:
        if self.rate is None:
            self.pump()
        else:
            self.t0 = self.loop.time()
            self._tick()

    def pump(self) -> None:
        """Closed loop: keep at most ``window`` messages unacknowledged."""
        if self.rate is not None or not self.run.started:
            return
        messages, acks, sender = self.plan.messages, self.acks, self.sender
        while self.next < messages and self.next - acks[sender] < self.window:
            self._send()

    def _tick(self) -> None:
        """Open loop: send what is due by now, then sleep until the next is due."""
        assert self.rate is not None
        due = min(self.plan.messages, int((self.loop.time() - self.t0) * self.rate) + 1)
        while self.next < due:
            self._send()
        if self.next < self.plan.messages:
            self.loop.call_at(self.t0 + self.next / self.rate, self._tick)

    def _send(self) -> None:
        transport = self.client.transport
        if transport is None or transport.is_closing():
            self.next = self.plan.messages
        else:
            now = time.monotonic_ns()
            if not self.run.first_send_ns:
                self.run.first_send_ns = now
            transport.write(self.plan.wrap(message_text(self.sender, self.next, now)))
            self.next += 1
            self.run.sent += 1
            self.run.last_activity = time.monotonic()
        if self.next >= self.plan.messages:
            self.run.senders_left -= 1
            self.run.check()


async def _connect(host: str, port: int, receiver: Receiver, run: _Run,
                   gate: asyncio.Semaphore, deadline: float) -> _Client | str:
    """Connect one client and wait for the server's first line."""
    loop = asyncio.get_running_loop()
    name = receiver.plan.nick(receiver.client)
    async with gate:
        try:
            _, client = await asyncio.wait_for(
                loop.create_connection(lambda: _Client(receiver, run), host, port),
                max(0.01, deadline - time.monotonic()),
            )
        except TimeoutError:
            return f"{name}: connect timed out"
        except OSError as exc:
            return f"{name}: {exc.strerror or exc}"
        return await _reach(client, "greeted", "no greeting", deadline)


async def _join(client: _Client, deadline: float) -> _Client | str:
    """Register and join (line mode), then wait until the server has us in the room."""
    assert client.transport is not None
    receiver = client.receiver
    client.transport.write(receiver.plan.hello(receiver.client))
    return await _reach(client, "ready", f"not in {receiver.plan.room}", deadline)


async def _reach(client: _Client, flag: str, failure: str, deadline: float) -> _Client | str:
    name = client.receiver.plan.nick(client.receiver.client)
    try:
        problem = await asyncio.wait_for(client.until(flag),
                                         max(0.01, deadline - time.monotonic()))
    except TimeoutError:
        problem = f"{name}: {failure} before the timeout"
    if problem:
        client.close()
        return problem
    return client


@dataclass(frozen=True)
class _Options:
    host: str
    port: int
    window: int
    rate: float | None
    deadline: float
    gate: int  # connection attempts in flight in one worker


async def _worker_main(plan: Plan, mine: list[int], opts: _Options,
                       inbox: Connection, pipe: Connection) -> None:
    """One process's share: set up, report ready, run on go, report, close on quit.

    Commands come on ``inbox``, watched by the loop (which makes its fd
    non-blocking, fine for one-word commands); reports go out on ``pipe``,
    which stays blocking because a report may hold megabytes of latencies.
    """
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def on_command() -> None:
        try:
            commands.put_nowait(inbox.recv())
        except (EOFError, OSError):  # the parent is gone: stop
            loop.remove_reader(inbox.fileno())
            commands.put_nowait("quit")

    loop.add_reader(inbox.fileno(), on_command)
    latencies: array[int] = array("q")
    receivers = [Receiver(plan, client, latencies) for client in mine]
    run = _Run(len(receivers))
    gate = asyncio.Semaphore(opts.gate)
    outcomes = await asyncio.gather(
        *(_connect(opts.host, opts.port, r, run, gate, opts.deadline) for r in receivers)
    )
    clients = [o for o in outcomes if isinstance(o, _Client)]
    problems = [o for o in outcomes if isinstance(o, str)]
    try:
        pipe.send(("connected", len(problems), problems[:3]))
        if await _next(commands, opts.deadline) != "join":
            return
        # Everyone, in every process, is connected: now all join at once.
        outcomes = await asyncio.gather(*(_join(c, opts.deadline) for c in clients))
        problems = [o for o in outcomes if isinstance(o, str)]
        pipe.send(("ready", len(problems), problems[:3]))
        if await _next(commands, opts.deadline) == "go":
            cpu0 = _cpu_seconds()
            await _window(plan, clients, opts, run)
            counts = Counts().add_receivers(receivers)
            errors = [e for r in receivers for e in r.errors] + run.errors
            pipe.send(("result", {
                "counts": asdict(counts),
                "latencies": latencies.tobytes(),
                "first_send_ns": run.first_send_ns,
                "last_ns": max((r.last_ns for r in receivers), default=0),
                "sent": run.sent,
                "errors": len(errors),
                "first_errors": errors[:3],
                "cpu": _cpu_seconds() - cpu0,
            }))
            # Hold the connections until every worker has counted (see module doc).
            await _next(commands, opts.deadline + GRACE)
    finally:
        loop.remove_reader(inbox.fileno())
        for client in clients:
            client.close()
        await asyncio.sleep(0)  # let the aborts' connection_lost callbacks run


async def _next(commands: asyncio.Queue[str], deadline: float) -> str:
    try:
        return await asyncio.wait_for(commands.get(), max(0.01, deadline - time.monotonic()))
    except TimeoutError:
        return "timeout"


async def _window(plan: Plan, clients: list[_Client], opts: _Options, run: _Run) -> None:
    """Start the local senders and wait until every local client has everything."""
    by_number = {c.receiver.client: c for c in clients}
    local = sorted(by_number)
    senders = []
    for index, number in enumerate(local):
        if number >= plan.senders or plan.messages == 0:
            continue
        client = by_number[number]
        # Line mode (and IRC with echo-message): its own message coming back is
        # the acknowledgement. Without an echo the next local client witnesses it.
        witness = index if plan.echoes else (index + 1) % len(local)
        acker = by_number[local[witness]]
        sender = _Sender(client, acker.receiver, plan, opts.window, opts.rate, run)
        acker.pacers.append(sender)
        senders.append(sender)
    run.senders_left = len(senders)
    run.started = True
    run.last_activity = time.monotonic()
    for sender in senders:
        sender.start()
    run.check()
    settle = max(SETTLE, 3.0 / opts.rate) if opts.rate else SETTLE
    while not run.done.is_set():
        now = time.monotonic()
        left = min(opts.deadline - now, run.last_activity + settle - now)
        if left <= 0:
            run.fail("timed out" if opts.deadline <= now else
                     f"nothing moved for {settle:g} s; giving up")
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.done.wait(), left)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _worker(plan: Plan, mine: list[int], opts: _Options, inbox: Connection,
            pipe: Connection) -> None:
    try:
        loops.run(_worker_main(plan, mine, opts, inbox, pipe))
    finally:
        inbox.close()
        pipe.close()


# --------------------------------------------------------------------------
# The parent: fork, coordinate, merge.


def irc_offers(host: str, port: int, capability: str,
               timeout: float = CAP_PROBE_TIMEOUT) -> bool:
    """Does the IRC server list ``capability`` in ``CAP LS``? One short, unregistered connection.

    A server that cannot be reached, does not know CAP or does not answer
    in ``timeout`` offers nothing (the run itself then reports what failed).
    """
    caps: set[bytes] = set()
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout) as sock:
            sock.sendall(b"CAP LS 302\r\n")
            buffer = b""
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                chunk = sock.recv(4096)
                if not chunk:
                    break
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    _, command, params = parse_irc(line)
                    if command == b"CAP" and len(params) >= 3 and params[1].upper() == b"LS":
                        caps |= cap_names(params[-1])
                        if params[2] != b"*" or len(params) < 4:
                            return capability.encode() in caps
                    elif command.isdigit() or command == b"ERROR":
                        return False
    except OSError:  # refused, reset, or timed out
        pass
    return False


def bench_chat(
    host: str,
    port: int,
    *,
    clients: int = 100,
    senders: int = 10,
    messages: int = 100,
    rate: float | None = None,
    room: str = "#bench",
    mode: str = "line",
    timeout: float = 60.0,
    procs: int | None = None,
    window: int = 1,
    on_phase: Callable[[str], None] | None = None,
) -> ChatBenchResult:
    """Run the fan-out load in worker processes and merge what they counted.

    ``procs`` defaults to one process per 50 clients, at most one per usable
    CPU. ``window`` is how many messages a sender may have unacknowledged
    (1: send the next when the previous one is seen). ``on_phase`` is called
    in this process with ``"connected"`` (every client greeted, none
    registered), ``"ready"`` (everyone joined, nothing sent yet) and
    ``"done"`` (everyone counted, nobody disconnected yet): the benchmark
    script samples the server's CPU time and memory there. ``messages=0``
    only connects and joins (a memory probe).

    IRC mode registers every client (``NICK``/``USER``, waiting for the end
    of the MOTD), joins ``room`` (waiting for ``366``) and sends ``PRIVMSG``.
    If the server lists ``echo-message`` in ``CAP LS`` (asked once, before
    the run), the senders request it and are paced by their own echo and
    every client expects K·M messages; otherwise they are paced like ncat
    mode and a sender expects none of its own.

    Raises:
        ValueError: a parameter out of range.
    """
    _check(clients, senders, messages, rate, room, mode, timeout, procs, window)
    start = time.monotonic()
    echo = mode == "irc" and senders > 0 and irc_offers(host, port, "echo-message",
                                                         min(timeout, CAP_PROBE_TIMEOUT))
    plan = Plan(clients, senders, messages, room, cast(Mode, mode), irc_echo=echo)
    if not plan.echoes and clients < 2:
        raise ValueError(f"{mode} mode without an echo needs at least 2 clients")
    usable = len(os.sched_getaffinity(0))
    if procs is None:
        procs = min(usable, max(1, clients // CLIENTS_PER_PROC))
    # Without an echo, a sender needs a witness next to it.
    procs = max(1, min(procs, clients if plan.echoes else clients // 2))
    gate = max(1, CONNECT_GATE[plan.mode] // procs)
    opts = _Options(host, port, window, rate, start + timeout, gate)
    context = multiprocessing.get_context("fork")
    workers: list[_Worker] = []
    try:
        for index in range(procs):
            mine = list(range(index, clients, procs))  # round-robin spreads the senders
            inbox, orders = context.Pipe(duplex=False)
            reports, outbox = context.Pipe(duplex=False)
            process = context.Process(target=_worker, args=(plan, mine, opts, inbox, outbox),
                                      daemon=True)
            process.start()
            inbox.close()
            outbox.close()
            workers.append(_Worker(process, orders, reports))
        return _coordinate(plan, opts, workers, start, on_phase)
    finally:
        for worker in workers:
            worker.tell("quit")
        for worker in workers:
            worker.process.join(max(0.1, opts.deadline + GRACE - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.orders.close()
            worker.reports.close()


@dataclass
class _Worker:
    """A forked worker and our ends of its two pipes."""

    process: multiprocessing.process.BaseProcess
    orders: Connection
    reports: Connection

    def tell(self, command: str) -> None:
        with contextlib.suppress(OSError):  # it may be gone already
            self.orders.send(command)


def _check(clients: int, senders: int, messages: int, rate: float | None, room: str,
           mode: str, timeout: float, procs: int | None, window: int) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if clients < 1:
        raise ValueError("--clients must be at least 1")
    if mode == "ncat" and clients < 2:
        raise ValueError("ncat mode needs at least 2 clients (ncat does not echo)")
    if not 0 <= senders <= clients:
        raise ValueError("--senders must be between 0 and --clients")
    if messages < 0:
        raise ValueError("--messages must not be negative")
    if rate is not None and not rate > 0:
        raise ValueError("--rate must be more than 0")
    if not timeout > 0:
        raise ValueError("--timeout must be more than 0")
    if procs is not None and procs < 1:
        raise ValueError("procs must be at least 1")
    if window < 1:
        raise ValueError("window must be at least 1")
    if mode != "ncat" and (not room.startswith("#") or len(room) < 2 or " " in room):
        raise ValueError(f"--room must look like #name, not {room!r}")


def _coordinate(plan: Plan, opts: _Options, workers: list[_Worker], start: float,
                on_phase: Callable[[str], None] | None) -> ChatBenchResult:
    """Walk every worker through the phases together; stop at the first failed one."""
    pipes = [worker.reports for worker in workers]
    errors: list[str] = []
    error_count = 0
    setup_s = 0.0
    for phase, then in (("connected", "join"), ("ready", "go")):
        replies = _gather(pipes, phase, opts.deadline)
        for pipe in pipes:
            reply = replies.get(pipe)
            if reply is None:
                error_count += 1
                errors.append(f"a client process was not {phase} in time")
            elif reply[1]:
                error_count += reply[1]
                errors.extend(reply[2])
        if error_count:
            return _merge(plan, opts, len(workers), setup_s, [], error_count, errors)
        setup_s = time.monotonic() - start
        if on_phase is not None:
            on_phase(phase)
        for worker in workers:
            worker.tell(then)
    replies = _gather(pipes, "result", opts.deadline + GRACE)
    if on_phase is not None:
        on_phase("done")
    results = [replies[p][1] for p in pipes if p in replies]
    if len(results) < len(pipes):
        error_count += len(pipes) - len(results)
        errors.append("a client process did not report its counts")
    return _merge(plan, opts, len(workers), setup_s, results, error_count, errors)


def _gather(pipes: list[Connection], kind: str, deadline: float) -> dict[Connection, Any]:
    """Each pipe's next message of ``kind``, until ``deadline`` (missing = failed)."""
    replies: dict[Connection, Any] = {}
    waiting = list(pipes)
    while waiting and (left := deadline - time.monotonic()) > 0:
        for pipe in wait(waiting, left):
            conn = cast(Connection, pipe)
            waiting.remove(conn)
            try:
                message = conn.recv()
            except (EOFError, OSError):
                continue
            if isinstance(message, tuple) and message[0] == kind:
                replies[conn] = message
    return replies


def _merge(plan: Plan, opts: _Options, procs: int, setup_s: float,
           results: list[dict[str, Any]], error_count: int,
           errors: list[str]) -> ChatBenchResult:
    counts = Counts()
    merged: array[int] = array("q")
    first_send = min((r["first_send_ns"] for r in results if r["first_send_ns"]), default=0)
    last = max((r["last_ns"] for r in results), default=0)
    sent = 0
    cpu = 0.0
    for result in results:
        counts.add(Counts(**result["counts"]))
        chunk: array[int] = array("q")
        chunk.frombytes(result["latencies"])
        merged.extend(chunk)
        sent += result["sent"]
        error_count += result["errors"]
        errors.extend(result["first_errors"])
        cpu += result["cpu"]
    counts.expected = plan.total_expected  # a missing worker's messages count as lost
    values = sorted(merged)
    seconds = (last - first_send) / 1e9 if first_send and last > first_send else 0.0
    target = f"[{opts.host}]:{opts.port}" if ":" in opts.host else f"{opts.host}:{opts.port}"
    return ChatBenchResult(
        target=target,
        mode=plan.mode,
        room=plan.room,
        clients=plan.clients,
        senders=plan.senders,
        messages=plan.messages,
        rate=opts.rate,
        window=opts.window,
        procs=procs,
        setup_s=round(setup_s, 3),
        seconds=round(seconds, 6),
        sent=sent,
        expected=counts.expected,
        deliveries=counts.deliveries,
        deliveries_per_s=counts.deliveries / seconds if seconds else 0.0,
        p50_ms=percentile(values, 0.50) / 1e6,
        p99_ms=percentile(values, 0.99) / 1e6,
        max_ms=(values[-1] / 1e6) if values else 0.0,
        lost=counts.lost,
        duplicated=counts.duplicated,
        reordered=counts.reordered,
        garbled=counts.garbled,
        errors=error_count,
        first_error=errors[0] if errors else "",
        client_cpu_s=round(cpu, 3),
        echo=plan.mode == "irc" and plan.irc_echo,
    )
