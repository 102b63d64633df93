"""What verification costs: digests over 512 MiB in 1 MiB updates, best of 3 (issue 11).

Run: ``python benchmarks/files_hash.py``. Prints a Markdown table: MB/s of wall
time and CPU-seconds per GiB (steadier on a shared machine). BLAKE3 is timed
when the ``blake3`` package imports (a dependency of sockhub since the files
service negotiates it, so the project's venv has it).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

BLOCK = os.urandom(1 << 20)
COUNT = 512


def measure(name: str, make: Callable[[], Any]) -> None:
    best_cpu = best_wall = float("inf")
    for _ in range(3):
        digest = make()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(COUNT):
            digest.update(BLOCK)
        digest.digest()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    size = COUNT * len(BLOCK)
    print(f"| {name} | {size / best_wall / 1e6:.0f} | {best_cpu * 1024**3 / size:.2f} |")


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f}\n")
    print("| digest | MB/s (wall) | CPU s per GiB |")
    print("| --- | ---: | ---: |")
    measure("sha256", hashlib.sha256)
    measure("blake2b", hashlib.blake2b)
    try:
        import blake3  # type: ignore[import-not-found]
    except ImportError:
        print("| blake3 | not installed | |")
        return
    measure("blake3, one thread", blake3.blake3)
    measure("blake3, max_threads=2", lambda: blake3.blake3(max_threads=2))


if __name__ == "__main__":
    main()
