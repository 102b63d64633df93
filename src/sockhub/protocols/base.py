"""The public API for writing a service: sans-I/O protocol classes.

Theory of operation
-------------------

A service is a class; the engine makes one instance per connection and
drives it with four calls, like Twisted's ``Protocol`` but without a
transport inside::

    connection_made(info)   once, before any data
    receive_data(data)      each time bytes arrive, split however TCP likes
    receive_eof()           the peer half-closed its side
    connection_lost()       the connection is gone, for whatever reason

In between, the protocol *queues* what it wants to say with :meth:`send`
and asks to hang up with :meth:`close`. A protocol that needs time (a
keep-alive, a delay) asks its :attr:`clock`, which the engine provides; a
test provides a manual one and moves time by hand. After every call the engine takes
the queued output and writes it, and closes once the protocol asked to and
the queue is flushed (through :meth:`data_to_send` and
:meth:`close_expected` when a subclass overrides them, else straight from
the queue and the flag they read). The protocol never touches a socket, a
timer or the event loop, so it can be tested by feeding it bytes (see
``tests/helpers.py``), and the engine alone owns limits, back-pressure,
timeouts and shutdown.

:class:`LineProtocol` adds line framing, UTF-8 and error replies on top,
so a line service is a single method::

    class Shout(LineProtocol):
        def line_received(self, line: str) -> None:
            self.send_line(line.upper() + "!")

:class:`DatagramProtocol` is the same idea for UDP: one instance per
listening endpoint, one call per datagram.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar
from typing import Protocol as TypingProtocol

from sockhub.codec.lines import LineDecoder, decode_utf8, encode_line
from sockhub.errors import DecodeError, LineTooLong
from sockhub.limits import Limits

Address = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What a protocol may know about its connection.

    Attributes:
        peer: printable peer address, ``"127.0.0.1:50312"``, ``"[::1]:50312"``
            or ``"unix"``.
        local: printable local address.
        transport: ``"tcp"``, ``"tls"``, ``"unix"`` or ``"udp"``.
        service: the service's name as configured (``"echo"``).
        limits: the server's limits; line services read ``max_line`` here.
        options: service-specific settings from the command line or TOML.
    """

    peer: str = "test"
    local: str = "test"
    transport: str = "tcp"
    service: str = "test"
    limits: Limits = field(default_factory=Limits)
    options: Mapping[str, Any] = field(default_factory=dict)


class Timer(TypingProtocol):
    def cancel(self) -> None: ...


