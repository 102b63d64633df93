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

This script is the command line; the parts are its siblings: chat_servers.py
(starting the servers, reading them), chat_fanout.py, chat_memory.py,
chat_profile.py and chat_tables.py.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

import chat_servers
from benchlib import log
from chat_fanout import Row, choose_messages, run_fanout
from chat_memory import measure_sockhub_memory, probe_ncat
from chat_profile import profile_sockhub
from chat_servers import NCAT, QUIET_WAIT, SERVER_ENV, raise_fd_limit
from chat_tables import fanout_table, memory_table, verdict


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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    chat_servers.QUIET_WAIT = args.quiet_wait  # what wait_for_quiet() waits for
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
