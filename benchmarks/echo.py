"""Echo benchmark: sockhub against bare asyncio, uvloop, threads and Twisted.

Why this shape:

* Each server runs alone in its own process, pinned to one CPU, and the load
  client (``sockhub bench echo``) is pinned to another, so the two never
  fight for a core and "server CPU" means one core's worth at most.
* A fast client can be the bottleneck, which makes every fast server look
  the same in req/s. The server's own CPU time per request (utime + stime
  from /proc/PID/stat, whole process, all threads) does not depend on how
  hard the client pushes, so it is the fair column; req/s is shown too.
* Servers bind 127.0.0.1 with port 0 and announce ``listening on HOST:PORT
  (NAME)`` on stderr; we wait for that line (with a timeout), never sleep.
* The machine may be shared (a test suite running next door). Before each
  run we wait for it to idle, and a run during which other processes used
  more than a tenth of a core (all CPU time in /proc/stat minus ours) is
  redone; what remains is reported, never hidden.
* asyncio's selector transport reads into a fresh 256 KiB bytes object per
  recv(). Until glibc's dynamic mmap threshold happens to rise above that,
  each read costs mmap + mremap + munmap, so any asyncio-based server runs in
  a slow or a fast mode by luck of its allocation history (3-4x apart here).
  ``--steady-malloc`` gives every server fixed malloc thresholds, so all
  asyncio rows sit in the fast mode; the default measures what users get.
* Every child runs in its own session, so a Ctrl-C at the terminal reaches
  only this script, which then stops exactly the processes it started.

    python benchmarks/echo.py --seconds 5 --procs 2 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from benchlib import (
    NOISE,
    Server,
    log,
    machine_busy_seconds,
    pinned,
    process_cpu_times,
    wait_for_quiet,
)

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers" / "echo_peers.py"
QUIET_WAIT = 120.0  # seconds to wait for the machine to calm down before a run
REFERENCE = "sockhub"  # ratios are against this row
TARGET_PEER = "uvloop-protocol"  # the goal: sockhub >= TARGET_RATIO x this peer
TARGET_RATIO = 1.0  # issue 16 (0.9 before it)

# glibc tunables for --steady-malloc: allocate 256 KiB from the heap and never
# trim it back, instead of mmap/munmap on every asyncio read.
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20), "MALLOC_TRIM_THRESHOLD_": str(4 << 20)}



def _sockhub(loop: str) -> list[str]:
    return [sys.executable, "-m", "sockhub", "serve", "echo", "--host", HOST, "--port", "0",
            "--loop", loop, "--log-level", "info"]


def _peer(kind: str) -> list[str]:
    return [sys.executable, str(PEERS), "--kind", kind, "--port", "0"]


@dataclass(frozen=True)
class ServerSpec:
    """One contender: its table name, its command, and the name it logs when bound."""

    name: str
    argv: list[str]
    announces: str


SERVERS: list[ServerSpec] = [
    ServerSpec("sockhub", _sockhub("uvloop"), "echo"),
    ServerSpec("sockhub-asyncio", _sockhub("asyncio"), "echo"),
    ServerSpec("asyncio-streams", _peer("asyncio-streams"), "asyncio-streams"),
    ServerSpec("asyncio-protocol", _peer("asyncio-protocol"), "asyncio-protocol"),
    ServerSpec("uvloop-protocol", _peer("uvloop-protocol"), "uvloop-protocol"),
    ServerSpec("threading", _peer("threading"), "threading"),
    ServerSpec("twisted", _peer("twisted"), "twisted"),
]








def own_cpu_seconds() -> float:
    """CPU time of this script plus every child it has reaped (the bench client tree)."""
    me, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime






def start_server(spec: ServerSpec, cpus: set[int] | None,
                 env: dict[str, str] | None = None) -> Server:
    """A benchlib Server waiting for this spec's own ``listening on`` line."""
    listening = re.compile(
        r"listening on 127\.0\.0\.1:(\d+) \(" + re.escape(spec.announces) + r"\)"
    )
    return Server(spec.name, spec.argv, listening, cpus, env)


