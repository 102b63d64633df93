"""Listeners and the engine that runs several services in one process.

:class:`StreamServer` owns one service's TCP/TLS/Unix listeners and its
connection registry (max connections, per-IP max); :class:`DatagramServer`
owns UDP endpoints; :class:`Engine` starts a list of them, logs one
``listening on HOST:PORT (SERVICE)`` line per bound socket, and shuts them
all down gracefully: stop accepting, tell each client, let queued output
drain for ``drain_timeout``, then cut what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from sockhub import metrics
from sockhub.config import ServiceConfig
from sockhub.engine.clock import TimerWheel
from sockhub.engine.connection import StreamConnection, format_address
from sockhub.engine.heap import HeapTrimmer
from sockhub.engine.service import Listener, ServiceRuntime, ServiceSpec
from sockhub.engine.tls import ReloadableTls
from sockhub.errors import ConfigError
from sockhub.limits import Limits
from sockhub.logs import RateLimitedLog, flush_rate_limited
from sockhub.protocols.base import ConnectionInfo, DatagramProtocol, Protocol

log = logging.getLogger("sockhub.server")

#: Pending connections the kernel queues before accept(); asyncio's default
#: of 100 makes a burst of a thousand connects wait for SYN retries.
BACKLOG = 1024


class StreamServer:
    """One stream service: its listeners and its live connections."""

    transport_name: str

    def __init__(
        self,
        config: ServiceConfig,
        spec: ServiceSpec,
        *,
        listener: Listener | None = None,
        runtime: ServiceRuntime | None = None,
    ) -> None:
        self.config = config
        self.spec = spec
        self.listener = listener
        self.runtime = runtime  # shared with the service's other listeners; not ours to close
        self.name = listener.name if listener is not None else self.spec.name
        self.limits: Limits = config.resolved_limits(self.spec.limits)
        self.protocol_class: type[Protocol] = self.spec.protocol_class  # type: ignore[assignment]
        self.connections: set[StreamConnection] = set()
        self.addresses: list[str] = []
        self.accepted = 0
        self._per_ip: Counter[str] = Counter()
        self._servers: list[asyncio.Server] = []
        self._empty = asyncio.Event()
        self._dirty: set[StreamConnection] = set()
        #: :meth:`schedule_flush`, bound once: each connection's ``wake`` binds it to itself.
        self.flush_soon = self.schedule_flush
        self._wheel: TimerWheel | None = None
        #: Gives the heap back to the OS after a burst of connections (``heap_trim``).
        self.heap = HeapTrimmer()
        self.tls: ReloadableTls | None = None
        #: Per-connection log lines (refusals, drops, idle timeouts) that a
        #: flood of connections could otherwise turn into a full disk.
        self.noise = RateLimitedLog(logging.getLogger("sockhub.connection"))
        #: This listener's figures for ``GET /metrics`` (shared by servers of one name).
        self.metrics = metrics.listener(self.name)
        self.primary = primary = listener is None or listener.primary
        # A TLS twin of the primary listener takes its banner, never its Unix path.
        self.unix = config.unix if primary and (listener is None or not listener.tls) else None
        #: A banner line is the primary listener's: the others speak other protocols.
        self.banner = config.banner if primary else None
        #: TLS on this listener: the listener says, or else the service's certificate does.
        self.wants_tls = config.tls if listener is None or listener.tls is None else listener.tls
        if self.wants_tls and not config.tls:
            raise ConfigError(f"{self.name}: a TLS listener needs --tls-cert and --tls-key")
        if self.unix:
            self.transport_name = "unix"
        else:
            self.transport_name = "tls" if self.wants_tls else "tcp"

    @property
    def ports(self) -> list[int]:
        """The bound TCP ports (useful with port 0)."""
        return [
            sock.getsockname()[1]
            for server in self._servers
            for sock in server.sockets
            if sock.family in (socket.AF_INET, socket.AF_INET6)
        ]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        if self.wants_tls and config.tls_cert and config.tls_key:
            self.tls = ReloadableTls(config.tls_cert, config.tls_key)
        extra: dict[str, Any] = {"backlog": BACKLOG}
        if self.tls is not None:
            extra.update(ssl=self.tls.listener,
                         ssl_handshake_timeout=self.limits.tls_handshake_timeout)
        if self.listener is not None:
            port = self.listener.port or 0
        else:
            port = self.spec.default_port if config.port is None else config.port
        try:
            if self.unix:
                _remove_stale_socket(self.unix)
                server = await loop.create_unix_server(
                    lambda: StreamConnection(self), path=self.unix, **extra
                )
            else:
                server = await loop.create_server(
                    lambda: StreamConnection(self),
                    host=list(config.hosts),
                    port=port,
                    reuse_port=config.reuse_port or None,
                    **extra,
                )
        except OSError as exc:
            where = self.unix or ", ".join(format_address((h, port)) for h in config.hosts)
            # asyncio rewrites strerror as "error while attempting to bind on address
            # (...): ..."; the plain reason reads better after our own address.
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigError(f"{self.name}: cannot listen on {where}: {reason}") from exc
        self._servers.append(server)
        for sock in server.sockets:
            address = format_address(sock.getsockname())
            self.addresses.append(address)
            suffix = ", tls" if self.tls is not None else ""
            log.info("listening on %s (%s%s)", address, self.name, suffix)

    @property
    def wheel(self) -> TimerWheel:
        """The long timers of this listener's connections, behind one loop timer (made on use)."""
        if self._wheel is None:
            loop = asyncio.get_running_loop()
            self._wheel = TimerWheel(loop.time, loop.call_at)
        return self._wheel

    def make_protocol(self) -> Protocol:
        if self.listener is not None:
            return self.listener.make_protocol()
        return self.protocol_class()

    def refusal(self, reason: str) -> bytes:
        """What a client refused before admission is told, in this listener's protocol."""
        if self.listener is not None and self.listener.refusal is not None:
            return self.listener.refusal(reason)
        return self.protocol_class.refusal(reason)

    def schedule_flush(self, connection: StreamConnection) -> None:
        dirty = self._dirty
        if not dirty:
            asyncio.get_running_loop().call_soon(self._flush_dirty)
        dirty.add(connection)

    def _flush_dirty(self) -> None:
        """Write what every connection woken this turn has queued.

        When messages arrive one at a time (a paced room) this runs once per
        recipient per message, and py-spy put ``flush`` and its calls beside
        the write system call itself; so the common case (a protocol with
        Protocol's own queue, writing not paused, no file under way) is
        :meth:`StreamConnection.flush` inlined: the queue taken in place, one
        ``transport.write``, no Python call. Anything else, and a protocol that
        asked to close or queued a file, goes through ``flush`` as before.
        """
        dirty, self._dirty = self._dirty, set()
        for connection in dirty:
            protocol = connection.protocol
            if (protocol is None or not connection.plain_output or connection._writing_paused
                    or connection._file_task is not None):
                connection.flush()
                continue
            out = protocol._outgoing
            if out:
                transport = connection.transport
                assert transport is not None  # set before the protocol is
                if transport.is_closing():
                    continue
                if len(out) == 1:
                    data = out[0]
                    out.clear()  # before the write: pause_writing may queue more
                    transport.write(data)
                else:
                    protocol._outgoing = []
                    transport.writelines(out)
            if protocol.file_to_send is not None or protocol._closing:
                connection.flush()

    def admit(self, connection: StreamConnection) -> str | None:
        """Register a new connection, or return why it is refused."""
        limits = self.limits
        self.heap.churned(limits.heap_trim, connection.loop)  # a refused one came and goes too
        counts = self.metrics
        if limits.max_conns is not None and len(self.connections) >= limits.max_conns:
            counts.refused["server_full"] += 1
            return f"server full ({limits.max_conns} connections); try again later"
        ip = connection.peer_ip
        if ip is not None and limits.max_conns_per_ip is not None:
            if self._per_ip[ip] >= limits.max_conns_per_ip:
                counts.refused["per_ip"] += 1
                return f"too many connections from {ip} (max {limits.max_conns_per_ip})"
            self._per_ip[ip] += 1
        self.connections.add(connection)
        self.accepted += 1
        counts.accepted += 1
        counts.open += 1
        self._empty.clear()
        return None

    def forget(self, connection: StreamConnection) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
            self.metrics.open -= 1
            self.heap.churned(self.limits.heap_trim, connection.loop)
        ip = connection.peer_ip
        if ip is not None and ip in self._per_ip:
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]
        if not self.connections:
            self._empty.set()

    def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()

    async def shutdown(self, reason: str = "server shutting down") -> None:
        """Stop accepting, tell every client, drain, then cut the rest."""
        self.stop_accepting()
        if self.runtime is not None:
            self.runtime.begin_shutdown()
        for connection in list(self.connections):
            connection.notify_close(reason)
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), self.limits.drain_timeout)
        for connection in list(self.connections):
            connection.abort("shutdown drain timeout")
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), 1.0)
        if self._wheel is not None:
            self._wheel.clear()  # the connections are gone: nothing of theirs runs
        self.heap.cancel()
        if self.unix:
            with contextlib.suppress(OSError):
                os.unlink(self.unix)
        self.noise.flush()


