"""What the chat server's memory per client *is*: live Python objects, by line.

benchmarks/chat.py reads VmRSS, which also counts memory the allocator kept
after a burst (a join storm peaks far above where it settles). This runs the
server under tracemalloc, snapshots it empty, with N clients connected, and
with them registered, and prints the difference per client by source line.
tracemalloc slows the server several times over, so keep N in the thousands.

    python benchmarks/chat_tracemalloc.py --clients 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import tracemalloc
from collections.abc import Sequence

from chat_servers import (
    dump_hooked,
    hooked_chat_server,
    idle_clients,
    load_beside_server,
    memory_kib,
    raise_fd_limit,
    wait_for_idle,
)

# Run sockhub with tracemalloc on, writing a snapshot on each SIGUSR1.
TRACED = """
import signal, sys, tracemalloc
tracemalloc.start(1)
taken = 0
def snapshot(_sig, _frame):
    global taken
    taken += 1
    tracemalloc.take_snapshot().dump(f"{sys.argv[1]}.{taken}")
    print(f"snapshot {taken} written", file=sys.stderr, flush=True)
signal.signal(signal.SIGUSR1, snapshot)
from sockhub.cli import main
sys.exit(main(sys.argv[2:]))
"""
SNAPSHOT_TIMEOUT = 120.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000, help="clients (default 2000)")
    parser.add_argument("--top", type=int, default=12, help="lines to show (default 12)")
    parser.add_argument("--door", choices=("line", "irc", "web"), default="line",
                        help="the door the clients come through (default line)")
    args = parser.parse_args(argv)
    raise_fd_limit(args.clients + 1024)
    server_cpus = load_beside_server()
    with tempfile.TemporaryDirectory(prefix="sockhub-chat-trace-") as work:
        stem = os.path.join(work, "snap")
        with hooked_chat_server(TRACED, stem, work, args.door, server_cpus) as server:
            port = server.wait_listening()
            rss: list[int] = []

            def snapshot() -> None:
                wait_for_idle(server.pid)
                rss.append(memory_kib(server.pid))
                dump_hooked(server, "snapshot", SNAPSHOT_TIMEOUT)

            result = idle_clients(server, port, args.door, args.clients, snapshot,
                                  ("connected", "ready"))
        if result.errors:
            print(result.report())
            return 1
        empty, connected, registered = (
            tracemalloc.Snapshot.load(f"{stem}.{i}") for i in (1, 2, 3))
    n = args.clients
    for (title, old, new), (rss_old, rss_new) in zip(
        (("connected vs empty", empty, connected),
         ("registered vs connected", connected, registered)),
        ((rss[0], rss[1]), (rss[1], rss[2])), strict=True,
    ):
        diff = new.compare_to(old, "lineno")
        traced = sum(stat.size_diff for stat in diff)
        print(f"{title}: traced {traced / n:,.0f} B per client; "
              f"VmRSS {(rss_new - rss_old) * 1024 / n:,.0f} B per client")
        for stat in diff[: args.top]:
            print(f"  {stat.size_diff / n:7.0f} B  {stat.count_diff:+7d} blocks  "
                  f"{stat.traceback}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
