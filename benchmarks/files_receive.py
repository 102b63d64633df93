"""How a receiver should take a file off a socket: ``recv_into`` or ``os.splice``.

Run: ``python benchmarks/files_receive.py [--size MiB] [--runs N]``. Issue 11
asked to measure before choosing. One process sends the file with
``socket.sendfile``; the receiver, in another process, stores it and its
SHA-256 three ways, each blocking and single-threaded so the figures are the
cost of the path itself:

* ``recv_into``: a reused 256 KiB buffer, hashed, then ``os.write`` to the file;
* ``splice``: socket → pipe → file with ``os.splice`` (the bytes never enter
  Python), then the file read back from the page cache to hash it;
* ``splice, no hash``: the ceiling of splice alone.

Prints MB/s and the receiver's CPU seconds per GiB (user + system).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

CHUNK = 256 * 1024


def send(port: int, path: str) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock, open(path, "rb") as f:
        sock.sendfile(f)


def receive_recv_into(conn: socket.socket, fd: int, size: int) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = conn.recv_into(view, min(CHUNK, size - got))
        if not n:
            break
        digest.update(view[:n])
        out = view[:n]
        while out:
            out = out[os.write(fd, out):]
        got += n
    return digest.hexdigest()


def receive_splice(conn: socket.socket, fd: int, size: int, *, hashed: bool = True) -> str:
    read_end, write_end = os.pipe()
    try:
        got = 0
        sock_fd = conn.fileno()
        while got < size:
            n = os.splice(sock_fd, write_end, min(CHUNK, size - got))
            if not n:
                break
            moved = 0
            while moved < n:
                moved += os.splice(read_end, fd, n - moved)
            got += n
    finally:
        os.close(read_end)
        os.close(write_end)
    if not hashed:
        return ""
    digest = hashlib.sha256()
    offset = 0
    while offset < got:
        block = os.pread(fd, 1 << 20, offset)
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


WAYS = {
    "recv_into + hash + write": receive_recv_into,
    "splice + hash read back": receive_splice,
    "splice, no hash (ceiling)": lambda c, fd, n: receive_splice(c, fd, n, hashed=False),
}


def one(way: str, source: str, size: int, dest: str) -> tuple[float, float, str]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        sender = multiprocessing.Process(target=send, args=(port, source))
        sender.start()
        conn, _ = listener.accept()
    fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with conn:
        sha = WAYS[way](conn, fd, size)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    os.close(fd)
    sender.join()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, sha


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    if not hasattr(os, "splice"):
        sys.exit("os.splice needs Linux and Python 3.10 or later")
    work = Path(tempfile.mkdtemp(prefix="sockhub-recv-bench-", dir=args.dir))
    size = args.size * 1024 * 1024
    source = work / "source"
    block = os.urandom(1024 * 1024)
    with source.open("wb") as f:
        for _ in range(args.size):
            f.write(block)
    expected = hashlib.sha256(source.read_bytes()).hexdigest() if args.size <= 2048 else None
    rows = []
    try:
        for way in WAYS:
            best = None
            for _ in range(args.runs):
                elapsed, cpu, sha = one(way, str(source), size, str(work / "dest"))
                if sha and expected and sha != expected:
                    sys.exit(f"{way}: wrong SHA-256")
                if best is None or elapsed < best[0]:
                    best = (elapsed, cpu)
            assert best is not None
            rows.append((way, size / best[0] / 1e6, best[1] * (1 << 30) / size))
            print(f"{way}: {rows[-1][1]:.0f} MB/s", file=sys.stderr)
    finally:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()
    print(f"\n{args.size} MiB over 127.0.0.1, best of {args.runs}, {os.cpu_count()} cores\n")
    print("| receiver | MB/s | receiver CPU s per GiB |")
    print("| --- | ---: | ---: |")
    for way, rate, cpu in rows:
        print(f"| {way} | {rate:.0f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
