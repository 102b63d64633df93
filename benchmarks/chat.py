"""Chat benchmark: sockhub's chat hub against ``ncat --chat``, fan-out to one room.

Why this shape:

* A chat server's work is fan-out, so the unit is the *delivery* (one
  message reaching one client). N clients sit in one room and K of them send
  M messages each (``sockhub bench chat``, which also checks that every
  client got every message exactly once and in order).
* The server runs pinned to one CPU and the load client to another. The
  fair column is the server's own CPU time per delivery (utime + stime from
  /proc/PID/stat, taken when every client has joined and again when every
  client has counted everything), because deliveries/s is capped by
  whichever side saturates first, and here that is often the Python client.
* ncat --chat is the floor: C, select(), no nicks, no rooms, no history, no
  storage, no echo to the sender. sockhub stores every message in SQLite
  before fanning it out. The table says how far apart they are.
* M is chosen per N from a short pilot run against sockhub so each run lasts
  about ``--seconds``; both servers get the same N, K and M.
* Memory: hold ``--idle`` registered clients (2,000, 5,000 and 10,000) on
  sockhub and read VmRSS before and after; ncat uses select(), whose fd_set stops at 1,024
  descriptors, so we connect clients to it one at a time and report where
  and how it stops.
* Servers bind 127.0.0.1, announce their port, and are stopped by PID in
  ``finally`` blocks; every wait has a deadline; the machine may be shared,
  so each run waits for the machine to idle first and a disturbed run is
  redone (up to ``--retries``); what remains is reported.

    python benchmarks/chat.py --markdown
    python benchmarks/chat.py --profile      # where sockhub's server time goes
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import pstats
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import benchlib
from benchlib import (
    NOISE,
    Server,
    log,
    machine_busy_seconds,
    process_cpu_seconds,
)

from sockhub.client.chatbench import bench_chat

HOST = "127.0.0.1"
QUIET_WAIT = 120.0  # seconds to wait for the machine to idle before a run
SETTLE_WAIT = 120.0  # seconds to wait for a server to go idle before reading its memory
SOCKHUB_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(chat\)")
NCAT_LISTENING = re.compile(r"Listening on 127\.0\.0\.1:(\d+)")
#: Extra environment for the sockhub server (--server-env), e.g. allocator settings.
SERVER_ENV: dict[str, str] = {}
NCAT = shutil.which("ncat")  # the pin shim exec()s a path, not a name
PILOT_DELIVERIES = 60_000  # deliveries in the pilot run that sizes M
TARGET_US_PER_DELIVERY = 1.0  # at N = 100-500
TARGET_KIB_PER_CLIENT = 5.0









def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A ``Vm*`` line of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for PID {pid}")




def own_cpu_seconds() -> float:
    """This process's CPU time (the bench parent; its workers report their own)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(timeout: float | None = None) -> None:
    """benchlib's wait, by default for this script's --quiet-wait."""
    benchlib.wait_for_quiet(QUIET_WAIT if timeout is None else timeout)


def wait_for_idle(pid: int, timeout: float = SETTLE_WAIT) -> float:
    """Wait until a process stops using CPU (its backlog is flushed); return seconds waited.

    Quiet means under 2% of a core for three half-seconds in a row: a server
    still trickling a backlog out to a slow reader wakes up within that.
    """
    start = time.monotonic()
    quiet = 0
    while quiet < 3 and time.monotonic() - start < timeout:
        before = process_cpu_seconds(pid)
        time.sleep(0.5)
        quiet = quiet + 1 if process_cpu_seconds(pid) - before < 0.01 else 0
    return time.monotonic() - start


