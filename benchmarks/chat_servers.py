"""Part of benchmarks/chat.py: the servers under test and what is read from them.

Starting sockhub and ``ncat --chat`` pinned and bound to loopback, reading a
process's memory and CPU, waiting for the machine or a server to go quiet.
A module of its own because benchmarks/irc.py, chat_heap.py and chat_tracemalloc.py use
the same helpers. Imported, not run.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import benchlib
from benchlib import Server, machine_busy_seconds, process_cpu_seconds

from sockhub.client.chatbench import ChatBenchResult, bench_chat

HOST = "127.0.0.1"
QUIET_WAIT = 120.0  # seconds to wait for the machine to idle before a run
SETTLE_WAIT = 120.0  # seconds to wait for a server to go idle before reading its memory
SOCKHUB_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(chat\)")
NCAT_LISTENING = re.compile(r"Listening on 127\.0\.0\.1:(\d+)")
#: Extra environment for the sockhub server (--server-env), e.g. allocator settings.
SERVER_ENV: dict[str, str] = {}
NCAT = shutil.which("ncat")  # the pin shim exec()s a path, not a name

#: The server's connection caps are for the open internet; a benchmark from
#: one address with thousands of clients needs them off.
LIMITS_OFF = ("--max-conns", "none", "--max-conns-per-ip", "none")


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
                  profile: str | None = None, listener: str = "chat") -> tuple[Server, int]:
    """``sockhub serve chat`` with flood control off; optionally under cProfile.

    Returns the server and the port of ``listener`` (``chat``, ``irc``, ``web``: open
    the other doors with ``extra``).
    """
    runner = [sys.executable] + (["-m", "cProfile", "-o", profile] if profile else [])
    argv = [*runner, "-m", "sockhub", "serve", "chat", "--host", HOST, "--port", "0",
            "--data-dir", data_dir, "--flood-rate", "none", "--loop", "uvloop", *extra]
    pattern = (SOCKHUB_LISTENING if listener == "chat" else
               re.compile(rf"listening on 127\.0\.0\.1:(\d+) \({listener}\)"))
    server = Server("sockhub", argv, pattern, cpus, SERVER_ENV)
    try:
        return server, server.wait_listening()
    except BaseException:
        server.stop()
        raise


#: The bench's --mode for each door, and the listener its port is read from.
DOORS = {"line": ("line", "chat"), "irc": ("irc", "irc"), "web": ("ws", "web")}


def bench_mode(door: str) -> str:
    """bench_chat's mode for a door: ``web`` is spoken as ``ws``."""
    return DOORS[door][0]


def start_door(data_dir: str, cpus: set[int] | None, door: str) -> tuple[Server, int]:
    """sockhub with ``door`` open and the benchmark's limits off; the port of ``door``."""
    listener = DOORS[door][1]
    opened = [] if listener == "chat" else [f"--{listener}-port", "0"]
    return start_sockhub(data_dir, cpus, listener=listener, extra=[*opened, *LIMITS_OFF])


def load_beside_server() -> set[int] | None:
    """Move this process (the load) to the second CPU; the first CPU, for the server.

    None on a one-CPU machine (nothing pinned)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    os.sched_setaffinity(0, {cpus[1]})
    return {cpus[0]}


def hooked_chat_server(hook: str, stem: str, work: str, door: str,
                       cpus: set[int] | None) -> Server:
    """``sockhub serve chat`` (every door open, limits off) under ``python -c hook stem ...``:
    a hook that writes a dump named from ``stem`` on each SIGUSR1 (chat_heap.py,
    chat_tracemalloc.py). Wait for it with ``wait_listening``: the port is ``door``'s."""
    argv = [sys.executable, "-c", hook, stem, "serve", "chat", "--host", HOST, "--port", "0",
            "--data-dir", os.path.join(work, "db"), "--flood-rate", "none", "--loop", "uvloop",
            "--irc-port", "0", "--web-port", "0", *LIMITS_OFF]
    listening = SOCKHUB_LISTENING if door == "line" else re.compile(
        rf"listening on 127\.0\.0\.1:(\d+) \({DOORS[door][1]}\)")
    return Server("sockhub", argv, listening, cpus)


def dump_hooked(server: Server, word: str, timeout: float) -> None:
    """SIGUSR1 a :func:`hooked_chat_server` and wait for its hook's line containing ``word``."""
    os.kill(server.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = server.lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is None or word in line:
            return
    raise RuntimeError(f"the server wrote no {word}")


def idle_clients(server: Server, port: int, door: str, clients: int,
                 take: Callable[[], None], at: Sequence[str]) -> ChatBenchResult:
    """``clients`` connect through ``door``, register and join ``#lobby``, and say nothing.

    ``take()`` runs once before they come and at each bench phase in ``at``
    (``connected``, ``ready``); the server stops once they are all in, so no
    departures are announced (chat_heap.py, chat_tracemalloc.py).
    """
    def on_phase(phase: str) -> None:
        if phase in at:
            take()
        elif phase == "done":
            server.stop()

    take()
    return bench_chat(HOST, port, clients=clients, senders=0, messages=0,
                      mode=bench_mode(door), room="#lobby", timeout=900, on_phase=on_phase)


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


def raise_fd_limit(needed: int) -> None:
    """Servers and clients inherit our limit; 10,000 clients need more than the usual 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
