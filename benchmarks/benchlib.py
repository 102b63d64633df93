"""Process plumbing the benchmark scripts share: pinning, CPU readings, quiet waits.

Imported as a sibling module (the scripts run as ``python benchmarks/NAME.py``).
"""

from __future__ import annotations

import collections
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

NOISE = 0.10  # other processes' CPU, in cores, above which a run is redone
LISTEN_TIMEOUT = 20.0  # seconds for a server to bind (Twisted imports slowly)
STOP_TIMEOUT = 15.0  # seconds for a server to exit after SIGTERM

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


class Server:
    """A server subprocess: started pinned, awaited until bound, stopped by its PID."""

    def __init__(self, name: str, argv: list[str], listening: re.Pattern[str],
                 cpus: set[int] | None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.listening = listening
        self.process = subprocess.Popen(
            pinned(argv, cpus),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl-C at the terminal reaches only this script
            env={**os.environ, **env} if env else None,
        )
        self.pid = self.process.pid
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self.exit_code: int | None = None
        # Keep draining stderr all along: a full pipe would block the server.
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.tail.append(line.rstrip())
            if self.lines.qsize() < 1000:
                self.lines.put(line)
        self.lines.put(None)

    def wait_listening(self, timeout: float = LISTEN_TIMEOUT) -> int:
        """The bound port, from the server's own ``listening`` line."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"{self.name} exited before listening:\n{self.stderr()}")
            match = self.listening.search(line)
            if match:
                return int(match.group(1))
        raise RuntimeError(f"{self.name}: no listening line in {timeout:g} s")

    def stderr(self) -> str:
        return "\n".join(self.tail)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit; only our own child's PID is signalled."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"  {self.name} ignored SIGTERM for {STOP_TIMEOUT:g} s; killing it")
                self.process.kill()
                self.process.wait()
        self.exit_code = self.process.returncode

    def __enter__(self) -> Server:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