def free_port() -> int:
    """A port nobody listens on now (ncat cannot report the one it got for port 0)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start_sockhub(data_dir: str, cpus: set[int] | None, *, extra: Sequence[str] = (),
                  profile: str | None = None) -> tuple[Server, int]:
    """``sockhub serve chat`` with flood control off; optionally under cProfile."""
    runner = [sys.executable] + (["-m", "cProfile", "-o", profile] if profile else [])
    argv = [*runner, "-m", "sockhub", "serve", "chat", "--host", HOST, "--port", "0",
            "--data-dir", data_dir, "--flood-rate", "none", "--loop", "uvloop", *extra]
    server = Server("sockhub", argv, SOCKHUB_LISTENING, cpus, SERVER_ENV)
    try:
        return server, server.wait_listening()
    except BaseException:
        server.stop()
        raise


def start_ncat(max_conns: int, cpus: set[int] | None) -> tuple[Server, int]:
    """``ncat --chat`` on a free port (retried if someone takes the port meanwhile)."""
    for _ in range(5):
        port = free_port()
        argv = [NCAT or "ncat", "-v", "--chat", "--listen", HOST, str(port),
                "--max-conns", str(max_conns)]
        server = Server("ncat", argv, NCAT_LISTENING, cpus)
        try:
            server.wait_listening()
            return server, port
        except RuntimeError:
            server.stop()
    raise RuntimeError("ncat did not start listening")


# Fan-out ----------------------------------------------------------------------


@dataclass
class Row:
    """One server's figures for one N."""

    server: str
    clients: int
    messages: int
    deliveries: int
    expected: int
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float
    us_per_delivery: float
    server_cpu_pct: float
    client_cpu_pct: float
    lost: int
    duplicated: int
    reordered: int
    garbled: int
    errors: int
    first_error: str
    background_pct: float


