"""Idle memory per registered client on each of sockhub's doors, beside ngIRCd and InspIRCd.

Issue 16's target: 10,000 idle registered clients at <= 3 KiB each on every
door. Each run is a fresh server; N clients connect, register and join one
room (``sockhub bench chat`` with no senders), and the server's VmRSS is
read once it is idle, before they arrive and after (the difference over N
is the figure). The join-storm peak (VmHWM) and the CPU the server spent
letting everyone in are reported beside it: the line door joins ``#lobby``
on arrival, so without quiet rooms that is O(N²) announcements.

    python benchmarks/chat_idle.py --clients 10000
    python benchmarks/chat_idle.py --clients 10000 --only line,irc,web --rounds 3
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

import chat_servers
import irc
from benchlib import Server, log, process_cpu_seconds
from chat_servers import (
    HOST,
    LIMITS_OFF,
    memory_kib,
    raise_fd_limit,
    start_sockhub,
    wait_for_idle,
    wait_for_quiet,
)

from sockhub.client.chatbench import bench_chat

#: kind → (bench mode, sockhub listener or None for another server, room).
KINDS = {
    "line": ("line", "chat", "#lobby"),  # the room every line client joins anyway
    "irc": ("irc", "irc", "#bench"),
    "web": ("ws", "web", "#bench"),
    "ngircd": ("irc", None, "#bench"),
    "inspircd": ("irc", None, "#bench"),
}


class Meter:
    """VmRSS, VmHWM and CPU of the server once the clients are in and it is idle."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.rss = self.hwm = 0
        self.cpu = 0.0
        self.start = time.monotonic()
        self.seconds = 0.0

    def __call__(self, phase: str) -> None:
        if phase == "ready":
            self.seconds = time.monotonic() - self.start
            wait_for_idle(self.server.pid)
            self.rss = memory_kib(self.server.pid)
            self.hwm = memory_kib(self.server.pid, "VmHWM")
            self.cpu = process_cpu_seconds(self.server.pid)
        elif phase == "done":
            self.server.stop()  # before N departures, which nobody measures


def start(kind: str, workdir: str, cpus: set[int] | None,
          loop: str = "uvloop") -> tuple[Server, int]:
    listener = KINDS[kind][1]
    if listener is None:
        return irc.start(kind, workdir, cpus)
    return start_sockhub(workdir, cpus, listener=listener,
                         extra=["--irc-port", "0", "--web-port", "0", *LIMITS_OFF,
                                "--loop", loop])


def one(kind: str, clients: int, args: argparse.Namespace,
        cpus: set[int] | None) -> tuple[float, float, float, float, str]:
    """(KiB per client, peak MiB, join CPU s, seconds to join, problem) of a fresh server."""
    mode, _, room = KINDS[kind]
    wait_for_quiet(args.quiet_wait)
    with tempfile.TemporaryDirectory(prefix=f"sockhub-idle-{kind}-") as workdir:
        server, port = start(kind, workdir, cpus, args.loop)
        with server:
            wait_for_idle(server.pid)
            base = memory_kib(server.pid)
            cpu0 = process_cpu_seconds(server.pid)
            meter = Meter(server)
            result = bench_chat(HOST, port, clients=clients, senders=0, messages=0, mode=mode,
                                room=room, timeout=args.timeout, on_phase=meter,
                                procs=args.procs)
    problem = result.first_error if result.errors else ""
    per_client = (meter.rss - base) / clients
    log(f"  {kind:<8} N={clients}: {per_client:.2f} KiB/client (base {base / 1024:.1f} MiB, "
        f"idle {meter.rss / 1024:.1f} MiB, peak {meter.hwm / 1024:.1f} MiB), join "
        f"{meter.cpu - cpu0:.2f} s CPU in {meter.seconds:.1f} s" + (f"; {problem}" if problem
                                                                  else ""))
    return per_client, meter.hwm / 1024, meter.cpu - cpu0, meter.seconds, problem


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="10000", help="values of N (default 10000)")
    parser.add_argument("--only", default="line,irc,web,ngircd,inspircd",
                        help=f"kinds, comma-separated ({', '.join(KINDS)})")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--procs", type=int, default=None, help="load client processes")
    parser.add_argument("--quiet-wait", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="sockhub's event loop (default uvloop)")
    args = parser.parse_args(argv)
    kinds = [k for k in args.only.split(",") if k]
    if any(k not in KINDS for k in kinds):
        parser.error(f"--only takes {', '.join(KINDS)}")
    kinds = [k for k in kinds if not (k == "ngircd" and not irc.NGIRCD)
             and not (k == "inspircd" and not irc.INSPIRCD)]
    sizes = [int(n) for n in args.clients.split(",")]
    chat_servers.QUIET_WAIT = args.quiet_wait
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    raise_fd_limit(max(sizes) * 2 + 1024)
    available = sorted(os.sched_getaffinity(0))
    cpus: set[int] | None = None
    if len(available) >= 2:
        cpus = {available[0]}
        os.sched_setaffinity(0, {available[1]})
    print("| server/door | N | KiB per client (median) | min-max | peak RSS MiB | "
          "join CPU s | join s | problems |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for clients in sizes:
        for kind in kinds:
            got = [one(kind, clients, args, cpus) for _ in range(args.rounds)]
            kib = [g[0] for g in got]
            print(f"| {kind} | {clients:,} | {statistics.median(kib):.2f} | "
                  f"{min(kib):.2f}-{max(kib):.2f} | {statistics.median(g[1] for g in got):.0f} | "
                  f"{statistics.median(g[2] for g in got):.1f} | "
                  f"{statistics.median(g[3] for g in got):.1f} | "
                  f"{'; '.join(g[4] for g in got if g[4]) or 'none'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
