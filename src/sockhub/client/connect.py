"""``sockhub connect``: a netcat-like client, stdin to socket and socket to stdout.

Both directions run at once. Stdin is read in a thread, because asyncio
cannot watch a regular file or every kind of terminal; the socket side is
plain asyncio. At end of stdin the client half-closes (like ``nc -N``) and
keeps printing until the server closes. TLS cannot half-close a
connection, and a UDP peer never closes, so there the client waits for
``wait`` seconds of quiet after the end of input for the last replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
import threading
from typing import BinaryIO

READ_SIZE = 64 * 1024


def _stdin_pump(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes], fd: int) -> None:
    while True:
        try:
            chunk = os.read(fd, READ_SIZE)
        except OSError:
            chunk = b""
        loop.call_soon_threadsafe(queue.put_nowait, chunk)
        if not chunk:
            return


def _start_stdin(fd: int) -> asyncio.Queue[bytes]:
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=0)
    thread = threading.Thread(
        target=_stdin_pump, args=(asyncio.get_running_loop(), queue, fd), daemon=True
    )
    thread.start()
    return queue


async def connect_stream(
    host: str | None,
    port: int | None,
    *,
    unix: str | None = None,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float = 10.0,
    wait: float = 1.0,
    stdin_fd: int = 0,
    stdout: BinaryIO | None = None,
) -> int:
    """Copy stdin to a TCP/TLS/Unix connection and the connection to stdout.

    Returns:
        0 when the server closed the connection, 1 on a connection error.
    """
    out = stdout if stdout is not None else sys.stdout.buffer
    try:
        if unix:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(unix, ssl=tls, server_hostname=server_hostname),
                timeout,
            )
        else:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=tls, server_hostname=server_hostname),
                timeout,
            )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        where = unix or f"{host}:{port}"
        print(f"sockhub connect: {where}: {_describe(exc)}", file=sys.stderr)
        return 1
    queue = _start_stdin(stdin_fd)
    input_done = asyncio.Event()

    async def upstream() -> None:
        while chunk := await queue.get():
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        else:
            input_done.set()

    sender = asyncio.create_task(upstream())
    input_over = asyncio.ensure_future(input_done.wait())
    status = 0
    try:
        while True:
            read = asyncio.ensure_future(reader.read(READ_SIZE))
            if not input_over.done():
                await asyncio.wait([read, input_over], return_when=asyncio.FIRST_COMPLETED)
            if read.done():
                data = read.result()
            else:  # input over and no half-close possible: wait for quiet
                try:
                    data = await asyncio.wait_for(read, wait)
                except TimeoutError:
                    break
            if not data:
                break
            out.write(data)
            out.flush()
    except (OSError, ssl.SSLError) as exc:
        print(f"sockhub connect: {_describe(exc)}", file=sys.stderr)
        status = 1
    finally:
        input_over.cancel()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, ssl.SSLError):
            await sender
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return status


class _UdpPrinter(asyncio.DatagramProtocol):
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.last = asyncio.get_running_loop().time()
        self.error: Exception | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.last = asyncio.get_running_loop().time()
        self.out.write(data)
        self.out.flush()

    def error_received(self, exc: Exception) -> None:
        self.error = exc


async def connect_udp(
    host: str,
    port: int,
    *,
    wait: float = 1.0,
    stdin_fd: int = 0,
    stdout: BinaryIO | None = None,
) -> int:
    """Send each stdin line as one datagram; print every datagram received.

    Returns:
        0, or 1 if the peer answered with ICMP port unreachable.
    """
    out = stdout if stdout is not None else sys.stdout.buffer
    loop = asyncio.get_running_loop()
    transport, printer = await loop.create_datagram_endpoint(
        lambda: _UdpPrinter(out), remote_addr=(host, port)
    )
    queue = _start_stdin(stdin_fd)
    pending = b""
    try:
        while chunk := await queue.get():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                transport.sendto(line + b"\n")
        if pending:
            transport.sendto(pending)
        # Wait for quiet: `wait` seconds with no datagram.
        while (remaining := printer.last + wait - loop.time()) > 0 and printer.error is None:
            await asyncio.sleep(min(remaining, 0.05))
    finally:
        transport.close()
    if printer.error is not None:
        print(f"sockhub connect: {host}:{port}/udp: {_describe(printer.error)}", file=sys.stderr)
        return 1
    return 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