class WindowMeter:
    """Server CPU and machine CPU between bench_chat's "ready" and "done" phases."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.marks: dict[str, tuple[float, float, float, float]] = {}

    def __call__(self, phase: str) -> None:
        if phase in ("ready", "done"):
            self.marks[phase] = (time.monotonic(), process_cpu_seconds(self.pid),
                                 machine_busy_seconds(), own_cpu_seconds())

    def deltas(self) -> tuple[float, float, float, float]:
        """(wall, server CPU, machine busy, our own CPU) over the window."""
        start, end = self.marks.get("ready"), self.marks.get("done")
        if start is None or end is None:
            return 0.0, 0.0, 0.0, 0.0
        wall, server, busy, own = (b - a for a, b in zip(start, end, strict=True))
        return wall, server, busy, own


def fanout_row(name: str, pid: int, port: int, mode: str, clients: int, senders: int,
               messages: int, timeout: float) -> Row:
    meter = WindowMeter(pid)
    result = bench_chat(HOST, port, clients=clients, senders=senders, messages=messages,
                        mode=mode, room="#bench", timeout=timeout, on_phase=meter)
    wall, server_cpu, busy, own = meter.deltas()
    client_cpu = result.client_cpu_s + own
    return Row(
        server=name,
        clients=clients,
        messages=messages,
        deliveries=result.deliveries,
        expected=result.expected,
        deliveries_per_s=result.deliveries_per_s,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        server_cpu_s=server_cpu,
        us_per_delivery=1e6 * server_cpu / result.deliveries if result.deliveries else
        float("nan"),
        server_cpu_pct=100.0 * server_cpu / wall if wall else 0.0,
        client_cpu_pct=100.0 * client_cpu / wall if wall else 0.0,
        lost=result.lost,
        duplicated=result.duplicated,
        reordered=result.reordered,
        garbled=result.garbled,
        errors=result.errors,
        first_error=result.first_error,
        background_pct=max(0.0, 100.0 * (busy - server_cpu - client_cpu) / wall) if wall else 0.0,
    )


def run_fanout(kind: str, clients: int, messages: int, args: argparse.Namespace,
               cpus: tuple[set[int] | None, set[int] | None]) -> Row:
    """One server, fresh, one load run; redone when other processes disturbed it.

    Of the attempts, the least disturbed one is kept (and its disturbance
    reported), so a busy machine costs time, not a noisy row.
    """
    server_cpus, _ = cpus
    attempts: list[Row] = []
    for attempt in range(args.retries + 1):
        wait_for_quiet()
        with tempfile.TemporaryDirectory(prefix="sockhub-chat-bench-") as data_dir:
            if kind == "sockhub":
                server, port = start_sockhub(data_dir, server_cpus, extra=LIMITS_OFF)
                mode = "line"
            else:
                server, port = start_ncat(clients + 16, server_cpus)
                mode = "ncat"
            with server:
                row = fanout_row(kind, server.pid, port, mode, clients, args.senders,
                                 messages, args.timeout)
        attempts.append(row)
        log(f"  N={clients:<4} {kind:<8} {row.deliveries:>9,} deliveries "
            f"{row.deliveries_per_s:>10,.0f}/s  server {row.us_per_delivery:6.2f} µs/delivery "
            f"({row.server_cpu_pct:3.0f}% CPU)  client {row.client_cpu_pct:3.0f}%  "
            f"p50 {row.p50_ms:.2f} ms  p99 {row.p99_ms:.2f} ms  lost {row.lost} "
            f"reordered {row.reordered}  background {row.background_pct:.0f}%"
            + (f"  ERRORS {row.errors}: {row.first_error}" if row.errors else ""))
        if row.background_pct <= 100.0 * NOISE:
            break
        if attempt < args.retries:
            log(f"  other processes used {row.background_pct:.0f}% of a core; again")
    return min(attempts, key=lambda r: r.background_pct)


#: The server's connection caps are for the open internet; a benchmark from
#: one address with thousands of clients needs them off.
LIMITS_OFF = ("--max-conns", "none", "--max-conns-per-ip", "none")


def choose_messages(clients: int, args: argparse.Namespace,
                    cpus: tuple[set[int] | None, set[int] | None]) -> int:
    """M such that a run at N = ``clients`` lasts about ``--seconds`` against sockhub."""
    if args.messages:
        return int(args.messages)
    pilot = max(5, PILOT_DELIVERIES // (clients * args.senders))
    with tempfile.TemporaryDirectory(prefix="sockhub-chat-pilot-") as data_dir:
        server, port = start_sockhub(data_dir, cpus[0], extra=LIMITS_OFF)
        with server:
            result = bench_chat(HOST, port, clients=clients, senders=args.senders,
                                messages=pilot, timeout=args.timeout)
    if not result.ok or not result.deliveries_per_s:
        raise RuntimeError(f"pilot run at N={clients} failed:\n{result.report()}")
    per_message = clients * args.senders
    return max(10, min(100_000, round(args.seconds * result.deliveries_per_s / per_message)))


# Memory -------------------------------------------------------------------------


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


# Tables ---------------------------------------------------------------------------


def render(headers: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        align = ["---" if i == 0 or name == "notes" else "---:" for i, name in enumerate(headers)]
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(cells, widths, strict=True)))
        for cells in [headers, *body]
    )


FANOUT_HEADERS = ["N", "server", "M", "deliveries", "deliveries/s", "vs ncat", "p50 ms",
                  "p99 ms", "server µs/delivery", "vs ncat", "server CPU %", "client CPU %",
                  "lost", "dup", "reordered"]


def fanout_table(rows: list[Row], markdown: bool) -> str:
    by_key = {(r.clients, r.server): r for r in rows}

    def ratio(mine: float, theirs: float | None) -> str:
        if not theirs or math.isnan(theirs) or math.isnan(mine):
            return "-"
        return f"{mine / theirs:.2f}x"

    body = []
    for r in rows:
        peer = by_key.get((r.clients, "ncat")) if r.server == "sockhub" else None
        body.append([
            str(r.clients),
            r.server,
            f"{r.messages:,}",
            f"{r.deliveries:,}" + ("" if r.deliveries == r.expected else f" of {r.expected:,}"),
            f"{r.deliveries_per_s:,.0f}",
            ratio(r.deliveries_per_s, peer.deliveries_per_s if peer else None),
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.us_per_delivery:.2f}",
            ratio(r.us_per_delivery, peer.us_per_delivery if peer else None),
            f"{r.server_cpu_pct:.0f}",
            f"{r.client_cpu_pct:.0f}",
            str(r.lost),
            str(r.duplicated),
            str(r.reordered),
        ])
    return render(FANOUT_HEADERS, body, markdown)


def memory_table(mems: list[SockhubMemory], probe: NcatProbe | None, markdown: bool) -> str:
    headers = ["server", "clients held", "RSS before", "RSS after", "KiB per client", "notes"]
    body = []
    for mem in mems:
        body.append([
            "sockhub, connected (no nick yet)", f"{mem.clients:,}",
            f"{mem.base_kib / 1024:.1f} MiB", f"{mem.connected_kib / 1024:.1f} MiB",
            f"{mem.per_client(mem.connected_kib):.1f}", f"connected in {mem.connect_s:.1f} s",
        ])
        body.append([
            "sockhub, registered (in #lobby)", f"{mem.clients:,}",
            f"{mem.base_kib / 1024:.1f} MiB", f"{mem.joined_kib / 1024:.1f} MiB",
            f"{mem.per_client(mem.joined_kib):.1f}",
            f"all joined in {mem.join_s:.1f} s ({mem.join_cpu_s:.1f} s server CPU); "
            f"peak {mem.peak_kib / 1024:.0f} MiB"
            + (f"; ERRORS {mem.errors}: {mem.first_error}" if mem.errors else ""),
        ])
    if probe is not None:
        per = (probe.last_kib - probe.base_kib) / probe.served if probe.served else 0.0
        body.append([
            "ncat --chat", f"{probe.served:,}", f"{probe.base_kib / 1024:.1f} MiB",
            f"{probe.last_kib / 1024:.1f} MiB", f"{per:.1f}",
            f"{probe.outcome}" + (f" ({probe.ncat_said.strip()})" if probe.ncat_said else "")
            + f"; {probe.bytes_received / 1e9:.1f} GB of announcements read in "
            f"{probe.seconds:.0f} s",
        ])
    return render(headers, body, markdown)


def verdict(rows: list[Row], mem: SockhubMemory | None) -> list[str]:
    """The targets, checked against what was measured (reported, never asserted)."""
    out = []
    mine = [r for r in rows if r.server == "sockhub"]
    big = [r for r in mine if 100 <= r.clients <= 500]
    if big:
        worst = max(r.us_per_delivery for r in big)
        out.append(f"target <= {TARGET_US_PER_DELIVERY:g} µs server CPU per delivery at "
                   f"N=100-500: worst {worst:.2f} µs -> "
                   + ("met" if worst <= TARGET_US_PER_DELIVERY else "NOT met"))
    bad = sum(r.lost + r.reordered + r.duplicated + r.garbled + r.errors for r in mine)
    if mine:
        out.append("target zero lost or reordered: " + ("met" if not bad else
                   f"NOT met ({bad} problems)"))
    peers = [r for r in rows if r.server != "sockhub"]
    peer_bad = [f"N={r.clients}: lost {r.lost}, garbled {r.garbled}, errors {r.errors}"
                for r in peers if r.lost or r.garbled or r.errors or r.reordered]
    if peer_bad:
        out.append("ncat problems: " + "; ".join(peer_bad))
    if mem is not None:
        per = mem.per_client(mem.joined_kib)
        out.append(f"target <= {TARGET_KIB_PER_CLIENT:g} KiB server memory per idle client: "
                   f"{per:.1f} KiB registered -> "
                   + ("met" if per <= TARGET_KIB_PER_CLIENT else "NOT met"))
    saturated = [f"N={r.clients} {r.server}" for r in rows if r.client_cpu_pct >= 90]
    if saturated:
        out.append("client CPU >= 90% of its core for " + ", ".join(saturated)
                   + ": deliveries/s is capped by the load generator there; compare µs/delivery")
    noisy = [f"N={r.clients} {r.server} ({r.background_pct:.0f}%)" for r in rows
             if r.background_pct > 100 * NOISE]
    if noisy:
        out.append("other processes used CPU during " + ", ".join(noisy))
    return out


# Profile -------------------------------------------------------------------------


def profile_sockhub(clients: int, messages: int, args: argparse.Namespace,
                    cpus: tuple[set[int] | None, set[int] | None], top: int = 25) -> str:
    """Where the server's time goes, two ways.

    cProfile names the Python functions, but covers the whole run (the joins
    and departures too) and slows calls down; ``perf record``, attached only
    for the send window, shows the split between the kernel (the write
    syscalls, which on loopback also run the receiving side of TCP) and the
    interpreter, without slowing anything.
    """
    parts = []
    with tempfile.TemporaryDirectory(prefix="sockhub-chat-profile-") as data_dir:
        out = os.path.join(data_dir, "server.prof")
        server, port = start_sockhub(os.path.join(data_dir, "db"), cpus[0], extra=LIMITS_OFF,
                                     profile=out)
        with server:
            result = bench_chat(HOST, port, clients=clients, senders=args.senders,
                                messages=messages, timeout=args.timeout)
        parts += [f"cProfile, whole run:\n{result.report()}", _stats_text(out, top)]
        perf = shutil.which("perf")
        if perf:
            server, port = start_sockhub(os.path.join(data_dir, "db2"), cpus[0],
                                         extra=LIMITS_OFF)
            recorder = PerfWindow(perf, server.pid, os.path.join(data_dir, "perf.data"))
            with server:
                result = bench_chat(HOST, port, clients=clients, senders=args.senders,
                                    messages=messages, timeout=args.timeout, on_phase=recorder)
            parts += [f"perf, send window only:\n{result.report()}", recorder.report(top)]
    return "\n\n".join(parts)


class PerfWindow:
    """``perf record`` of one process between bench_chat's "ready" and "done" phases."""

    def __init__(self, perf: str, pid: int, out: str) -> None:
        self.perf, self.pid, self.out = perf, pid, out
        self.process: subprocess.Popen[bytes] | None = None

    def __call__(self, phase: str) -> None:
        if phase == "ready":
            self.process = subprocess.Popen(
                [self.perf, "record", "-F", "999", "-p", str(self.pid), "-o", self.out],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # perf attaches asynchronously; a sample gap is harmless
        elif phase == "done" and self.process is not None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def report(self, top: int) -> str:
        if not os.path.exists(self.out):
            return "(perf recorded nothing)"
        texts = []
        for sort in ("dso", "dso,sym"):
            done = subprocess.run(
                [self.perf, "report", "-i", self.out, "--stdio", "--no-children",
                 "--sort", sort, "--percent-limit", "0.5"],
                capture_output=True, text=True, timeout=120)
            lines = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
            texts.append("\n".join(lines[:top]))
        return "\n\n".join(texts)


def _stats_text(path: str, top: int) -> str:
    buffer = io.StringIO()
    stats = pstats.Stats(path, stream=buffer)
    stats.sort_stats("tottime").print_stats(top)
    return buffer.getvalue()


# Main ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Chat fan-out benchmark: sockhub's chat hub against ncat --chat.")
    parser.add_argument("--clients", default="10,100,500",
                        help="values of N, comma-separated (default 10,100,500)")
    parser.add_argument("--senders", type=int, default=10, help="K (default 10)")
    parser.add_argument("--messages", type=int, default=0,
                        help="M for every N (default: sized by a pilot run to --seconds)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="target length of each run (default 3)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="bound on each bench run, seconds (default 120)")
    parser.add_argument("--idle", default="2000,5000,10000",
                        help="idle clients held on sockhub for the memory test, comma-separated "
                        "(default 2000,5000,10000; 0 skips it)")
    parser.add_argument("--idle-timeout", type=float, default=900.0,
                        help="bound on the idle-clients run, seconds (default 900)")
    parser.add_argument("--ncat-idle", type=int, default=1_100,
                        help="most clients to try on ncat for the memory test (default 1100; "
                        "0 skips it)")
    parser.add_argument("--memory-only", action="store_true",
                        help="skip the fan-out runs; only the memory test")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment for the sockhub server, repeatable "
                        "(e.g. PYTHONMALLOC=malloc)")
    parser.add_argument("--only", choices=("sockhub", "ncat"),
                        help="run the fan-out against one server only")
    parser.add_argument("--quiet-wait", type=float, default=QUIET_WAIT,
                        help="seconds to wait for the machine to idle before each run "
                        f"(default {QUIET_WAIT:g}; 0: do not wait)")
    parser.add_argument("--retries", type=int, default=2,
                        help="redo a run that other processes disturbed (default 2)")
    parser.add_argument("--profile", action="store_true",
                        help="instead: one run at the largest N with the server under cProfile")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(n) for n in args.clients.split(",") if n.strip()]
    except ValueError:
        parser.error("--clients takes numbers separated by commas")
    if not args.sizes or min(args.sizes) < 2 or args.senders < 1:
        parser.error("every N must be >= 2 and --senders >= 1")
    if max(args.sizes) < args.senders:
        parser.error("--senders must not exceed the largest N")
    try:
        args.idle_sizes = [int(n) for n in args.idle.split(",") if int(n) > 0]
    except ValueError:
        parser.error("--idle takes numbers separated by commas")
    if any("=" not in item for item in args.server_env):
        parser.error("--server-env takes KEY=VALUE")
    if args.seconds <= 0 or args.timeout <= 0 or args.retries < 0 or args.messages < 0:
        parser.error("--seconds and --timeout must be > 0, --retries and --messages >= 0")
    return args


