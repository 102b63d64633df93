"""Reference echo servers that ``benchmarks/echo.py`` measures sockhub against.

Each kind is the plainest idiomatic echo for its framework, with nothing of
sockhub's (no limits, no timers, no logging on the hot path), so the gap
between it and sockhub is the price of sockhub's engine. Every kind binds
127.0.0.1 only, prints ``listening on 127.0.0.1:PORT (KIND)`` to stderr once
bound (the driver waits for that line), and exits 0 on SIGTERM or SIGINT.

    python benchmarks/peers/echo_peers.py --kind uvloop-protocol --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import socketserver
import sys
from collections.abc import Callable
from typing import Any

HOST = "127.0.0.1"
READ_SIZE = 65536


def announce(port: int, kind: str) -> None:
    """The line the driver waits for; flushed so it is never stuck in a buffer."""
    print(f"listening on {HOST}:{port} ({kind})", file=sys.stderr, flush=True)


# asyncio and uvloop -------------------------------------------------------


class EchoProtocol(asyncio.Protocol):
    """The smallest Protocol echo: every chunk straight back to the transport."""

    transport: Any = None  # asyncio.Transport, or uvloop's, which is no subclass

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _handle_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The streams echo as the asyncio docs teach it: read, write, drain."""
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _serve_asyncio(kind: str, port: int, streams: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server: asyncio.Server
    if streams:
        server = await asyncio.start_server(_handle_stream, HOST, port)
    else:
        server = await loop.create_server(EchoProtocol, HOST, port)
    announce(server.sockets[0].getsockname()[1], kind)
    async with server:
        await stop.wait()


def run_asyncio(kind: str, port: int, *, streams: bool = False, uvloop: bool = False) -> None:
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if uvloop:
        import uvloop as uv

        factory = uv.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve_asyncio(kind, port, streams))


# threads ------------------------------------------------------------------


class _EchoHandler(socketserver.BaseRequestHandler):
    """One thread per connection, blocking recv/sendall."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
        try:
            while data := sock.recv(READ_SIZE):
                sock.sendall(data)
        except ConnectionError:
            pass


class _ThreadingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # do not wait for clients on exit
    allow_reuse_address = True
    request_queue_size = 1024


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def run_threading(kind: str, port: int) -> None:
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    with _ThreadingServer((HOST, port), _EchoHandler) as server:
        announce(server.server_address[1], kind)
        server.serve_forever()


# Twisted ------------------------------------------------------------------


def run_twisted(kind: str, port: int) -> None:
    # The epoll reactor must be installed before anything imports the default one.
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import protocol, reactor

    class Echo(protocol.Protocol):
        def connectionMade(self) -> None:
            self.transport.setTcpNoDelay(True)  # Twisted leaves Nagle on; asyncio does not

        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data)

    class EchoFactory(protocol.Factory):
        protocol = Echo

    listener = reactor.listenTCP(port, EchoFactory(), backlog=1024, interface=HOST)  # type: ignore[attr-defined]
    announce(listener.getHost().port, kind)
    reactor.run()  # type: ignore[attr-defined]  # stops itself on SIGTERM/SIGINT


KINDS: dict[str, Callable[[str, int], None]] = {
    "asyncio-streams": lambda kind, port: run_asyncio(kind, port, streams=True),
    "asyncio-protocol": lambda kind, port: run_asyncio(kind, port),
    "uvloop-protocol": lambda kind, port: run_asyncio(kind, port, uvloop=True),
    "threading": run_threading,
    "twisted": run_twisted,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", required=True, choices=sorted(KINDS))
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    args = parser.parse_args()
    KINDS[args.kind](args.kind, args.port)


if __name__ == "__main__":
    main()
