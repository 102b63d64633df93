"""Client-side helpers for tests over real loopback sockets."""

from __future__ import annotations

import asyncio
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