def run_client(port: int, args: argparse.Namespace, cpus: set[int] | None) -> dict[str, float]:
    """Run ``sockhub bench echo --json`` to completion and return what it printed.

    The client forks ``--procs`` workers; it leads its own process group, so
    on timeout or Ctrl-C that group (all of it started by us) is killed.
    """
    argv = [sys.executable, "-m", "sockhub", "bench", "echo", f"{HOST}:{port}",
            "--conns", str(args.conns), "--size", str(args.size),
            "--seconds", str(args.seconds), "--procs", str(args.procs), "--json"]
    client = subprocess.Popen(
        pinned(argv, cpus),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = client.communicate(timeout=args.seconds + 60)
    finally:
        if client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)
            client.wait()
    lines = out.strip().splitlines()
    if not lines:
        raise RuntimeError(f"bench client printed nothing (exit {client.returncode}):\n{err}")
    result: dict[str, float] = json.loads(lines[-1])
    return result


@dataclass
class Row:
    """One server's figures from one load run."""

    req_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_pct: float
    cpu_us_per_req: float
    user_us_per_req: float  # the server's own code (and the loop's)
    sys_us_per_req: float  # the kernel on its behalf: syscalls, TCP, page faults
    client_cpu_pct: float
    errors: float
    background_pct: float  # CPU other processes used meanwhile, % of one core


def run_once(spec: ServerSpec, args: argparse.Namespace, server_cpus: set[int] | None,
             client_cpus: set[int] | None) -> Row:
    """Start one server, load it once, stop it; CPU is counted over the load only."""
    with start_server(spec, server_cpus, STEADY_MALLOC if args.steady_malloc else None) as server:
        port = server.wait_listening()
        (user_before, sys_before), ours_before = process_cpu_times(server.pid), own_cpu_seconds()
        busy_before = machine_busy_seconds()
        result = run_client(port, args, client_cpus)
        busy = machine_busy_seconds() - busy_before
        user_after, sys_after = process_cpu_times(server.pid)
        ours = own_cpu_seconds() - ours_before
    user, system = user_after - user_before, sys_after - sys_before
    cpu_used = user + system
    if server.exit_code != 0:
        log(f"  warning: {spec.name} exited with {server.exit_code} after SIGTERM:\n"
            f"{server.stderr()}")
    seconds, requests = result["seconds"], result["requests"]
    return Row(
        req_per_s=result["req_per_s"],
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        server_cpu_pct=100.0 * cpu_used / seconds,
        cpu_us_per_req=1e6 * cpu_used / requests if requests else float("nan"),
        user_us_per_req=1e6 * user / requests if requests else float("nan"),
        sys_us_per_req=1e6 * system / requests if requests else float("nan"),
        client_cpu_pct=100.0 * result["client_cpu_s"] / seconds,
        errors=result["errors"],
        background_pct=max(0.0, 100.0 * (busy - cpu_used - ours) / seconds),
    )


def measure(spec: ServerSpec, args: argparse.Namespace, server_cpus: set[int] | None,
            client_cpus: set[int] | None) -> Row:
    """One run on a quiet machine, redone (up to ``--retries``) if something else woke up."""
    for attempt in range(args.retries + 1):
        wait_for_quiet(args.quiet_wait)
        row = run_once(spec, args, server_cpus, client_cpus)
        log(f"  {spec.name:<17} {row.req_per_s:>10,.0f} req/s  server CPU "
            f"{row.server_cpu_pct:5.1f}%  {row.cpu_us_per_req:6.1f} µs/req  client CPU "
            f"{row.client_cpu_pct:5.1f}%  background {row.background_pct:4.1f}%"
            + (f"  ERRORS {row.errors:g}" if row.errors else ""))
        if row.background_pct <= 100.0 * NOISE:
            break
        if attempt < args.retries:
            log(f"  other processes used {row.background_pct:.0f}% of a core; again")
    return row


