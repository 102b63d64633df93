"""The chat hub's three doors side by side: server CPU per delivery, line vs IRC vs web.

The same fan-out as benchmarks/chat.py and irc.py (``sockhub bench chat``: N
clients in ``#bench``, K senders, M messages each, each sender paced by its
own message coming back, every delivery checked exactly-once and in order),
once through each door of one sockhub build, in the same run:

* ``line``: the line door (``--mode line``);
* ``irc``: the IRC door (``--mode irc``, with ``echo-message``);
* ``web``: the web door's JSON protocol v1 over a WebSocket at ``/ws``
  (``--mode ws``).

Each run is a fresh ``sockhub serve chat --port 0 --irc-port 0 --web-port 0``
pinned to CPU 0, the load pinned to CPU 1; the column that compares doors is
the server's CPU time per delivery (/proc/PID/stat between "everyone joined"
and "everyone counted everything"). The doors take turns round after round
(the order rotating), and the web/IRC ratio is the median of each round's
own ratio, so a machine that other work shares moves both sides of it.

    python benchmarks/doors.py --markdown
    python benchmarks/doors.py --runs 100:300 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
from collections.abc import Sequence

import chat_servers
from benchlib import Server, log
from chat_fanout import Row, fanout_row
from chat_servers import LIMITS_OFF, start_sockhub, wait_for_quiet

#: door → (the bench mode that speaks it, the listener name in ``listening on``).
DOORS = {"line": ("line", "chat"), "irc": ("irc", "irc"), "web": ("ws", "web")}


def start(door: str, data_dir: str, cpus: set[int] | None) -> tuple[Server, int]:
    """A fresh chat server with all three doors open; the port of ``door``."""
    return start_sockhub(data_dir, cpus, listener=DOORS[door][1],
                         extra=["--irc-port", "0", "--web-port", "0", *LIMITS_OFF])


def one(door: str, clients: int, senders: int, messages: int, timeout: float,
        cpus: set[int] | None) -> Row:
    with tempfile.TemporaryDirectory(prefix="sockhub-doors-bench-") as data_dir:
        server, port = start(door, data_dir, cpus)
        with server:
            row = fanout_row(door, server.pid, port, DOORS[door][0], clients, senders,
                             messages, timeout)
    log(f"  N={clients:<4} {door:<4} {row.deliveries:>9,}/{row.expected:,} deliveries "
        f"{row.deliveries_per_s:>9,.0f}/s  server {row.us_per_delivery:6.2f} µs/delivery "
        f"({row.server_cpu_pct:3.0f}% CPU)  client {row.client_cpu_pct:3.0f}%  "
        f"p50 {row.p50_ms:.2f} ms  p99 {row.p99_ms:.2f} ms  background {row.background_pct:.0f}%"
        + (f"  ERRORS {row.errors}: {row.first_error}" if row.errors else ""))
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="100:300,500:60",
                        help="N:M pairs, comma-separated (default 100:300,500:60)")
    parser.add_argument("--senders", type=int, default=10, help="K (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per N (default 3)")
    parser.add_argument("--doors", default="line,irc,web", help="doors to run (default all)")
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="seconds to wait for the machine to idle before each round")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    runs = [tuple(int(x) for x in item.split(":")) for item in args.runs.split(",")]
    doors = [d for d in args.doors.split(",") if d]
    if any(d not in DOORS for d in doors) or any(len(r) != 2 for r in runs):
        parser.error(f"--doors takes {', '.join(DOORS)}; --runs takes N:M pairs")
    chat_servers.QUIET_WAIT = args.quiet_wait
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    available = sorted(os.sched_getaffinity(0))
    cpus: set[int] | None = None
    placement = "one CPU: server and clients share it, not pinned"
    if len(available) >= 2:
        cpus = {available[0]}
        os.sched_setaffinity(0, {available[1]})
        placement = f"server on CPU {available[0]}, clients on CPU {available[1]}"
    log(f"doors benchmark: {args.runs}, K={args.senders}, {args.rounds} rounds; {placement}")
    sep = " | " if args.markdown else "  "
    head = ["N", "door", "M", "rounds", "deliveries (last)", "deliveries/s", "p50 ms", "p99 ms",
            "server µs/delivery (median)", "min-max", "vs irc (paired median)",
            "server CPU %", "client CPU %", "problems", "background % (max)"]
    lines = [sep.join(head)]
    if args.markdown:
        lines = ["| " + lines[0] + " |", "|" + "---:|" * len(head)]
    for clients, messages in runs:
        rows: dict[str, list[Row]] = {d: [] for d in doors}
        for index in range(args.rounds):
            wait_for_quiet()
            order = doors[index % len(doors):] + doors[:index % len(doors)]
            for door in order:
                rows[door].append(one(door, clients, args.senders, messages, args.timeout,
                                      cpus))
        for door in doors:
            got = rows[door]
            us = [r.us_per_delivery for r in got]
            ratio = "-"
            if door != "irc" and "irc" in rows:
                paired = [a.us_per_delivery / b.us_per_delivery
                          for a, b in zip(got, rows["irc"], strict=True)]
                ratio = f"{statistics.median(paired):.2f}x"
            problems = sum(r.errors + r.lost + r.duplicated + r.reordered for r in got)
            last = got[-1]
            cells = [str(clients), door, str(messages), str(len(got)),
                     f"{last.deliveries:,}/{last.expected:,}",
                     f"{statistics.median(r.deliveries_per_s for r in got):,.0f}",
                     f"{statistics.median(r.p50_ms for r in got):.2f}",
                     f"{statistics.median(r.p99_ms for r in got):.2f}",
                     f"{statistics.median(us):.2f}", f"{min(us):.2f}-{max(us):.2f}", ratio,
                     f"{statistics.median(r.server_cpu_pct for r in got):.0f}",
                     f"{statistics.median(r.client_cpu_pct for r in got):.0f}",
                     "none" if not problems else f"{problems} ({got[-1].first_error})",
                     f"{max(r.background_pct for r in got):.0f}"]
            lines.append(("| " + sep.join(cells) + " |") if args.markdown else sep.join(cells))
    print("\n".join(lines))
    print(f"\n(K={args.senders} senders, window 1; {placement})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
