"""Server CPU per delivery of two sockhub builds, line and IRC doors, runs alternating.

For a change that should cost nothing (a refactor): build each commit into its
own venv, then compare what the server process spends (user + system time from
/proc) per delivered message, with the same load generator for both.

    git archive C | tar -x -C /tmp/sockhub-C && python3 -m venv /tmp/sockhub-C/.venv
    /tmp/sockhub-C/.venv/bin/pip install '/tmp/sockhub-C[uvloop]'
    python benchmarks/compare_builds.py /tmp/sockhub-A/.venv/bin/sockhub \
        /tmp/sockhub-B/.venv/bin/sockhub
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile

from benchlib import process_cpu_seconds as cpu_seconds

LISTENING = re.compile(r"listening on \S+:(\d+) \((\w+)")


def one_run(server: str, mode: str, args: argparse.Namespace) -> float:
    """µs of server CPU per delivery for one bench run against a fresh server."""
    data = tempfile.mkdtemp(prefix="sockhub-ab-")
    process = subprocess.Popen(
        [server, "serve", "chat", "--port", "0", "--irc-port", "0", "--flood-rate", "none",
         "--data-dir", data], stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        ports: dict[str, int] = {}
        while len(ports) < 2:
            line = process.stderr.readline()
            if not line:
                raise SystemExit(f"{server} exited before listening")
            match = LISTENING.search(line)
            if match:
                ports[match.group(2)] = int(match.group(1))
        port = ports["irc" if mode == "irc" else "chat"]
        before = cpu_seconds(process.pid)
        out = subprocess.run(
            [sys.executable, "-m", "sockhub", "bench", "chat", f"127.0.0.1:{port}",
             "--clients", str(args.clients), "--senders", str(args.senders),
             "--messages", str(args.messages), "--mode", mode, "--json", "--timeout", "120"],
            capture_output=True, text=True, timeout=180, check=False)
        spent = cpu_seconds(process.pid) - before
    finally:
        process.terminate()
        process.wait(20)
        shutil.rmtree(data, ignore_errors=True)
    result = json.loads(out.stdout)
    return spent / result["deliveries"] * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs=2, metavar="SOCKHUB", help="two sockhub executables")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for mode in ("line", "irc"):
        figures: dict[str, list[float]] = {build: [] for build in args.builds}
        for _ in range(args.rounds):
            for build in args.builds:
                figures[build].append(one_run(build, mode, args))
        a, b = (sorted(figures[build])[len(figures[build]) // 2] for build in args.builds)
        print(f"{mode}: µs server CPU per delivery, median of {args.rounds}: "
              f"{a:.2f} vs {b:.2f} ({b / a:.2f}x)")
        for build, values in figures.items():
            print(f"  {build}: {', '.join(f'{v:.2f}' for v in values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
