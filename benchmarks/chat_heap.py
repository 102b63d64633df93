"""Where an idle chat client's VmRSS goes: pymalloc's arenas, glibc's heap, and its holes.

chat_idle.py reads VmRSS; chat_tracemalloc.py counts live Python allocations.
The two differ, and this says by how much and where: it runs the server with
a SIGUSR1 hook (no tracemalloc: it would cost more than it measures) that writes
``sys._debugmallocstats()`` (pymalloc: bytes in allocated blocks, arenas) and
glibc's ``mallinfo2()`` (the heap, in use and free; uvloop's transports and
libuv handles are malloc'd there, above pymalloc's 512 B), then calls
``malloc_trim(0)`` and reads VmRSS again (what glibc's free chunks held). It
fires with the server empty and with N registered clients idle, and prints the
difference per client. Linux and glibc only.

    python benchmarks/chat_heap.py --door irc --clients 10000
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Sequence

from chat_servers import (
    dump_hooked,
    hooked_chat_server,
    idle_clients,
    load_beside_server,
    raise_fd_limit,
    wait_for_idle,
)

# Run sockhub with a hook writing the allocators' figures on each SIGUSR1.
HOOKED = r"""
import ctypes, os, signal, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
taken = 0
def rss():
    with open("/proc/self/status") as status:
        return next(line.split()[1] for line in status if line.startswith("VmRSS"))
def dump(_sig, _frame):
    global taken
    taken += 1
    path = f"{sys.argv[1]}.{taken}"
    info = libc.mallinfo2()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    saved = os.dup(2)
    os.dup2(fd, 2)  # _debugmallocstats writes to the C stderr
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    with open(path, "a") as out:
        for name, _ in MallInfo2._fields_:
            out.write(f"glibc {name} = {getattr(info, name)}\n")
        out.write(f"VmRSS = {rss()}\n")
        libc.malloc_trim(0)
        out.write(f"VmRSS after malloc_trim = {rss()}\n")
    print(f"dump {taken} written", file=sys.stderr, flush=True)
signal.signal(signal.SIGUSR1, dump)
from sockhub.cli import main
sys.exit(main(sys.argv[2:]))
"""
DUMP_TIMEOUT = 120.0
#: The figures shown, in order: (label, key in the dump).
SHOWN = (
    ("pymalloc: bytes in allocated blocks", "bytes in allocated blocks"),
    ("pymalloc: arenas (1 MiB each)", "arenas allocated current"),
    ("glibc heap (sbrk'd)", "glibc arena"),
    ("glibc heap: in use", "glibc uordblks"),
    ("glibc heap: free chunks", "glibc fordblks"),
    ("glibc mmap'd chunks", "glibc hblkhd"),
    ("VmRSS", "VmRSS"),
    ("VmRSS after malloc_trim(0)", "VmRSS after malloc_trim"),
)


def read_dump(path: str) -> dict[str, int]:
    figures: dict[str, int] = {}
    with open(path) as dump:
        for line in dump:
            match = re.match(r"# (bytes in allocated blocks|arenas allocated current)\s+=\s+"
                             r"([\d,]+)", line)
            if match:
                figures[match.group(1)] = int(match.group(2).replace(",", ""))
            match = re.match(r"(glibc \w+|VmRSS after malloc_trim|VmRSS) = (\d+)", line)
            if match:
                scale = 1024 if match.group(1).startswith("VmRSS") else 1  # kB
                figures[match.group(1)] = int(match.group(2)) * scale
    if "arenas allocated current" in figures:
        figures["arenas allocated current"] <<= 20
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10000, help="clients (default 10000)")
    parser.add_argument("--door", choices=("line", "irc", "web"), default="line",
                        help="the door the clients come through (default line)")
    args = parser.parse_args(argv)
    raise_fd_limit(args.clients + 1024)
    server_cpus = load_beside_server()
    with tempfile.TemporaryDirectory(prefix="sockhub-chat-heap-") as work:
        stem = os.path.join(work, "dump")
        with hooked_chat_server(HOOKED, stem, work, args.door, server_cpus) as server:
            port = server.wait_listening()

            def dump() -> None:
                wait_for_idle(server.pid)
                dump_hooked(server, "dump", DUMP_TIMEOUT)

            result = idle_clients(server, port, args.door, args.clients, dump, ("ready",))
        if result.errors:
            print(result.report())
            return 1
        empty, idle = read_dump(f"{stem}.1"), read_dump(f"{stem}.2")
    n = args.clients
    print(f"{args.door} door, {n} idle registered clients: per client, idle less empty")
    for label, key in SHOWN:
        if key in empty and key in idle:
            print(f"  {label:<38} {(idle[key] - empty[key]) / n:8,.0f} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
