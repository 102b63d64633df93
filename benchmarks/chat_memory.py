"""Part of benchmarks/chat.py: memory per idle client, sockhub's and ncat's.

sockhub holds thousands of registered, idle clients and its VmRSS is read at
each step; ncat --chat (select(), so at most about 1,024 descriptors) gets
clients one at a time until one is not served. Imported, not run.
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

from benchlib import Server, log, process_cpu_seconds
from chat_servers import (
    HOST,
    LIMITS_OFF,
    memory_kib,
    start_ncat,
    start_sockhub,
    wait_for_idle,
    wait_for_quiet,
)

from sockhub.client.chatbench import bench_chat


@dataclass
class SockhubMemory:
    """The chat server's memory with ``clients`` idle clients, at each step."""

    clients: int
    base_kib: int
    connected_kib: int
    joined_kib: int
    peak_kib: int
    connect_s: float
    join_s: float
    join_cpu_s: float
    errors: int
    first_error: str

    def per_client(self, kib: int) -> float:
        return (kib - self.base_kib) / self.clients if self.clients else 0.0


class MemoryMeter:
    """Samples the server at bench_chat's phases, each time once its backlog is flushed."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.start = time.monotonic()
        self.connected_at = self.joined_at = self.start
        self.connected_kib = self.joined_kib = self.peak_kib = 0
        self.connected_cpu = self.join_cpu = 0.0

    def __call__(self, phase: str) -> None:
        pid = self.server.pid
        if phase == "connected":
            wait_for_idle(pid)
            self.connected_at = time.monotonic()
            self.connected_kib = memory_kib(pid)
            self.connected_cpu = process_cpu_seconds(pid)
        elif phase == "ready":
            self.joined_at = time.monotonic()
            wait_for_idle(pid)  # the last join announcements are still being written
            self.joined_kib = memory_kib(pid)
            self.peak_kib = memory_kib(pid, "VmHWM")
            self.join_cpu = process_cpu_seconds(pid) - self.connected_cpu
        elif phase == "done":
            # Stop the server before the clients leave: 10,000 departures, each
            # announced to everyone still there, is minutes of work nobody measures.
            self.server.stop()


def measure_sockhub_memory(clients: int, args: argparse.Namespace,
                           cpus: tuple[set[int] | None, set[int] | None]) -> SockhubMemory:
    """Hold ``clients`` registered, idle clients on a fresh server; read VmRSS at each step."""
    wait_for_quiet()
    with tempfile.TemporaryDirectory(prefix="sockhub-chat-idle-") as data_dir:
        server, port = start_sockhub(data_dir, cpus[0], extra=LIMITS_OFF)
        with server:
            wait_for_idle(server.pid)
            base = memory_kib(server.pid)
            meter = MemoryMeter(server)
            # Everyone in #lobby, the room each user joins on arrival anyway.
            result = bench_chat(HOST, port, clients=clients, senders=0, messages=0,
                                room="#lobby", timeout=args.idle_timeout, on_phase=meter)
    log(f"  sockhub idle: {result.report()}")
    return SockhubMemory(
        clients=clients,
        base_kib=base,
        connected_kib=meter.connected_kib,
        joined_kib=meter.joined_kib,
        peak_kib=meter.peak_kib,
        connect_s=meter.connected_at - meter.start,
        join_s=meter.joined_at - meter.connected_at,
        join_cpu_s=meter.join_cpu,
        errors=result.errors,
        first_error=result.first_error,
    )


@dataclass
class NcatProbe:
    attempted: int
    served: int
    base_kib: int
    last_kib: int
    bytes_received: int
    seconds: float
    outcome: str
    ncat_said: str


def probe_ncat(limit: int, cpus: tuple[set[int] | None, set[int] | None],
               budget: float) -> NcatProbe:
    """Connect clients to ncat --chat one at a time until one is not served.

    A client is served once ncat announces it. Everything received is read
    and discarded: ncat tells every client about every arrival, with the
    whole list of users, and blocks on a client that does not read.
    """
    wait_for_quiet()
    server, port = start_ncat(limit + 16, cpus[0])
    selector = selectors.DefaultSelector()
    sockets: list[socket.socket] = []
    got: dict[int, bool] = {}
    received = 0
    outcome = f"all {limit} served"
    start = time.monotonic()
    deadline = start + budget

    def drain(timeout: float) -> None:
        nonlocal received
        for key, _ in selector.select(timeout):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(1 << 18)
            except OSError:
                data = b""
            if data:
                received += len(data)
                got[sock.fileno()] = True
            else:
                selector.unregister(sock)
                got[sock.fileno()] = False

    with server:
        base = memory_kib(server.pid)
        last = base
        served = 0
        try:
            for index in range(1, limit + 1):
                if time.monotonic() > deadline:
                    outcome = f"stopped after {budget:g} s (time budget)"
                    break
                try:
                    sock = socket.create_connection((HOST, port), timeout=5)
                except OSError as exc:
                    outcome = f"connection {index} refused: {exc.strerror or exc}"
                    break
                sock.setblocking(False)
                sockets.append(sock)
                selector.register(sock, selectors.EVENT_READ)
                fd = sock.fileno()
                wait_until = time.monotonic() + 5.0
                while fd not in got and time.monotonic() < wait_until:
                    drain(0.2)
                if not got.get(fd):
                    what = "closed without a greeting" if fd in got else "got no greeting in 5 s"
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        server.process.wait(5.0)  # did it die, or just refuse this one?
                    code = server.process.poll()
                    outcome = f"connection {index} {what}; ncat " + (
                        "still running" if code is None else f"exited with status {code}")
                    break
                served = index
                if server.alive():
                    last = memory_kib(server.pid)
                if index % 200 == 0:
                    log(f"  ncat: {index} clients, {received / 1e9:.1f} GB of announcements read")
        finally:
            selector.close()
            for sock in sockets:
                sock.close()
    said = [line for line in server.tail if "Connection from" not in line
            and "Listening" not in line and "Version" not in line]
    return NcatProbe(limit, served, base, last, received, time.monotonic() - start,
                     outcome, said[-1] if said else "")