def median_row(rows: Sequence[Row]) -> Row:
    """Each column's median over the rounds (columns taken separately)."""
    return Row(*(statistics.median(getattr(r, f.name) for r in rows) for f in fields(Row)))


HEADERS = ["server", "req/s", "req/s vs sockhub", "p50 ms", "p99 ms", "server CPU %",
           "CPU µs/req", "CPU/req vs sockhub", "client CPU %"]
SPLIT_HEADERS = ["user µs/req", "sys µs/req"]


def table(results: dict[str, Row], markdown: bool, split: bool = False) -> str:
    """The results as aligned text or as a Markdown table (``split``: user/sys columns)."""
    headers = HEADERS + SPLIT_HEADERS if split else HEADERS
    ref = results.get(REFERENCE)

    def ratio(value: float, base: float | None) -> str:
        return f"{value / base:.2f}x" if base else "-"

    body = [
        [
            name,
            f"{r.req_per_s:,.0f}",
            ratio(r.req_per_s, ref.req_per_s if ref else None),
            f"{r.p50_ms:.3f}",
            f"{r.p99_ms:.3f}",
            f"{r.server_cpu_pct:.0f}",
            f"{r.cpu_us_per_req:.1f}",
            ratio(r.cpu_us_per_req, ref.cpu_us_per_req if ref else None),
            f"{r.client_cpu_pct:.0f}",
            *([f"{r.user_us_per_req:.1f}", f"{r.sys_us_per_req:.1f}"] if split else []),
        ]
        for name, r in results.items()
    ]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(cells, widths, strict=True)))
        for cells in [headers, *body]
    )


def notes(results: dict[str, Row], runs: dict[str, list[Row]]) -> list[str]:
    """What a reader must know before trusting the table."""
    out = []
    if any(len(rows) > 1 for rows in runs.values()):
        spread = ", ".join(
            f"{n} {min(r.cpu_us_per_req for r in rows):.1f}-"
            f"{max(r.cpu_us_per_req for r in rows):.1f}"
            for n, rows in runs.items()
        )
        out.append(f"CPU µs/req, lowest-highest round: {spread}")
    noisy = [f"{n} ({r.background_pct:.0f}%)" for n, r in results.items()
             if r.background_pct > 100.0 * NOISE]
    if noisy:
        out.append(f"other processes used CPU during: {', '.join(noisy)} (% of one core)")
    saturated = [n for n, r in results.items() if r.client_cpu_pct >= 90.0]
    if saturated:
        out.append(
            f"client CPU >= 90% of its core for {', '.join(saturated)}: "
            "req/s is capped by the load generator there; compare CPU µs/req instead."
        )
    failed = [f"{n} ({r.errors:g})" for n, r in results.items() if r.errors]
    if failed:
        out.append(f"bench errors: {', '.join(failed)}")
    mine, theirs = runs.get(REFERENCE, []), runs.get(TARGET_PEER, [])
    if len(mine) > 1 and len(mine) == len(theirs):
        out.append(paired(mine, theirs))
    ref, peer = results.get(REFERENCE), results.get(TARGET_PEER)
    if ref and peer:
        speed = ref.req_per_s / peer.req_per_s
        efficiency = peer.cpu_us_per_req / ref.cpu_us_per_req
        verdict = "met" if min(speed, efficiency) >= TARGET_RATIO else "NOT met"
        out.append(
            f"target sockhub >= {TARGET_RATIO}x {TARGET_PEER}: req/s {speed:.2f}x, "
            f"CPU efficiency (its µs/req over ours) {efficiency:.2f}x -> {verdict}"
        )
    return out


