"""The echo family over real loopback sockets."""

from __future__ import annotations

import asyncio
import os
import socket

from net import STEP, open_client, read_line, read_until_eof
from sockhub.protocols.base import LineProtocol


async def test_echo_returns_bytes_unchanged(serve):
    server = await serve("echo")
    reader, writer = await open_client(server.ports[0])
    payload = os.urandom(200_000)
    writer.write(payload)
    got = await asyncio.wait_for(reader.readexactly(len(payload)), STEP)
    assert got == payload
    writer.write_eof()
    assert await read_until_eof(reader) == b""
    writer.close()


async def test_upper_answers_each_line_upper_cased(serve):
    server = await serve("upper")
    reader, writer = await open_client(server.ports[0])
    writer.write(b"hello\r\nworld\nmixed \xc3\xa9t\xc3\xa9\n")
    assert await read_line(reader) == b"HELLO\r\n"
    assert await read_line(reader) == b"WORLD\r\n"
    assert await read_line(reader) == "MIXED ÉTÉ\r\n".encode()
    writer.close()


async def test_upper_line_split_across_writes(serve):
    server = await serve("upper")
    reader, writer = await open_client(server.ports[0])
    for piece in (b"ab", b"c", b"\r", b"\nd", b"ef\n"):
        writer.write(piece)
        await writer.drain()
    assert await read_line(reader) == b"ABC\r\n"
    assert await read_line(reader) == b"DEF\r\n"
    writer.close()


async def test_hello_greets_answers_and_says_bye(serve):
    server = await serve("hello")
    reader, writer = await open_client(server.ports[0])
    assert await read_line(reader) == b"hello!\r\n"
    writer.write(b"alice\n")
    assert await read_line(reader) == b"Hello, alice!\r\n"
    writer.write(b"exit\nnot answered\n")
    assert await read_line(reader) == b"Bye!\r\n"
    assert await read_until_eof(reader) == b""
    writer.close()


async def test_banner_is_sent_before_the_service_speaks(serve):
    server = await serve("hello", banner="welcome to the hotline")
    reader, writer = await open_client(server.ports[0])
    assert await read_line(reader) == b"welcome to the hotline\r\n"
    assert await read_line(reader) == b"hello!\r\n"
    writer.close()


async def test_invalid_utf8_gets_an_error_line_and_the_connection_stays(serve):
    server = await serve("upper")
    reader, writer = await open_client(server.ports[0])
    writer.write(b"ok\nbad \xff\xfe line\nstill here\n")
    assert await read_line(reader) == b"OK\r\n"
    error = await read_line(reader)
    assert error.startswith(b"error: invalid UTF-8 at byte 4")
    assert await read_line(reader) == b"STILL HERE\r\n"
    writer.close()


async def test_binary_garbage_on_a_line_service_does_no_harm(serve):
    server = await serve("upper")
    reader, writer = await open_client(server.ports[0])
    garbage = bytes(range(256)) * 4  # contains \n bytes and invalid UTF-8
    writer.write(garbage + b"\nafter\n")
    lines = []
    while not lines or lines[-1] != b"AFTER\r\n":
        line = await read_line(reader)
        assert line, "server closed the connection on garbage"
        lines.append(line)
    assert any(line.startswith(b"error: invalid UTF-8") for line in lines)
    writer.close()


async def test_oversize_line_gets_an_error_and_a_close_others_unaffected(serve):
    server = await serve("upper", max_line=32)
    other_reader, other_writer = await open_client(server.ports[0])
    reader, writer = await open_client(server.ports[0])
    writer.write(b"short\n" + b"x" * 1000)
    assert await read_line(reader) == b"SHORT\r\n"
    assert await read_line(reader) == b"error: line too long (max 32 bytes); closing\r\n"
    assert await read_until_eof(reader) == b""
    other_writer.write(b"fine\n")
    assert await read_line(other_reader) == b"FINE\r\n"
    other_writer.close()
    writer.close()


async def test_eof_without_newline_still_answers_the_last_line(serve):
    server = await serve("upper")
    reader, writer = await open_client(server.ports[0])
    writer.write(b"last words")
    writer.write_eof()
    assert await read_until_eof(reader) == b"LAST WORDS\r\n"
    writer.close()


async def test_udp_echo_returns_each_datagram_to_its_sender(serve):
    server = await serve("udp-echo")
    port = server.ports[0]
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    loop = asyncio.get_running_loop()
    try:
        for i, sock in enumerate(socks):
            sock.setblocking(False)
            sock.connect(("127.0.0.1", port))
            await loop.sock_sendall(sock, f"datagram {i}".encode())
        for i, sock in enumerate(socks):
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), STEP)
            assert data == f"datagram {i}".encode()
    finally:
        for sock in socks:
            sock.close()


async def test_udp_datagram_over_max_frame_is_dropped(serve):
    server = await serve("udp-echo", max_frame=100)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect(("127.0.0.1", server.ports[0]))
        await loop.sock_sendall(sock, b"x" * 101)
        await loop.sock_sendall(sock, b"small")
        # Datagrams on loopback keep their order: the first answer is "small".
        assert await asyncio.wait_for(loop.sock_recv(sock, 65536), STEP) == b"small"
        assert server.endpoints[0].dropped == 1
    finally:
        sock.close()


class Shout(LineProtocol):
    """The README's "service in a few lines"."""

    def line_received(self, line: str) -> None:
        self.send_line(line.upper() + "!")


async def test_a_user_service_runs_on_the_engine(serve):
    server = await serve(Shout)
    reader, writer = await open_client(server.ports[0])
    writer.write(b"hey\n")
    assert await read_line(reader) == b"HEY!\r\n"
    writer.close()


async def test_thousand_concurrent_echo_clients(serve):
    server = await serve("echo", max_conns_per_ip=None)
    port = server.ports[0]
    clients = 1000
    all_connected = asyncio.Event()
    connected = 0

    async def client(i: int) -> bool:
        nonlocal connected
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 60)
        message = f"client {i}\n".encode()
        # A first round trip proves the server has accepted this one.
        writer.write(message)
        first = await asyncio.wait_for(reader.readexactly(len(message)), 60)
        connected += 1
        if connected == clients:
            all_connected.set()
        await asyncio.wait_for(all_connected.wait(), 60)
        writer.write(message * 3)
        second = await asyncio.wait_for(reader.readexactly(len(message) * 3), 60)
        writer.close()
        return first == message and second == message * 3

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    await asyncio.wait_for(all_connected.wait(), 60)
    assert len(server.connections) == clients
    assert all(await asyncio.gather(*tasks))
