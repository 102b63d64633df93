"""Part of benchmarks/chat.py: the fan-out runs, one server and one N at a time.

Each run is ``bench_chat`` against a fresh server, with the server's CPU read
between the "ready" and "done" phases, redone when other processes disturbed
it; M is sized per N by a pilot run. Imported, not run.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass

from benchlib import NOISE, log
from chat_servers import (
    HOST,
    LIMITS_OFF,
    WindowMeter,
    start_ncat,
    start_sockhub,
    wait_for_quiet,
)

from sockhub.client.chatbench import bench_chat

PILOT_DELIVERIES = 60_000  # deliveries in the pilot run that sizes M


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


def fanout_row(name: str, pid: int, port: int, mode: str, clients: int, senders: int,
               messages: int, timeout: float, *, window: int = 1,
               procs: int | None = None, rate: float | None = None) -> Row:
    meter = WindowMeter(pid)
    result = bench_chat(HOST, port, clients=clients, senders=senders, messages=messages,
                        mode=mode, room="#bench", timeout=timeout, on_phase=meter,
                        window=window, procs=procs, rate=rate)
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
    per_message: int = clients * args.senders
    seconds: float = args.seconds
    return max(10, min(100_000, round(seconds * result.deliveries_per_s / per_message)))
