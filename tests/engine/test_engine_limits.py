"""Limits and faults: refusals, slow consumers, resets, idle clients, shutdown."""

from __future__ import annotations

import asyncio
import socket

import pytest

from helpers import Broadcaster
from net import STEP, open_client, read_line, read_until_eof, reset, server_side
from sockhub.protocols.base import Protocol


async def test_max_conns_refuses_with_one_line_and_a_close(serve):
    server = await serve("hello", max_conns=2)
    port = server.ports[0]
    kept = [await open_client(port) for _ in range(2)]
    for reader, _ in kept:
        assert await read_line(reader) == b"hello!\r\n"
    reader, writer = await open_client(port)
    refusal = await read_until_eof(reader)
    assert refusal == b"error: server full (2 connections); try again later\r\n"
    writer.close()
    # A slot frees up when a client leaves, and the next one is served.
    kept[0][1].close()
    await server_closed(server, 1)
    reader, writer = await open_client(port)
    assert await read_line(reader) == b"hello!\r\n"
    writer.close()
    for _, w in kept[1:]:
        w.close()


async def server_closed(server, remaining: int) -> None:
    """Wait until the server holds ``remaining`` connections (event-driven)."""
    while len(server.connections) > remaining:
        waits = [asyncio.ensure_future(c.closed.wait()) for c in server.connections]
        await asyncio.wait_for(asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED), STEP)
        for w in waits:
            w.cancel()


async def test_max_conns_per_ip_refuses_the_extra_connection(serve):
    server = await serve("echo", max_conns_per_ip=3)
    port = server.ports[0]
    kept = [await open_client(port) for _ in range(3)]
    reader, writer = await open_client(port)
    assert await read_until_eof(reader) == (
        b"error: too many connections from 127.0.0.1 (max 3)\r\n"
    )
    for r, w in kept:
        w.write(b"still served")
        assert await asyncio.wait_for(r.readexactly(12), STEP) == b"still served"
        w.close()
    writer.close()


async def test_client_that_never_reads_is_dropped_others_keep_being_served(serve):
    server = await serve("echo", write_high_water=16 * 1024, write_timeout=0.5)
    port = server.ports[0]
    _, slow_writer = await open_client(port)
    slow_writer.transport.set_write_buffer_limits(high=64 * 1024 * 1024)
    slow = server_side(server, slow_writer)
    # Send without ever reading: the echo backs up into the server's buffer.
    slow_writer.write(b"x" * (8 * 1024 * 1024))
    reader, writer = await open_client(port)
    for i in range(20):
        message = f"round {i}".encode()
        writer.write(message)
        assert await asyncio.wait_for(reader.readexactly(len(message)), STEP) == message
    await asyncio.wait_for(slow.closed.wait(), STEP)
    assert slow not in server.connections
    writer.write(b"after the drop")
    assert await asyncio.wait_for(reader.readexactly(14), STEP) == b"after the drop"
    writer.close()
    slow_writer.transport.abort()


async def test_pushed_output_past_write_buffer_max_drops_at_once(serve):
    Broadcaster.members = []
    server = await serve(
        Broadcaster, write_high_water=16 * 1024, write_buffer_max=256 * 1024, write_timeout=None
    )
    _, victim_writer = await open_client(server.ports[0])
    victim_writer.transport.pause_reading()  # never reads
    reader, writer = await open_client(server.ports[0])
    writer.write(b"warm up")
    assert await asyncio.wait_for(reader.readexactly(2), STEP) == b"ok"
    victim = server_side(server, victim_writer)
    # One large push may cross the high-water mark; pushes that keep coming
    # while the victim is not reading must not pile up past the cap. There is
    # no write timeout here: only the hard cap can drop it.
    for _ in range(200):
        writer.write(b"go")
        assert await asyncio.wait_for(reader.readexactly(2), STEP) == b"ok"
        if victim.closed.is_set():
            break
    await asyncio.wait_for(victim.closed.wait(), STEP)
    victim_writer.transport.abort()
    writer.close()


async def test_abrupt_reset_is_cleaned_up_and_others_unaffected(serve):
    server = await serve("upper")
    port = server.ports[0]
    reader, writer = await open_client(port)
    _, victim_writer = await open_client(port)
    victim_writer.write(b"half a li")
    await victim_writer.drain()
    writer.write(b"ping\n")
    assert await read_line(reader) == b"PING\r\n"
    victim = server_side(server, victim_writer)
    reset(victim_writer)
    await asyncio.wait_for(victim.closed.wait(), STEP)
    assert victim not in server.connections
    writer.write(b"pong\n")
    assert await read_line(reader) == b"PONG\r\n"
    writer.close()


async def test_silent_client_is_closed_after_idle_timeout(serve):
    server = await serve("upper", idle_timeout=0.3)
    reader, writer = await open_client(server.ports[0])
    writer.write(b"one\n")
    assert await read_line(reader) == b"ONE\r\n"
    assert await read_line(reader) == b"error: idle for 0.3 seconds; closing\r\n"
    assert await read_until_eof(reader) == b""
    writer.close()