class Clock(TypingProtocol):
    """Time and timers for one connection, owned by the engine.

    ``time()`` is monotonic seconds, for intervals and timers; ``wall()`` is
    Unix seconds, for timestamps users see. ``call_later(delay, callback)`` runs
    ``callback`` once, after which the engine writes whatever it queued and
    closes if it asked to; timers of a closed connection never run. The
    engine runs a timer of 10 s or more on a coarse wheel: up to a second
    late, never early (``engine/clock.py``).
    """

    def time(self) -> float: ...

    def wall(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class ReadingControl(TypingProtocol):
    """What a protocol may ask of its connection beyond the clock (:meth:`Protocol.set_reading`)."""

    def set_reading(self, reading: bool, /) -> None: ...


class _NoControls:
    """The controls of a protocol no engine drives: asking changes nothing."""

    def set_reading(self, reading: bool, /) -> None:
        pass


_NO_CONTROLS = _NoControls()


class _NoTimer:
    def cancel(self) -> None:
        pass


class StoppedClock:
    """The clock of a protocol no engine drives: time stands still at 0.

    Timers never fire. Tests that need time pass a manual clock instead.
    """

    def time(self) -> float:
        return 0.0

    def wall(self) -> float:
        return 0.0

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return _NoTimer()


_STOPPED = StoppedClock()


class Protocol:
    """A byte-stream service. Subclass it and override :meth:`receive_data`.

    The base class echoes nothing and ignores input; see
    :class:`sockhub.protocols.echo.Echo` for the smallest useful service.
    """

    __slots__ = (
        "_closing", "_outgoing", "active", "clock", "controls", "file_to_send", "info",
        "read_into", "wake",
    )

    #: What keeps the connection clear of the engine's ``idle_timeout``. False:
    #: any byte received, for byte streams such as echo. True: only
    #: :attr:`active`, which the protocol sets whenever a complete line, frame
    #: or message arrives, so that a client trickling half a line one byte at
    #: a time is idle (it would otherwise hold its slot forever).
    counts_messages: ClassVar[bool] = False

    def __init__(self) -> None:
        self.info = ConnectionInfo()
        self._outgoing: list[bytes] = []
        self._closing = False
        #: Set by a ``counts_messages`` protocol on each complete message;
        #: read and cleared by the engine's idle check.
        self.active = False
        #: Set by the engine before ``connection_made``: time and timers.
        self.clock: Clock = _STOPPED
        #: Set by the engine. Call it after queueing output from outside
        #: receive_data (a chat message pushed to this client): the engine
        #: then writes it, coalescing every wake-up of one loop iteration
        #: into one write per connection.
        self.wake: Callable[[], None] = _nothing
        #: A file region queued with :meth:`send_file`, until the engine takes it.
        self.file_to_send: FileRegion | None = None
        #: Set by the engine: its connection, which :meth:`set_reading` asks.
        #: One reference, not a bound method per connection (64 B of every
        #: idle client, issue 16).
        self.controls: ReadingControl = _NO_CONTROLS
        #: Set by the engine. ``read_into(True)``: the engine receives into
        #: buffers this protocol lends (:meth:`get_buffer`, then
        #: :meth:`buffer_updated`; asyncio's ``BufferedProtocol``) instead of a
        #: fresh ``bytes`` per read to :meth:`receive_data`, until
        #: ``read_into(False)``. For bulk data that has a home (an upload).
        #: Only a protocol that overrides :meth:`get_buffer` is given one.
        self.read_into: Callable[[bool], None] = _ignore

    # Called by the engine (or a test) -------------------------------------

    def connection_made(self, info: ConnectionInfo) -> None:
        """The connection is open. Override to greet the peer; call super()."""
        self.info = info

    def receive_data(self, data: bytes) -> None:
        """Bytes arrived. ``data`` is never empty. Override this."""

    def get_buffer(self, sizehint: int) -> bytearray | memoryview:
        """After ``read_into(True)``: a non-empty writable buffer for the next read."""
        raise NotImplementedError

    def buffer_updated(self, nbytes: int) -> None:
        """After ``read_into(True)``: ``nbytes`` arrived at the start of the last buffer."""
        raise NotImplementedError

    def receive_eof(self) -> None:
        """The peer will send no more. By default, close once flushed."""
        self.close()

    def connection_lost(self) -> None:
        """The connection is closed; nothing more can be sent. Override to clean up."""

    def closing_notice(self, reason: str) -> None:
        """The server is about to close this connection (shutdown, idle).

        ``reason`` is a short phrase such as ``"server shutting down"``.
        Byte services say nothing by default; line services send an
        ``error:`` line. The engine calls :meth:`close` afterwards.
        """

    def pause_writing(self) -> None:
        """The peer is not keeping up: more than ``write_high_water`` bytes are unsent.

        Services that produce output on their own (command output, file
        blocks) should stop producing until :meth:`resume_writing`; the
        engine has already stopped reading from the peer.
        """

    def resume_writing(self) -> None:
        """The unsent bytes fell below the low-water mark: produce again."""

    def file_sent(self, sent: int, error: str | None) -> None:
        """The region of :meth:`send_file` is out: ``sent`` bytes, or an ``error``.

        ``sent`` below the region's ``count`` means the file was shorter
        than promised (or the connection failed): the protocol decides.
        """

    @classmethod
    def refusal(cls, reason: str) -> bytes:
        """The bytes sent to a client refused before it was admitted.

        Called on the class (no instance exists yet) when a connection
        limit is reached. One line, so nc and telnet users can read it.
        """
        return encode_line(f"error: {reason}")

    def data_to_send(self) -> list[bytes]:
        """Take the queued output.

        The engine calls this (and :meth:`close_expected`) after every call only
        when a subclass overrides either; otherwise it reads ``_outgoing`` and
        ``_closing`` itself (engine/connection.py, engine/server.py), one call
        fewer per event. Tests that drive a protocol by hand call it.
        """
        out = self._outgoing
        if out:
            self._outgoing = []
        return out

    def close_expected(self) -> bool:
        """True once the protocol wants the connection closed."""
        return self._closing

    # Called by subclasses ---------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue bytes for the peer. Ignored once :meth:`close` was called."""
        if data and not self._closing:
            self._outgoing.append(data)

    def close(self) -> None:
        """Hang up after everything queued so far has been sent."""
        self._closing = True

    def set_reading(self, reading: bool) -> None:
        """``set_reading(False)`` stops reading from the peer, ``set_reading(True)``
        starts again: back-pressure for a protocol whose own consumer (a disk, a
        worker thread, a password check) falls behind, as the engine already does
        for the peer's side when writes back up. Does nothing without an engine."""
        self.controls.set_reading(reading)

    def send_file(self, region: FileRegion) -> None:
        """Have the engine send part of a file after the bytes queued so far.

        The engine hands it to the kernel (``sendfile``) where it can, so the
        bytes never pass through Python. Until :meth:`file_sent` is called
        the protocol should queue nothing more: the engine holds it back.
        """
        if not self._closing:
            self.file_to_send = region


@dataclass(frozen=True, slots=True)
class FileRegion:
    """``count`` bytes of an open binary ``file`` from ``offset``, for :meth:`Protocol.send_file`.

    The protocol never opens the file: the service does, and keeps it open
    until :meth:`Protocol.file_sent`.
    """

    file: BinaryIO
    offset: int
    count: int


def _nothing() -> None:
    pass


def _ignore(_: bool) -> None:
    pass


class LineProtocol(Protocol):
    """A text service, one line at a time. Override :meth:`line_received`.

    Input lines end with LF or CRLF and must be UTF-8; output lines end with
    CRLF (the network's line ending, RFC 854). A line that is not valid UTF-8
    gets an ``error:`` line and is skipped; the connection stays up. A line
    longer than ``limits.max_line`` gets an ``error:`` line and a close,
    because the stream's framing cannot be trusted after it. Only complete
    lines count as activity against ``idle_timeout`` (``counts_messages``).
    """

    __slots__ = ("_decoder",)

    counts_messages = True

    newline = b"\r\n"

    def __init__(self) -> None:
        super().__init__()
        self._decoder = LineDecoder(self.info.limits.max_line)

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        self._decoder = LineDecoder(info.limits.max_line)

    def line_received(self, line: str) -> None:
        """One line of text arrived, without its line ending. Override this."""

    def send_line(self, text: str) -> None:
        """Queue one line; CR or LF inside ``text`` become spaces."""
        self.send(encode_line(text, self.newline))

    def send_error(self, message: str) -> None:
        """Queue an ``error: <message>`` line, the line services' error form."""
        self.send_line(f"error: {message}")

    def receive_data(self, data: bytes) -> None:
        try:
            lines = self._decoder.feed(data)
        except LineTooLong as exc:
            self._dispatch(exc.frames)
            self.send_error(f"line too long (max {exc.limit} bytes); closing")
            self.close()
            return
        if lines:
            self.active = True
            self._dispatch(lines)

    def receive_eof(self) -> None:
        last = self._decoder.flush()
        if last is not None:
            self._dispatch([last])
        self.close()

    def closing_notice(self, reason: str) -> None:
        self.send_error(reason)

    def _dispatch(self, lines: list[bytes]) -> None:
        for raw in lines:
            if self._closing:
                return
            try:
                text = decode_utf8(raw)
            except DecodeError as exc:
                self.send_error(f"{exc}; line ignored")
                continue
            self.line_received(text)


class DatagramProtocol:
    """A datagram service: one instance per listening endpoint.

    Override :meth:`receive_datagram` and answer with :meth:`send_datagram`.
    Datagrams larger than ``limits.max_frame`` are dropped by the engine
    before they reach the protocol.
    """

    def __init__(self) -> None:
        self.info = ConnectionInfo(transport="udp")
        self._outgoing: list[tuple[bytes, Address]] = []

    def connection_made(self, info: ConnectionInfo) -> None:
        """The endpoint is bound."""
        self.info = info

    def receive_datagram(self, data: bytes, addr: Address) -> None:
        """A datagram arrived from ``addr``. Override this."""

    def send_datagram(self, data: bytes, addr: Address) -> None:
        """Queue a datagram for ``addr``."""
        self._outgoing.append((data, addr))

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """Take the queued datagrams (the engine calls this after every call)."""
        out = self._outgoing
        if out:
            self._outgoing = []
        return out
