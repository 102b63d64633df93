"""Client-side helpers for tests over real loopback sockets."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

#: Generous per-step timeout: a loaded 2-core CI machine is slow, but a hung
#: test must still fail rather than wait for pytest-timeout.
STEP = 10.0


Client = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_client(port: int, host: str = "127.0.0.1") -> Client:
    return await asyncio.wait_for(asyncio.open_connection(host, port), STEP)


async def read_line(reader: asyncio.StreamReader, timeout: float = STEP) -> bytes:
    """One line including its ending; b"" at EOF."""
    return await asyncio.wait_for(reader.readline(), timeout)


async def read_until(reader: asyncio.StreamReader, needle: bytes) -> list[bytes]:
    """Lines up to and including the first that contains ``needle``."""
    lines = []
    while True:
        line = await read_line(reader)
        assert line, f"EOF before {needle!r}; got {lines}"
        lines.append(line)
        if needle in line:
            return lines


async def read_until_eof(reader: asyncio.StreamReader, timeout: float = STEP) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN (SO_LINGER 0): an abrupt disconnect."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def server_side(server: object, writer: asyncio.StreamWriter) -> object:
    """The server's StreamConnection for this client, matched by address."""
    local = writer.get_extra_info("sockname")
    for connection in server.connections:  # type: ignore[attr-defined]
        peer = connection.transport.get_extra_info("peername")
        if peer[:2] == local[:2]:
            return connection
    raise LookupError("no server-side connection for this client")


class LineClient:
    """A line-protocol client that reads until the line it expects."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.seen: list[str] = []

    async def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode() + b"\n"
        self.writer.write(data)
        await self.writer.drain()

    async def expect(self, needle: str, timeout: float = STEP) -> str:
        """Read lines until one contains ``needle``; return it. EOF fails."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), deadline - loop.time())
            if not raw:
                raise AssertionError(f"EOF while waiting for {needle!r}; saw {self.seen[-5:]}")
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.seen.append(line)
            if needle in line:
                return line

    async def expect_eof(self, timeout: float = STEP) -> list[str]:
        rest = await asyncio.wait_for(self.reader.read(), timeout)
        return rest.decode(errors="replace").splitlines()

    def close(self) -> None:
        self.writer.close()


async def chat_client(port: int, nick: str, host: str = "127.0.0.1") -> LineClient:
    """Connect to the chat line door, take ``nick``, and wait to be in #lobby."""
    client = LineClient(*await open_client(port, host))
    await client.expect("enter a nick")
    await client.send(nick)
    await client.expect(f"-- you are {nick}")
    await client.expect(f"#lobby * {nick} joined")
    return client


async def registered(port: int, nick: str = "alice", password: str = "hunter22") -> None:
    """Register account ``nick`` on the chat line door, then leave."""
    client = await chat_client(port, nick)
    await client.send(f"/register {password}")
    await client.expect("you are logged in")
    await client.send("/quit")
    await client.expect_eof()


async def sasl_client(port: int, nick: str = "alice", password: str = "hunter22",
                      caps: str = "", account: str | None = None) -> LineClient:
    """An IRC client as ``nick``, logged in to ``account`` (``nick`` if not given) with
    SASL PLAIN (IRCv3 sasl-3.1), ``caps`` requested beside ``sasl``, and registered."""
    account = account or nick
    client = LineClient(*await open_client(port))
    await client.send(f"CAP LS 302\r\nNICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n"
                      f"CAP REQ :{' '.join(['sasl', *caps.split()])}\r\n".encode())
    await client.expect(" ACK ")
    await client.send(b"AUTHENTICATE PLAIN\r\n")
    await client.expect("AUTHENTICATE +")
    payload = base64.b64encode(f"{account}\0{account}\0{password}".encode())
    await client.send(b"AUTHENTICATE " + payload + b"\r\n")
    await client.expect(" 903 ")
    await client.send(b"CAP END\r\n")
    await client.expect(f" 001 {nick} ")
    return client


class FirstLine:
    """An output callback that keeps what it is given until a whole line has come.

    ``client.run(argv, on_stdout=first)`` then ``await first.line()``.
    """

    def __init__(self) -> None:
        self.seen = bytearray()
        self._done = asyncio.Event()

    def __call__(self, data: bytes) -> None:
        self.seen.extend(data)
        if b"\n" in self.seen:
            self._done.set()

    async def line(self, timeout: float = STEP) -> bytes:
        await asyncio.wait_for(self._done.wait(), timeout)
        return bytes(self.seen).split(b"\n", 1)[0]


async def irc_client(port: int, nick: str, *channels: str) -> LineClient:
    """Register ``nick`` on the IRC door (raw lines) and join ``channels``."""
    client = LineClient(*await open_client(port))
    await client.send(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode())
    await client.expect(f" 001 {nick} ")
    for channel in channels:
        await client.send(f"JOIN {channel}\r\n".encode())
        await client.expect(f" 366 {nick} {channel} ")
    return client


async def wait_gone(pid: int) -> None:
    """Wait (on a pidfd, not a sleep) until process ``pid`` has ended."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: ended.done() or ended.set_result(None))
    try:
        await asyncio.wait_for(ended, STEP)
    finally:
        loop.remove_reader(fd)
        os.close(fd)