def raise_fd_limit(needed: int) -> None:
    """Servers and clients inherit our limit; 10,000 clients need more than the usual 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def main(argv: Sequence[str] | None = None) -> int:
    global QUIET_WAIT
    args = parse_args(argv)
    QUIET_WAIT = args.quiet_wait
    SERVER_ENV.update(item.split("=", 1) for item in args.server_env)
    # A SIGTERM to us unwinds like Ctrl-C, so the finally blocks stop our servers.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    raise_fd_limit(max([*args.idle_sizes, args.ncat_idle, *args.sizes]) + 1024)
    available = sorted(os.sched_getaffinity(0))
    if len(available) >= 2:
        cpus: tuple[set[int] | None, set[int] | None] = ({available[0]}, {available[1]})
        os.sched_setaffinity(0, {available[1]})  # we and our forked clients
        placement = f"servers on CPU {available[0]}, clients on CPU {available[1]}"
    else:
        cpus = (None, None)
        placement = "one CPU: servers and clients share it, not pinned"
    have_ncat = NCAT is not None
    log(f"chat benchmark: N={args.clients}, K={args.senders}; {placement}"
        + ("" if have_ncat else "; ncat not found (apt-get install ncat): sockhub only"))
    try:
        if args.profile:
            clients = max(args.sizes)
            print(profile_sockhub(clients, choose_messages(clients, args, cpus), args, cpus))
            return 0
        kinds = [k for k in ("sockhub", "ncat") if args.only in (None, k)]
        if not have_ncat:
            kinds = [k for k in kinds if k != "ncat"]
        rows: list[Row] = []
        for clients in [] if args.memory_only else args.sizes:
            messages = choose_messages(clients, args, cpus)
            log(f"N={clients}: M={messages} messages per sender")
            rows.extend(run_fanout(kind, clients, messages, args, cpus) for kind in kinds)
        mems = [measure_sockhub_memory(n, args, cpus) for n in args.idle_sizes]
        probe = probe_ncat(args.ncat_idle, cpus, budget=300.0) if (
            args.ncat_idle and have_ncat) else None
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        return 130
    blank = "\n" if args.markdown else ""
    if rows:
        print(fanout_table(rows, args.markdown))
        print(f"{blank}(K={args.senders} senders, each sending its next message when the "
              f"previous one is acknowledged; {placement})")
    if SERVER_ENV:
        print(f"{blank}(sockhub server environment: "
              f"{' '.join(f'{k}={v}' for k, v in SERVER_ENV.items())})")
    if mems or probe is not None:
        print(blank + "\n" + memory_table(mems, probe, args.markdown))
    notes = verdict(rows, mems[-1] if mems else None)
    if notes:
        print(blank)
    for note in notes:
        print(("- " if args.markdown else "note: ") + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