async def test_activity_keeps_a_client_past_the_idle_timeout(serve):
    server = await serve("echo", idle_timeout=0.4)
    reader, writer = await open_client(server.ports[0])
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < 1.0:  # 2.5 idle periods, never quiet for one
        writer.write(b"k")
        assert await asyncio.wait_for(reader.readexactly(1), STEP) == b"k"
        await asyncio.sleep(0.05)  # pacing the client, not synchronisation
    writer.write(b"z")
    assert await asyncio.wait_for(reader.readexactly(1), STEP) == b"z"
    writer.close()


async def test_a_half_line_trickling_in_does_not_keep_a_line_client(serve):
    # Echo passes bytes, so bytes keep it alive (above); a line service counts
    # complete lines, so one byte a tick of half a line is idleness.
    server = await serve("upper", idle_timeout=0.4)
    reader, writer = await open_client(server.ports[0])
    received = b""
    for _ in range(100):  # 10 s at most; the server closes after 0.4-0.5 s
        try:
            chunk = await asyncio.wait_for(reader.read(100), 0.1)  # also the pace
        except TimeoutError:
            writer.write(b"x")
            continue
        except ConnectionResetError:  # a byte sent as the server closed
            break
        if not chunk:
            break
        received += chunk
    else:
        raise AssertionError("a trickling half line kept the connection open")
    assert received == b"error: idle for 0.4 seconds; closing\r\n"
    writer.close()


async def test_graceful_shutdown_tells_connected_clients(serve):
    server = await serve("hello", drain_timeout=2.0)
    port = server.ports[0]
    clients = [await open_client(port) for _ in range(5)]
    for reader, _ in clients:
        assert await read_line(reader) == b"hello!\r\n"
    await asyncio.wait_for(server.shutdown(), STEP)
    for reader, writer in clients:
        assert await read_until_eof(reader) == b"error: server shutting down\r\n"
        writer.close()
    assert not server.connections
    with pytest.raises(OSError):
        await open_client(port)  # no longer accepting


async def test_shutdown_cuts_a_client_that_will_not_drain(serve):
    server = await serve("echo", write_high_water=16 * 1024, write_timeout=None, drain_timeout=0.3)
    _, writer = await open_client(server.ports[0])
    writer.transport.set_write_buffer_limits(high=64 * 1024 * 1024)
    writer.write(b"x" * (8 * 1024 * 1024))  # never read: the server cannot flush
    connection = server_side(server, writer)
    await asyncio.wait_for(server.shutdown(), STEP)
    assert connection.closed.is_set()
    writer.transport.abort()


async def test_tcp_nodelay_is_set_on_accepted_connections(serve):
    server = await serve("echo")
    _, writer = await open_client(server.ports[0])
    connection = server_side(server, writer)
    sock = connection.transport.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    writer.close()


class HoldOnBang(Protocol):
    """Echo; a ``!`` asks the engine to stop reading until the test lets go."""

    def receive_data(self, data: bytes) -> None:
        self.send(data)
        if b"!" in data:
            self.set_reading(False)


async def test_a_protocol_can_hold_reading_and_let_go(serve):
    server = await serve(HoldOnBang)
    reader, writer = await open_client(server.ports[0])
    writer.write(b"a!")
    assert await asyncio.wait_for(reader.readexactly(2), STEP) == b"a!"
    connection = server_side(server, writer)
    assert not connection.transport.is_reading()
    writer.write(b"later")
    # The write side's back-pressure ending does not lift the protocol's hold.
    connection.pause_writing()
    connection.resume_writing()
    assert not connection.transport.is_reading()
    connection.protocol.set_reading(True)
    assert connection.transport.is_reading()
    assert await asyncio.wait_for(reader.readexactly(5), STEP) == b"later"
    writer.close()


class LendAfterBang(Protocol):
    """Echo; after ``!`` reads go into a buffer it lends (echoed upper-cased), until ``#``."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray(7)  # small: one read takes several buffers
        self.lent_reads = 0

    def receive_data(self, data: bytes) -> None:
        self.send(data)
        if data.endswith(b"!"):
            self.read_into(True)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.lent_reads += 1
        data = bytes(self.buffer[:nbytes])
        self.send(data.upper())
        if b"#" in data:
            self.read_into(False)


async def test_a_protocol_can_have_reads_go_into_its_own_buffer_and_back(serve):
    """``read_into(True)``: the engine reads into the protocol's buffer (BufferedProtocol)."""
    server = await serve(LendAfterBang)
    reader, writer = await open_client(server.ports[0])
    writer.write(b"plain!")
    assert await asyncio.wait_for(reader.readexactly(6), STEP) == b"plain!"
    connection = server_side(server, writer)
    writer.write(b"lent into a seven-byte buffer#")
    expected = b"LENT INTO A SEVEN-BYTE BUFFER#"
    assert await asyncio.wait_for(reader.readexactly(len(expected)), STEP) == expected
    assert connection.protocol.lent_reads >= len(expected) // 7
    writer.write(b"plain again")  # back on the plain path: not upper-cased
    assert await asyncio.wait_for(reader.readexactly(11), STEP) == b"plain again"
    writer.close()
