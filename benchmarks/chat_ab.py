"""A/B of sockhub's chat fan-out: this tree's server against another revision's.

What a change costs per delivery (the metrics hooks, say), on a machine that
other work shares: the two servers run alternately, round after round, each
round a fresh server of each with the same N, K and M, and the figure is the
median over rounds of the paired ratio of server CPU per delivery (B over A),
which drifts in load affect less than a ratio of two separate medians.

    git archive BASE src | tar -x -C /tmp/base
    python benchmarks/chat_ab.py --base-src /tmp/base/src --clients 10,100 --rounds 7

Server A runs with ``PYTHONPATH=--base-src`` (the other revision), server B
from this tree (or ``--other-src``); both with the same interpreter, pinned to
CPU 0, the load to CPU 1 (as benchmarks/chat.py). ``--mode irc`` loads the IRC
door instead of the line door, ``--mode web`` the web door (JSON over a WebSocket).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import chat_servers
from benchlib import log
from chat_fanout import fanout_row
from chat_servers import SERVER_ENV, bench_mode, start_door, wait_for_quiet

SRC = str(Path(__file__).resolve().parent.parent / "src")


def one(src: str, mode: str, clients: int, senders: int, messages: int, timeout: float,
        cpus: set[int] | None, window: int = 1, procs: int | None = None,
        rate: float | None = None) -> tuple[float, float, str]:
    """(server µs/delivery, background %, problem) of one fresh server from ``src``."""
    SERVER_ENV["PYTHONPATH"] = src
    with tempfile.TemporaryDirectory(prefix="sockhub-chat-ab-") as data_dir:
        server, port = start_door(data_dir, cpus, mode)
        with server:
            row = fanout_row("sockhub", server.pid, port, bench_mode(mode), clients, senders,
                             messages, timeout, window=window, procs=procs, rate=rate)
    problem = row.first_error if row.errors else ("lost" if row.lost else "")
    return row.us_per_delivery, row.background_pct, problem


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-src", required=True, help="the src/ directory of revision A")
    parser.add_argument("--other-src", default=SRC,
                        help="the src/ directory of revision B (default: this tree's)")
    parser.add_argument("--mode", choices=("line", "irc", "web"), default="line",
                        help="the door to load (default line; web: JSON over a WebSocket)")
    parser.add_argument("--clients", default="10,100", help="values of N (default 10,100)")
    parser.add_argument("--senders", type=int, default=10, help="K (default 10)")
    parser.add_argument("--deliveries", type=int, default=300_000,
                        help="deliveries per run, N*K*M (default 300,000)")
    parser.add_argument("--rounds", type=int, default=7, help="A/B pairs per N (default 7)")
    parser.add_argument("--window", type=int, default=1,
                        help="messages a sender may have unacknowledged (default 1; issue 16 "
                        "measured with 128, where a loop turn brings many messages)")
    parser.add_argument("--rate", type=float, default=None,
                        help="messages a second per sender (paced, each message alone; "
                        "default: as fast as acknowledged)")
    parser.add_argument("--procs", type=int, default=None,
                        help="load client processes (default one per 50 clients)")
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="seconds to wait for the machine to idle before each pair")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    chat_servers.QUIET_WAIT = args.quiet_wait
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    available = sorted(os.sched_getaffinity(0))
    server_cpus: set[int] | None = None
    if len(available) >= 2:
        server_cpus = {available[0]}
        os.sched_setaffinity(0, {available[1]})
    sides = {"A": os.path.abspath(args.base_src), "B": os.path.abspath(args.other_src)}
    print(f"A: {sides['A']}\nB: {sides['B']}")
    print("| N | M | rounds | A µs/delivery (median) | B µs/delivery (median) | B/A paired "
          "(median) | B/A min-max | background % (max) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for clients in (int(n) for n in args.clients.split(",")):
        messages = max(10, args.deliveries // (clients * args.senders))
        figures: dict[str, list[float]] = {"A": [], "B": []}
        ratios: list[float] = []
        background = 0.0
        for index in range(args.rounds):
            wait_for_quiet()
            order = ("A", "B") if index % 2 == 0 else ("B", "A")
            pair: dict[str, float] = {}
            for side in order:
                us, noise, problem = one(sides[side], args.mode, clients, args.senders,
                                         messages, args.timeout, server_cpus, args.window,
                                         args.procs, args.rate)
                if problem:
                    raise SystemExit(f"{side} N={clients}: {problem}")
                pair[side] = us
                background = max(background, noise)
                log(f"N={clients} round {index + 1} {side}: {us:.2f} µs/delivery "
                    f"(background {noise:.0f}%)")
            for side, us in pair.items():
                figures[side].append(us)
            ratios.append(pair["B"] / pair["A"])
        print(f"| {clients} | {messages} | {args.rounds} | {statistics.median(figures['A']):.2f} "
              f"| {statistics.median(figures['B']):.2f} | {statistics.median(ratios):.3f}x "
              f"| {min(ratios):.2f}-{max(ratios):.2f} | {background:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
