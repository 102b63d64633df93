"""Part of benchmarks/chat.py: ``--profile``, where sockhub's server time goes.

cProfile over a whole run, and ``perf record`` over the send window only.
Imported, not run.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import shutil
import signal
import subprocess
import tempfile
import time

from chat_servers import HOST, LIMITS_OFF, start_sockhub

from sockhub.client.chatbench import bench_chat


def profile_sockhub(clients: int, messages: int, args: argparse.Namespace,
                    cpus: tuple[set[int] | None, set[int] | None], top: int = 25) -> str:
    """Where the server's time goes, two ways.

    cProfile names the Python functions, but covers the whole run (the joins
    and departures too) and slows calls down; ``perf record``, attached only
    for the send window, shows the split between the kernel (the write
    syscalls, which on loopback also run the receiving side of TCP) and the
    interpreter, without slowing anything.
    """
    parts = []
    with tempfile.TemporaryDirectory(prefix="sockhub-chat-profile-") as data_dir:
        out = os.path.join(data_dir, "server.prof")
        server, port = start_sockhub(os.path.join(data_dir, "db"), cpus[0], extra=LIMITS_OFF,
                                     profile=out)
        with server:
            result = bench_chat(HOST, port, clients=clients, senders=args.senders,
                                messages=messages, timeout=args.timeout)
        parts += [f"cProfile, whole run:\n{result.report()}", _stats_text(out, top)]
        perf = shutil.which("perf")
        if perf:
            server, port = start_sockhub(os.path.join(data_dir, "db2"), cpus[0],
                                         extra=LIMITS_OFF)
            recorder = PerfWindow(perf, server.pid, os.path.join(data_dir, "perf.data"))
            with server:
                result = bench_chat(HOST, port, clients=clients, senders=args.senders,
                                    messages=messages, timeout=args.timeout, on_phase=recorder)
            parts += [f"perf, send window only:\n{result.report()}", recorder.report(top)]
    return "\n\n".join(parts)


class PerfWindow:
    """``perf record`` of one process between bench_chat's "ready" and "done" phases."""

    def __init__(self, perf: str, pid: int, out: str) -> None:
        self.perf, self.pid, self.out = perf, pid, out
        self.process: subprocess.Popen[bytes] | None = None

    def __call__(self, phase: str) -> None:
        if phase == "ready":
            self.process = subprocess.Popen(
                [self.perf, "record", "-F", "999", "-p", str(self.pid), "-o", self.out],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # perf attaches asynchronously; a sample gap is harmless
        elif phase == "done" and self.process is not None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def report(self, top: int) -> str:
        if not os.path.exists(self.out):
            return "(perf recorded nothing)"
        texts = []
        for sort in ("dso", "dso,sym"):
            done = subprocess.run(
                [self.perf, "report", "-i", self.out, "--stdio", "--no-children",
                 "--sort", sort, "--percent-limit", "0.5"],
                capture_output=True, text=True, timeout=120)
            lines = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
            texts.append("\n".join(lines[:top]))
        return "\n\n".join(texts)


def _stats_text(path: str, top: int) -> str:
    buffer = io.StringIO()
    stats = pstats.Stats(path, stream=buffer)
    stats.sort_stats("tottime").print_stats(top)
    return buffer.getvalue()