def paired(mine: Sequence[Row], theirs: Sequence[Row]) -> str:
    """The per-round ratios against the target peer: median, quartiles and extremes.

    Each round runs the two servers one after the other, so a round's own
    ratio feels less of the drift in load than a ratio of two medians.
    """
    def spread(values: list[float]) -> str:
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return (f"median {median:.2f}x (quartiles {q1:.2f}-{q3:.2f}, "
                f"lowest {min(values):.2f}x, highest {max(values):.2f}x)")

    cpu = [t.cpu_us_per_req / m.cpu_us_per_req for m, t in zip(mine, theirs, strict=True)
           if m.cpu_us_per_req]
    speed = [m.req_per_s / t.req_per_s for m, t in zip(mine, theirs, strict=True) if t.req_per_s]
    return (f"per round, {TARGET_PEER}'s CPU/req over {REFERENCE}'s: {spread(cpu)}; "
            f"{REFERENCE}'s req/s over {TARGET_PEER}'s: {spread(speed)}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    names = [s.name for s in SERVERS]
    parser = argparse.ArgumentParser(
        description="Echo benchmark: sockhub against bare asyncio, uvloop, threads, Twisted.",
        epilog=f"servers: {', '.join(names)}",
    )
    parser.add_argument("--conns", type=int, default=10, help="connections (default 10)")
    parser.add_argument("--size", type=int, default=1024, help="bytes per request (default 1024)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="load per server, seconds (default 5)")
    parser.add_argument("--procs", type=int, default=1,
                        help="client processes, all on the client CPU (default 1)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every server this many times, interleaved; report medians")
    parser.add_argument("--retries", type=int, default=3,
                        help="redo a run that other processes disturbed (default 3)")
    parser.add_argument("--steady-malloc", action="store_true",
                        help="fix glibc's malloc thresholds in every server (see the docstring)")
    parser.add_argument("--cpu-split", action="store_true",
                        help="add the server's user and system µs/request to the table")
    parser.add_argument("--quiet-wait", type=float, default=QUIET_WAIT,
                        help=f"seconds to wait for the machine to idle before each run "
                        f"(default {QUIET_WAIT:g}; a shared machine may never be idle)")
    parser.add_argument("--only", metavar="NAME,...",
                        help="run only these servers (comma-separated)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(names)}")
        args.servers = [s for s in SERVERS if s.name in wanted]
    else:
        args.servers = SERVERS
    if min(args.conns, args.size, args.procs, args.rounds) < 1 or args.seconds <= 0:
        parser.error("--conns, --size, --procs, --rounds must be >= 1 and --seconds > 0")
    if args.retries < 0:
        parser.error("--retries must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM to us unwinds like Ctrl-C, so the finally blocks stop our servers.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        server_cpus, client_cpus = {cpus[0]}, {cpus[1]}
        placement = f"server on CPU {cpus[0]}, client on CPU {cpus[1]}"
    else:
        server_cpus = client_cpus = None
        placement = "only one CPU: server and client share it, not pinned"
    log(f"echo benchmark: {args.conns} conns x {args.size} B, {args.seconds:g} s, "
        f"{args.procs} client proc(s), {args.rounds} round(s); {placement}"
        + ("; steady malloc" if args.steady_malloc else ""))
    runs: dict[str, list[Row]] = {s.name: [] for s in args.servers}
    try:
        for round_no in range(1, args.rounds + 1):
            if args.rounds > 1:
                log(f"round {round_no}/{args.rounds}")
            for spec in args.servers:
                runs[spec.name].append(measure(spec, args, server_cpus, client_cpus))
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        return 130
    results = {name: median_row(rows) for name, rows in runs.items()}
    print(table(results, args.markdown, args.cpu_split))
    heading = f"{args.conns} conns x {args.size} B, {args.seconds:g} s, {args.procs} client proc(s)"
    if args.rounds > 1:
        heading += f", median of {args.rounds} rounds"
    if args.steady_malloc:
        heading += ", " + " ".join(f"{k}={v}" for k, v in STEADY_MALLOC.items())
    print(("\n" if args.markdown else "") + f"({heading}; {placement})")
    found = notes(results, runs)
    if found and args.markdown:
        print()
    for note in found:
        print(("- " if args.markdown else "note: ") + note)
    return 1 if any(r.errors for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