def _remove_stale_socket(path: str) -> None:
    """Remove a Unix socket left by a dead server; refuse to clobber others."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listening: stale
    else:
        raise ConfigError(f"{path}: another server is listening there")
    finally:
        probe.close()


class DatagramConnection(asyncio.DatagramProtocol):
    """One UDP endpoint, driving one sans-I/O datagram protocol."""

    def __init__(self, server: DatagramServer) -> None:
        self.server = server
        self.protocol: DatagramProtocol = server.protocol_class()
        self.transport: asyncio.DatagramTransport | None = None
        self.dropped = 0
        self._raw: socket.socket | None = None  # for empty datagrams; see _send_empty

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.protocol.connection_made(
            ConnectionInfo(
                peer="*",
                local=format_address(self.transport.get_extra_info("sockname")),
                transport="udp",
                service=self.server.name,
                limits=self.server.limits,
                options=self.server.config.options,
            )
        )

    def datagram_received(self, data: bytes, addr: Any) -> None:
        max_frame = self.server.limits.max_frame
        if max_frame is not None and len(data) > max_frame:
            self.dropped += 1
            return
        self.protocol.receive_datagram(data, addr)
        assert self.transport is not None
        for payload, target in self.protocol.datagrams_to_send():
            if payload:
                self.transport.sendto(payload, target)
            else:
                self._send_empty(target)

    def _send_empty(self, target: Any) -> None:
        """Send a 0-byte datagram, which asyncio's and uvloop's ``sendto()`` silently drop.

        An empty datagram is a datagram (RFC 862 echoes it like any other), so
        it goes out through a duplicate of the endpoint's socket; UDP may lose
        it anyway, so a full send buffer (EAGAIN) loses it too.
        """
        if self._raw is None:
            assert self.transport is not None
            sock = self.transport.get_extra_info("socket")
            self._raw = socket.socket(sock.family, sock.type, fileno=os.dup(sock.fileno()))
            self._raw.setblocking(False)
        with contextlib.suppress(OSError):
            self._raw.sendto(b"", target)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: not our problem.
        log.debug("%s: %s", self.server.name, exc)


class DatagramServer:
    """One datagram service on one or more UDP endpoints."""

    transport_name = "udp"

    def __init__(self, config: ServiceConfig, spec: ServiceSpec) -> None:
        self.config = config
        self.spec = spec
        self.name = self.spec.name
        self.limits = config.resolved_limits(self.spec.limits)
        self.protocol_class: type[DatagramProtocol] = self.spec.protocol_class  # type: ignore[assignment]
        self.addresses: list[str] = []
        self.endpoints: list[DatagramConnection] = []
        self._transports: list[asyncio.DatagramTransport] = []
        if config.tls or config.unix:
            raise ConfigError(f"{self.name}: UDP services take neither TLS nor a Unix socket")

    @property
    def ports(self) -> list[int]:
        return [t.get_extra_info("sockname")[1] for t in self._transports]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        port = self.spec.default_port if self.config.port is None else self.config.port
        for host in self.config.hosts:
            try:
                transport, endpoint = await loop.create_datagram_endpoint(
                    lambda: DatagramConnection(self),
                    local_addr=(host, port),
                    reuse_port=self.config.reuse_port or None,
                )
            except OSError as exc:
                raise ConfigError(
                    f"{self.name}: cannot bind UDP {host}:{port}: {exc.strerror}"
                ) from exc
            self._transports.append(transport)
            self.endpoints.append(endpoint)
            address = format_address(transport.get_extra_info("sockname"))
            self.addresses.append(address)
            log.info("listening on %s (%s, udp)", address, self.name)

    def stop_accepting(self) -> None:
        for transport in self._transports:
            transport.close()

    async def shutdown(self, reason: str = "server shutting down") -> None:
        self.stop_accepting()


Server = StreamServer | DatagramServer


def runtime_config(config: ServiceConfig, spec: ServiceSpec) -> ServiceConfig:
    """``config`` as a stateful service's runtime sees it: its port resolved.

    The spec's ``default_port`` is the one place a service's port is written;
    a runtime gets the port to listen on, never None.
    """
    return config if config.port is not None else replace(config, port=spec.default_port)


def make_servers(
    config: ServiceConfig, spec: ServiceSpec
) -> tuple[list[Server], ServiceRuntime | None]:
    """The listeners of one service, and its shared state if it has any."""
    if spec.datagram:
        return [DatagramServer(config, spec)], None
    if spec.build is None:
        return [StreamServer(config, spec)], None
    runtime = spec.build(runtime_config(config, spec), config.resolved_limits(spec.limits))
    opened = [x for x in runtime.listeners() if x.port is not None or (x.primary and config.unix)]
    return [StreamServer(config, spec, listener=x, runtime=runtime) for x in opened], runtime


@dataclass
class RunningService:
    """One configured service: its listeners and its shared state, if any."""

    config: ServiceConfig
    spec: ServiceSpec
    servers: list[Server]
    runtime: ServiceRuntime | None


class Engine:
    """Several services in one process, started and stopped together."""

    def __init__(
        self, configs: list[ServiceConfig], resolve: Callable[[str], ServiceSpec]
    ) -> None:
        """Build every service's listeners; ``resolve`` names a service's spec."""
        if not configs:
            raise ConfigError("no services to run")
        self.services: list[RunningService] = []
        self.servers: list[Server] = []
        self.runtimes: list[ServiceRuntime] = []
        try:
            for config in configs:
                spec = resolve(config.service)
                servers, runtime = make_servers(config, spec)
                self.services.append(RunningService(config, spec, servers, runtime))
                self.servers += servers
                if runtime is not None:
                    self.runtimes.append(runtime)
        except BaseException:
            self._close_runtimes()
            raise

    async def start(self) -> None:
        """Bind every listener; if one fails, close those already bound."""
        started: list[Server] = []
        try:
            for server in self.servers:
                await server.start()
                started.append(server)
        except BaseException:
            for server in started:
                await server.shutdown()
            self._close_runtimes()
            raise

    async def shutdown(self, reason: str = "server shutting down") -> None:
        for server in self.servers:
            server.stop_accepting()
        for runtime in self.runtimes:
            runtime.begin_shutdown()
        try:
            await asyncio.gather(*(server.shutdown(reason) for server in self.servers))
        finally:  # whatever happened, every command exec started dies with us
            self._close_runtimes()
            flush_rate_limited()  # the last window's counts, from doors and services too

    def _close_runtimes(self) -> None:
        for runtime in self.runtimes:
            runtime.close()
        self.runtimes = []

    async def serve(self, stop: asyncio.Event) -> None:
        """Start, wait for ``stop``, shut down gracefully."""
        await self.start()
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            await self.shutdown()
