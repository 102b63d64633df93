"""StreamConnection: the asyncio side of one client, around a sans-I/O protocol.

This is the only place that writes to a client, arms its timers or closes it.
Per connection it enforces, from :class:`~sockhub.limits.Limits`:

* ``idle_timeout``: one timer per connection, ticking every quarter of the
  timeout. A read only sets a flag (reading the clock on every read cost
  ~0.5 µs of a ~8 µs echo round trip); a tick that finds the flag clear
  for a whole timeout closes the connection, so a client is closed after
  between 1 and 1.25 timeouts of silence, never before. An ``idle_timeout``
  of four times ``WHEEL_MIN_DELAY`` (40 s) or more puts the ticks on the server's
  timer wheel, each up to ``WHEEL_TICK`` late and each scheduled from the
  last: then the bound is about 1.25 timeouts plus up to ~5 s. For a protocol
  with ``counts_messages`` (line services, the chat doors) the tick reads
  the protocol's own flag instead, set per complete line: a client
  trickling half a line is silent.
* ``write_high_water``: past it asyncio calls :meth:`pause_writing`; we stop
  reading from the client (back-pressure: an echo client that does not read
  its replies cannot make us buffer more) and arm ``write_timeout``.
* ``write_buffer_max``: server-initiated sends cannot be paused, so a client
  whose unsent bytes pass this is dropped at once as a slow consumer.
* a close that cannot flush (the peer stopped reading) is cut after
  ``drain_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from types import MethodType
from typing import TYPE_CHECKING, Any, cast

from sockhub.codec.lines import encode_line
from sockhub.engine.clock import WHEEL_MIN_DELAY
from sockhub.protocols.base import ConnectionInfo, FileRegion, Protocol, Timer

if TYPE_CHECKING:
    from sockhub.engine.server import StreamServer

log = logging.getLogger("sockhub.connection")
#: Bytes per read when a file region is copied rather than sent by the kernel.
FILE_CHUNK = 256 * 1024


def format_address(address: Any) -> str:
    """``('::1', 5000, 0, 0)`` → ``[::1]:5000``; ``('1.2.3.4', 5)`` → ``1.2.3.4:5``."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, str | bytes) and address:
        return f"unix:{address if isinstance(address, str) else address.decode()}"
    return "unix"


