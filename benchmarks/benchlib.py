"""Process plumbing the benchmark scripts share: pinning, CPU readings, quiet waits.

Imported as a sibling module (the scripts run as ``python benchmarks/NAME.py``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

NOISE = 0.10  # other processes' CPU, in cores, above which a run is redone

# Re-pin, then exec the real command: the affinity holds from its first
# instruction and for every thread or child it makes, with no taskset needed.
PIN_SHIM = (
    "import os, sys; "
    "os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')}); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def log(message: str) -> None:
    """Progress goes to stderr so stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


def pinned(argv: list[str], cpus: set[int] | None) -> list[str]:
    """``argv`` run on ``cpus`` only (unchanged when not pinning)."""
    if not cpus:
        return argv
    return [sys.executable, "-c", PIN_SHIM, ",".join(map(str, sorted(cpus))), *argv]


def process_cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) seconds of a whole process (all its threads), from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    after_name = text[text.rindex(")") + 2 :].split()  # the name may hold spaces
    utime, stime = int(after_name[11]), int(after_name[12])  # fields 14 and 15
    tick = os.sysconf("SC_CLK_TCK")
    return utime / tick, stime / tick


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process."""
    return sum(process_cpu_times(pid))


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent not idle, from /proc/stat (softirq and steal included)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, stat.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(timeout: float) -> None:
    """Wait until the machine idles: a shared box (a test run next door) skews everything."""
    if timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = machine_busy_seconds()
        time.sleep(0.5)
        if machine_busy_seconds() - before < NOISE * 0.5:
            return
    log(f"  the machine stayed busy for {timeout:g} s; measuring anyway")
