"""Where a sockhub chat server's time goes during the send window, by py-spy.

py-spy samples the server from outside (no tracing overhead, unlike
cProfile), only between bench_chat's "ready" and "done" phases, so joins and
setup are left out. Prints the functions with the most samples, by own time
and by time including callees.

    pip install py-spy      # a tool, not a dependency of sockhub
    python benchmarks/chat_pyspy.py --mode irc --clients 10 --messages 2000 --window 128
    python benchmarks/chat_pyspy.py --src /tmp/base/src ...   # another revision
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import chat_servers
from chat_servers import HOST, SERVER_ENV, bench_mode, start_door

from sockhub.client.chatbench import bench_chat

SRC = str(Path(__file__).resolve().parent.parent / "src")


class Spy:
    """``py-spy record`` of one process between the "ready" and "done" phases."""

    def __init__(self, pid: int, out: str, rate: int, idle: bool = False) -> None:
        self.pid, self.out, self.rate, self.idle = pid, out, rate, idle
        self.process: subprocess.Popen[bytes] | None = None

    def __call__(self, phase: str) -> None:
        if phase == "ready":
            spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
            self.process = subprocess.Popen(
                [spy, "record", "--pid", str(self.pid), "--rate", str(self.rate), "--format",
                 "raw", "--output", self.out, "--nonblocking", *(["--idle"] if self.idle else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # py-spy attaches asynchronously; a gap in samples is harmless
        elif phase == "done" and self.process is not None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)


def report(path: str, top: int) -> str:
    """Own and inclusive samples per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")")
                  for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"{samples} samples", "own %   function"]
    lines += [f"{100 * n / samples:5.1f}   {f}" for f, n in own.most_common(top)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / samples:5.1f}   {f}" for f, n in total.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default=SRC,
                        help="the src/ directory to run (default this tree's)")
    parser.add_argument("--mode", choices=("line", "irc", "web"), default="irc",
                        help="the door to load (web: JSON over a WebSocket)")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--messages", type=int, default=2000, help="per sender")
    parser.add_argument("--window", type=int, default=128,
                        help="messages a sender may have unacknowledged (default 128)")
    parser.add_argument("--rate", type=int, default=250, help="samples a second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--pace", type=float, default=None,
                        help="paced load instead of a window: messages a second per sender "
                        "(issue 16's: 50, with --clients 500)")
    parser.add_argument("--idle", action="store_true",
                        help="sample idle time too (a loop blocked in a system call shows)")
    parser.add_argument("--nice", type=int, default=0,
                        help="the server's nice value (e.g. -15 on a shared machine; root)")
    args = parser.parse_args()
    chat_servers.QUIET_WAIT = 0.0
    SERVER_ENV["PYTHONPATH"] = args.src
    available = sorted(os.sched_getaffinity(0))
    server_cpus = {available[0]} if len(available) >= 2 else None
    if len(available) >= 2:
        os.sched_setaffinity(0, {available[1]})
    with tempfile.TemporaryDirectory(prefix="sockhub-chat-pyspy-") as data_dir:
        server, port = start_door(os.path.join(data_dir, "db"), server_cpus, args.mode)
        out = os.path.join(data_dir, "spy.txt")
        with server:
            if args.nice:
                os.setpriority(os.PRIO_PROCESS, server.pid, args.nice)
            result = bench_chat(HOST, port, clients=args.clients, senders=args.senders,
                                messages=args.messages, mode=bench_mode(args.mode),
                                room="#bench",
                                window=1 if args.pace else args.window, rate=args.pace,
                                timeout=120.0,
                                on_phase=Spy(server.pid, out, args.rate, args.idle))
        print(result.report())
        print(report(out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