class StreamConnection(asyncio.Protocol):
    """One TCP, TLS or Unix-socket client, driving one sans-I/O protocol."""

    # Slots: ten thousand idle clients should cost kilobytes each, not tens.
    __slots__ = (
        "_active",
        "_admitted",
        "_buffered",
        "_close_handle",
        "_closed_event",
        "_closing",
        "_drain_waiter",
        "_file_task",
        "_idle_handle",
        "_lost",
        "_quiet_since",
        "_reading_held",
        "_write_handle",
        "_writing_paused",
        "limits",
        "loop",
        "peer",
        "peer_ip",
        "plain_output",
        "protocol",
        "server",
        "transport",
    )

    def __init__(self, server: StreamServer) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.protocol: Protocol | None = None
        self.peer = "unknown"
        self.peer_ip: str | None = None
        self._closed_event: asyncio.Event | None = None
        self._lost = False
        self._active = False
        self._quiet_since = 0.0
        self._idle_handle: Timer | None = None
        self._write_handle: asyncio.TimerHandle | None = None
        self._close_handle: asyncio.TimerHandle | None = None
        self._writing_paused = False
        #: The protocol asked us to stop reading (``Protocol.set_reading``).
        self._reading_held = False
        self._closing = False
        self._admitted = False
        #: Sending a protocol's FileRegion; its other output waits meanwhile.
        self._file_task: asyncio.Task[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        #: Set while the protocol lends the read buffers (``Protocol.read_into``).
        self._buffered: _BufferedReads | None = None
        #: The protocol keeps Protocol's own output queue (``data_to_send`` and
        #: ``close_expected`` not overridden): the server's end-of-turn flush
        #: may then take the queue itself (:meth:`StreamServer._flush_dirty`).
        self.plain_output = False

    # asyncio callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peername = transport.get_extra_info("peername")
        self.peer = format_address(peername)
        if isinstance(peername, tuple):  # AF_INET or AF_INET6 (a Unix peer's is a str)
            # Interned: connections from one address share the string (a
            # NAT, a load test); it goes with the last of them.
            self.peer_ip = sys.intern(peername[0])
            # TCP_NODELAY (Nagle + delayed ACK adds up to ~40 ms to small
            # request/response exchanges) is set by both loops on every TCP
            # transport they make (asyncio's _SelectorSocketTransport, uvloop's
            # TCPTransport.new); asking for the "socket" here to set it again
            # made uvloop build and keep a PseudoSocket, 72 B of every idle
            # client (issue 16). tests/engine/test_engine_limits.py checks it.
        refusal = self.server.admit(self)
        if refusal is not None:
            self.server.noise.log(
                f"{self.server.name}: refused {{count}} more connections",
                "%s: refused %s: %s", self.server.name, self.peer, refusal, detail=refusal,
            )
            transport.write(self.server.refusal(refusal))
            transport.close()
            return
        self._admitted = True
        transport.set_write_buffer_limits(high=self.limits.write_high_water)
        protocol = self.server.make_protocol()
        # Not a bound method that calls on: wake() runs once per chat
        # delivery, and one Python frame fewer is measurable there. A method
        # object binding the server's schedule_flush (bound once per server)
        # to this connection calls it with no frame between, as a
        # functools.partial did, in 64 B where the partial (its bound method,
        # argument tuple and empty keyword dict) took ~250 B (issue 16).
        protocol.wake = MethodType(self.server.flush_soon, self)
        protocol.controls = self
        kind = type(protocol)
        if kind.get_buffer is not Protocol.get_buffer:  # it can lend buffers: reads into them
            protocol.read_into = self.read_into  # (a bound method each: 64 B of every idle client)
        protocol.clock = self
        self.protocol = protocol
        self.plain_output = (kind.data_to_send is Protocol.data_to_send
                             and kind.close_expected is Protocol.close_expected)
        banner = self.server.banner
        if banner:
            transport.write(encode_line(banner))
        protocol.connection_made(
            ConnectionInfo(
                peer=self.peer,
                local=sys.intern(format_address(transport.get_extra_info("sockname"))),
                transport=self.server.transport_name,
                service=self.server.name,
                limits=self.limits,
                options=self.server.config.options,
            )
        )
        if self.limits.idle_timeout is not None:
            self._quiet_since = self.server.wheel.time()
            self._idle_handle = self._later(self.limits.idle_timeout / 4,
                                            StreamConnection._idle_check)
        self.flush()

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        if protocol is None or self._closing:
            return
        self._active = True
        protocol.receive_data(data)
        if self._file_task is not None:
            return  # output waits until the file is out
        # flush(), inlined: this is the per-read hot path of every service.
        if self.plain_output:  # Protocol's own queue: taken here, not by two calls
            out = protocol._outgoing
            if out:
                paused = self._writing_paused
                if len(out) == 1:
                    reply = out[0]
                    out.clear()  # before the write: pause_writing may queue more
                    self.transport.write(reply)  # type: ignore[union-attr]
                else:
                    protocol._outgoing = []
                    self.transport.writelines(out)  # type: ignore[union-attr]
                if paused:
                    self._check_write_buffer()
            if protocol.file_to_send is not None:
                self._start_file()
            elif protocol._closing:
                self._close_gracefully()
            return
        out = protocol.data_to_send()
        if out:
            paused = self._writing_paused
            if len(out) == 1:
                self.transport.write(out[0])  # type: ignore[union-attr]
            else:
                self.transport.writelines(out)  # type: ignore[union-attr]
            if paused:
                self._check_write_buffer()
        if protocol.file_to_send is not None:
            self._start_file()
        elif protocol.close_expected():
            self._close_gracefully()

    def eof_received(self) -> bool:
        protocol = self.protocol
        if protocol is None or self._closing:
            return False
        protocol.receive_eof()
        self.flush()
        # True keeps our half open so queued replies still go out; the
        # protocol decides when to close.
        return not self._closing

    def pause_writing(self) -> None:
        self._writing_paused = True
        assert self.transport is not None
        if not self._closing:
            self.transport.pause_reading()
        timeout = self.limits.write_timeout
        if timeout is not None and self._write_handle is None and not self._closing:
            self._write_handle = self.loop.call_later(timeout, self.abort, "not reading")
        if self.protocol is not None:
            self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._write_handle is not None:
            self._write_handle.cancel()
            self._write_handle = None
        if self.transport is not None and not self._closing and not self._reading_held:
            self.transport.resume_reading()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.protocol is not None:
            self.protocol.resume_writing()
            self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for handle in (self._idle_handle, self._write_handle, self._close_handle):
            if handle is not None:
                handle.cancel()
        if self._file_task is not None:
            self._file_task.cancel()
        self._closing = True
        if self._admitted:
            self.server.forget(self)
            assert self.protocol is not None
            try:
                self.protocol.connection_lost()
            except Exception:
                log.exception("%s: connection_lost failed for %s", self.server.name, self.peer)
        self._lost = True
        if self._closed_event is not None:
            self._closed_event.set()

    @property
    def closed(self) -> asyncio.Event:
        """Set once the connection is gone (made on demand: most are never awaited)."""
        if self._closed_event is None:
            self._closed_event = asyncio.Event()
            if self._lost:
                self._closed_event.set()
        return self._closed_event

    # Used by the engine and by doors ---------------------------------------

    def flush(self) -> None:
        """Write whatever the protocol queued; close if it asked to.

        Doors call this after pushing server-initiated messages into the
        protocol (chat fan-out); the engine calls it after every event.
        """
        protocol = self.protocol
        transport = self.transport
        if (protocol is None or transport is None or transport.is_closing()
                or self._file_task is not None):
            return
        out = protocol.data_to_send()
        if out:
            # Only output queued while already paused counts against
            # write_buffer_max: one large reply may cross the high-water mark.
            paused = self._writing_paused
            if len(out) == 1:
                transport.write(out[0])
            else:
                transport.writelines(out)
            if paused and self._check_write_buffer():
                return
        if protocol.file_to_send is not None:
            self._start_file()
        elif protocol.close_expected():
            self._close_gracefully()

    def _check_write_buffer(self) -> bool:
        """Drop a client whose unsent bytes passed ``write_buffer_max``; True if dropped."""
        assert self.transport is not None
        if self.transport.get_write_buffer_size() > self.limits.write_buffer_max:
            if not self._lost and not self._closing:
                self.server.metrics.slow_dropped += 1
            self.abort("write buffer over limit")
            return True
        return False

    def set_reading(self, reading: bool) -> None:
        """The protocol's back-pressure: stop (False) or resume (True) reading from the peer.

        Reading resumes only when neither the protocol nor a backed-up write
        buffer (:meth:`pause_writing`) holds it.
        """
        self._reading_held = not reading
        transport = self.transport
        if transport is None or self._closing or transport.is_closing():
            return
        if not reading:
            transport.pause_reading()
        elif not self._writing_paused:
            transport.resume_reading()

    def read_into(self, lent: bool) -> None:
        """Receive into the protocol's buffers (True) or as fresh ``bytes`` (False).

        Swaps the transport's protocol for a :class:`_BufferedReads` that
        asyncio drives as a ``BufferedProtocol`` (``recv_into`` the lent
        buffer: no allocation, no copy), and back. Reading is restarted so
        that uvloop, which picks its read callbacks when reading starts,
        sees the change too.
        """
        transport = self.transport
        if (lent == (self._buffered is not None) or transport is None or self._closing
                or transport.is_closing()):
            return
        if lent:
            self._buffered = _BufferedReads(self)
            transport.set_protocol(self._buffered)
        else:
            self._buffered = None
            transport.set_protocol(self)
        if not self._reading_held and not self._writing_paused:
            transport.pause_reading()
            transport.resume_reading()

    def _buffer_updated(self, nbytes: int) -> None:
        protocol = self.protocol
        if protocol is None or self._closing:
            return
        self._active = True
        protocol.buffer_updated(nbytes)
        self.flush()

    def schedule_flush(self) -> None:
        """Flush at the end of this loop iteration, once, however often called."""
        self.server.schedule_flush(self)

    # The protocol's clock (sockhub.protocols.base.Clock) ---------------------

    def time(self) -> float:
        """The event loop's monotonic time, in seconds."""
        return self.loop.time()

    def wall(self) -> float:
        """Unix time, for timestamps users see."""
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` in ``delay`` seconds, then write what it queued.

        Nothing runs once the connection is gone, so a protocol need not
        cancel its timers on ``connection_lost``. A long timer (a keep-alive
        ping, a registration deadline: ``WHEEL_MIN_DELAY`` or more) goes on
        the server's :class:`~sockhub.engine.clock.TimerWheel`, a few dozen
        bytes instead of a loop timer's few hundred, and runs up to
        ``WHEEL_TICK`` late, never early; a short one is a loop timer.
        """
        if delay >= WHEEL_MIN_DELAY:
            return self.server.wheel.call_later(delay, StreamConnection._run_timer, self,
                                                callback)
        return self.loop.call_later(delay, self._run_timer, callback)

    def _run_timer(self, callback: Callable[[], None]) -> None:
        if self._lost or self.protocol is None:
            return
        try:
            callback()
        except Exception:
            log.exception("%s: timer failed for %s", self.server.name, self.peer)
            self.abort("internal error")
            return
        self.flush()

    def notify_close(self, reason: str) -> None:
        """Tell the client why we are closing, then close after a flush."""
        if self.protocol is None or self._closing:
            return
        self.protocol.closing_notice(reason)
        self.protocol.close()
        self.flush()

    def abort(self, reason: str) -> None:
        """Cut the connection now, discarding unsent data."""
        if not self._lost:
            self.server.noise.log(
                f"{self.server.name}: dropped {{count}} more connections",
                "%s: dropped %s: %s", self.server.name, self.peer, reason, detail=reason,
            )
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    # Files ------------------------------------------------------------------

    def _start_file(self) -> None:
        """Send the protocol's FileRegion, then tell it and flush what it queued meanwhile."""
        protocol = self.protocol
        assert protocol is not None
        region, protocol.file_to_send = protocol.file_to_send, None
        if region is not None and not self._closing:
            self._file_task = self.loop.create_task(self._send_file(region))

    async def _send_file(self, region: FileRegion) -> None:
        sent, error = 0, None
        try:
            try:
                # Zero-copy where the loop can (asyncio's selector loop on a
                # plain socket: os.sendfile); TLS and uvloop copy in chunks.
                sent = await self.loop.sendfile(
                    self.transport,  # type: ignore[arg-type]
                    region.file, region.offset, region.count,
                )
            except NotImplementedError:
                sent = await self._copy_file(region)
        except (OSError, RuntimeError, ValueError) as exc:
            error = str(exc) or type(exc).__name__
        self._file_task = None
        self._active = True
        protocol = self.protocol
        if protocol is None or self._lost:
            return
        try:
            protocol.file_sent(sent, error)
        except Exception:
            log.exception("%s: file_sent failed for %s", self.server.name, self.peer)
            self.abort("internal error")
            return
        self.flush()

    async def _copy_file(self, region: FileRegion) -> int:
        """Send a region through the transport in chunks, with back-pressure."""
        transport = self.transport
        assert transport is not None
        sent = 0
        region.file.seek(region.offset)
        while sent < region.count and not self._closing:
            chunk = region.file.read(min(FILE_CHUNK, region.count - sent))
            if not chunk:
                break
            transport.write(chunk)
            sent += len(chunk)
            if self._writing_paused:
                self._drain_waiter = self.loop.create_future()
                await self._drain_waiter
        return sent

    # Internals --------------------------------------------------------------

    def _close_gracefully(self) -> None:
        if self._closing:
            return
        self._closing = True
        assert self.transport is not None
        self.transport.close()
        # close() waits for the buffer to drain; a peer that never reads
        # would hold the connection forever without this.
        self._close_handle = self.loop.call_later(
            self.limits.drain_timeout, self.abort, "close did not drain"
        )

    def _idle_check(self) -> None:
        timeout = self.limits.idle_timeout
        assert timeout is not None
        now = self.server.wheel.time()  # the loop's time (a test's, with a manual wheel)
        protocol = self.protocol
        if protocol is not None and protocol.counts_messages:
            active, protocol.active = protocol.active, False
        else:
            active, self._active = self._active, False
        if self._file_task is not None:
            active = True  # a download in progress is not idleness
        if active:  # the client spoke during the last tick
            self._quiet_since = now
        elif now - self._quiet_since >= timeout:
            self._idle_handle = None
            self.server.noise.log(
                f"{self.server.name}: {{count}} more idle timeouts",
                "%s: idle timeout for %s", self.server.name, self.peer,
            )
            self.notify_close(f"idle for {timeout:g} seconds; closing")
            return
        self._idle_handle = self._later(timeout / 4, StreamConnection._idle_check)

    def _later(self, delay: float, method: Callable[[StreamConnection], None]) -> Timer:
        """``method(self)`` in ``delay`` seconds: on the wheel if long (see :meth:`call_later`)."""
        if delay >= WHEEL_MIN_DELAY:
            return self.server.wheel.call_later(delay, _call, method, self)
        return self.loop.call_later(delay, method, self)


def _call(method: Callable[[StreamConnection], None], connection: StreamConnection) -> None:
    """A wheel entry's call of one of the engine's own methods on its connection."""
    method(connection)


class _BufferedReads(asyncio.BufferedProtocol):
    """The transport's protocol while a connection's protocol lends its read buffers.

    Reads go into :meth:`Protocol.get_buffer`; every other callback is the
    connection's own. Only a connection in ``read_into(True)`` uses one, so
    the per-read path of every other service is unchanged.
    """

    __slots__ = ("conn", "scratch")

    def __init__(self, conn: StreamConnection) -> None:
        self.conn = conn
        #: Where reads go once the connection is closing (nothing reads them).
        self.scratch: bytearray | None = None

    def get_buffer(self, sizehint: int) -> bytearray | memoryview:
        conn = self.conn
        if conn.protocol is None or conn._closing:
            if self.scratch is None:
                self.scratch = bytearray(FILE_CHUNK)
            return self.scratch
        return conn.protocol.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.conn._buffer_updated(nbytes)

    def data_received(self, data: bytes) -> None:  # a loop that ignores BufferedProtocol
        self.conn.data_received(data)

    def eof_received(self) -> bool:
        return self.conn.eof_received()

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)
