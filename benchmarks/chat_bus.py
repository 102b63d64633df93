"""What the Redis bus costs: `sockhub bench chat` against three set-ups.

1. one process, the in-process bus;
2. one process, --bus redis://;
3. two workers (--workers 2), --bus redis://.

For each: deliveries a second, latency, and server CPU per delivery, summed
over the sockhub processes and redis-server (from /proc/PID/stat, user +
system, before and after the run). Needs redis-server (make redis).

    .venv/bin/python benchmarks/chat_bus.py --clients 100 --senders 10 --messages 200
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def run(label: str, serve_args: list[str], bench_args: list[str], redis: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as data:
        redis_proc = None
        extra: list[str] = []
        if redis:
            rport = free_port()
            redis_proc = subprocess.Popen(
                [shutil.which("redis-server") or "redis-server", "--port", str(rport), "--bind",
                 "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", data],
                stdout=subprocess.DEVNULL)
            wait_port(rport)
            extra = ["--bus", f"redis://127.0.0.1:{rport}/0"]
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "sockhub", "serve", "chat", "--port", str(port),
             "--data-dir", data, "--flood-rate", "none", "--log-level", "warning",
             "--max-conns-per-ip", "none",  # every client is 127.0.0.1
             *serve_args, *extra], stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            time.sleep(0.5)  # let every worker finish starting before the CPU baseline
            pids = [server.pid, *children(server.pid)]
            if redis_proc is not None:
                pids.append(redis_proc.pid)
            before = [cpu_seconds(p) for p in pids]
            out = subprocess.run(
                [sys.executable, "-m", "sockhub", "bench", "chat", f"127.0.0.1:{port}",
                 "--json", *bench_args], capture_output=True, text=True, timeout=300)
            after = [cpu_seconds(p) for p in pids]
            result = json.loads(out.stdout)
        finally:
            server.terminate()
            server.wait(20)
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(20)
    deliveries = int(result["deliveries"])
    used = [b - a for a, b in zip(before, after, strict=True)]
    redis_cpu = used[-1] if redis else 0.0
    total = sum(used)
    return {
        "setup": label, "ok": result["ok"], "deliveries": deliveries,
        "per_s": round(float(result["deliveries_per_s"])),
        "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
        "cpu_s": round(total, 2), "redis_cpu_s": round(redis_cpu, 2),
        "cpu_s_by_process": [round(u, 2) for u in used],  # parent, workers..., redis
        "cpu_us_per_delivery": round(total / max(1, deliveries) * 1e6, 1),
        "cpu_us_per_message": round(total / max(1, int(result["sent"])) * 1e6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="100")
    parser.add_argument("--senders", default="10")
    parser.add_argument("--messages", default="200")
    args = parser.parse_args()
    bench = ["--clients", args.clients, "--senders", args.senders, "--messages", args.messages,
             "--timeout", "240"]
    rows = [
        run("1 process, in-process bus", [], bench, redis=False),
        run("1 process, Redis bus", [], bench, redis=True),
        run("2 workers, Redis bus", ["--workers", "2"], bench, redis=True),
    ]
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
