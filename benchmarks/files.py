"""1 GiB over loopback: ``sockhub send``/``get`` beside an ncat/socat pipe and ``cat``.

Run: ``python benchmarks/files.py [--size MiB] [--runs N] [--dir DIR]``. Prints a
Markdown table (MB/s, ratio to the pipe); BENCHMARKS.md holds the figures.

Every contender moves the same file (random bytes, written once, warm in the
page cache) from one process to another over 127.0.0.1:

* ``cat > /dev/null``: reading the file, the ceiling of any sender;
* ``sha256``, ``blake3``: hashing it in one thread (what verification costs);
* ``ncat``/``socat`` pipe: no login, no checksum, no clear end; received into
  a file on the same disk (``> file``) and into ``/dev/null``;
* ``sockhub send``: login, PUT, zero-copy ``sendfile``, hashed on both ends
  (BLAKE3, the digest a server picks when offered; and ``--digest sha256``),
  renamed into place; ``sockhub get``: zero-copy from the server, hashed and
  written by the client, to a file and to ``/dev/null`` (``-o -``).

Times are wall clock for the whole command (process start and login
included, about 0.2 s for the Python clients), best of ``--runs`` rounds
(each round times every contender once, after a ``sync``). For the
sockhub rows the table also gives the CPU-seconds per GiB (median of the runs),
on the server (its process, all threads, from /proc) and in the client
(``RUSAGE_CHILDREN``), and for the pipes both ends together: on a shared
machine CPU time is steadier than MB/s, and with both ends on two cores
the sum bounds the speed.
The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blake3

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 20.0) -> None:
    """Wait until something listens on ``port``, without connecting.

    A probe connection would be the pipe's one client, so this reads the
    kernel's table of TCP sockets instead (state 0A is LISTEN).
    """
    deadline = time.monotonic() + timeout
    needle = f":{port:04X} 00000000:0000 0A"
    while time.monotonic() < deadline:
        if needle in Path("/proc/net/tcp").read_text():
            return
        time.sleep(0.01)
    raise SystemExit(f"nothing listens on port {port} after {timeout:g} s")


#: CPU-seconds (server, client) of the last ``timed`` run, when a server pid was given.
LAST_CPU: list[tuple[float, float]] = []


def process_cpu(pid: int) -> float:
    """CPU-seconds (user + system, every thread) a live process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str] | str, server: int | None = None, **kwargs: object) -> float:
    server_before = process_cpu(server) if server else 0.0
    client_before = children_cpu()
    start = time.perf_counter()
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]
    elapsed = time.perf_counter() - start
    if server:
        LAST_CPU.append((process_cpu(server) - server_before, children_cpu() - client_before))
    return elapsed


def pipe(tool: str, source: Path, dest: str) -> float:
    """Receiver first, then the sender; the time until the receiver has it all."""
    port = free_port()
    if tool == "ncat":
        listen = f"ncat -l 127.0.0.1 {port} > {dest}"
        send = f"ncat --send-only 127.0.0.1 {port} < {source}"
    else:
        listen = f"socat -u TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr - > {dest}"
        send = f"socat -u - TCP:127.0.0.1:{port} < {source}"
    cpu_before = children_cpu()
    receiver = subprocess.Popen(listen, shell=True)
    wait_listening(port)
    start = time.perf_counter()
    subprocess.run(send, shell=True, check=True)
    receiver.wait(timeout=120)
    elapsed = time.perf_counter() - start
    LAST_CPU.append((0.0, children_cpu() - cpu_before))  # both ends: no server apart
    return elapsed


def sha_time(path: Path, name: str = "sha256") -> float:
    start = time.perf_counter()
    digest = hashlib.sha256() if name == "sha256" else blake3.blake3()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the files go (default: a temp dir)")
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop"))
    parser.add_argument("--other-src", default=None, metavar="DIR",
                        help="also time `sockhub send` to a server run from this source "
                             "tree (another revision's src/), in the same run: an A/B")
    parser.add_argument("--only", default=None, metavar="WORDS",
                        help="time only the contenders whose name holds one of these "
                             "comma-separated words (the ncat pipe > file always runs: the "
                             "ratios are to it), e.g. --only send")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sockhub-files-bench-", dir=args.dir))
    size = args.size * 1024 * 1024
    source = work / "source"
    block = os.urandom(1024 * 1024)
    with source.open("wb") as f:
        for _ in range(args.size):
            f.write(block)
    root = work / "root"
    root.mkdir()
    token = work / "token"
    token.write_bytes(b"benchmark-token-0123456789abcdef\n")
    token.chmod(0o600)
    servers: list[subprocess.Popen[str]] = []

    def start_server(src: str | None, root: Path) -> str:
        """A files server (from ``src`` if given) on a free port; its address and pid."""
        port = free_port()
        env = dict(os.environ, PYTHONPATH=src) if src else None
        servers.append(subprocess.Popen(
            [PY, "-m", "sockhub", "serve", "files", "--root", str(root), "--port", str(port),
             "--token-file", str(token), "--loop", args.loop, "--log-level", "warning"],
            stderr=subprocess.PIPE, text=True, env=env))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        return f"127.0.0.1:{port}"

    try:
        load_before = os.getloadavg()
        addr = start_server(None, root)
        pid = servers[-1].pid
        other_addr, other_pid = None, None
        if args.other_src:
            (work / "other-root").mkdir()
            other_addr = start_server(args.other_src, work / "other-root")
            other_pid = servers[-1].pid
        common = ["--token-file", str(token), "-q"]
        results: dict[str, float] = {}
        cpu: dict[str, tuple[float, float]] = {}
        gib = size / 1024**3

        def send(to: str = addr, server: int = pid, digest: str = "auto") -> float:
            return timed([PY, "-m", "sockhub", "send", str(source), to, "--as", "f",
                          "--force", "--digest", digest, *common], server)

        def get_file() -> float:
            return timed([PY, "-m", "sockhub", "get", "f", addr, "-o", str(work / "got"),
                          "--force", *common], pid)

        def get_null() -> float:
            with open(os.devnull, "wb") as null:
                return timed([PY, "-m", "sockhub", "get", "f", addr, "-o", "-", *common],
                             pid, stdout=null)

        contenders: dict[str, Callable[[], float]] = {
            "cat > /dev/null": lambda: timed(f"cat {source} > /dev/null", shell=True),
            "sha256 (one thread)": lambda: sha_time(source),
            "blake3 (one thread)": lambda: sha_time(source, "blake3"),
            "ncat pipe > /dev/null": lambda: pipe("ncat", source, "/dev/null"),
            "ncat pipe > file": lambda: pipe("ncat", source, str(work / "piped")),
            "socat pipe > file": lambda: pipe("socat", source, str(work / "piped")),
            "sockhub send (to the server's disk)": send,
            "sockhub send --digest sha256": lambda: send(digest="sha256"),
        }
        if other_addr is not None and other_pid is not None:
            contenders[f"sockhub send, server from {args.other_src}"] = (
                lambda: send(other_addr, other_pid))
        contenders["sockhub get -o file"] = get_file
        contenders["sockhub get -o - > /dev/null"] = get_null
        if args.only:
            words = args.only.split(",")
            contenders = {name: run for name, run in contenders.items()
                          if name == "ncat pipe > file" or any(w in name for w in words)}
        written = [work / "piped", work / "got"]
        # A send replaces the stored "f": freeing the old one's 1 GiB (its page
        # cache and blocks) would be charged to the server inside the timed run,
        # while the pipes' old outputs are removed outside it. The gets read the
        # "f" of the round's sends.
        stored = [root / "f", work / "other-root" / "f"]
        if not any(name.startswith("sockhub send") for name in contenders):
            send()  # the gets read the stored "f": store it once, untimed
        times: dict[str, list[float]] = {name: [] for name in contenders}
        runs_cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
        # Rounds, not one contender's runs in a row: each round times every
        # contender once, so a change in the machine's state (other work, the
        # kernel writing back dirty pages) falls on all of them alike. Before
        # each run the files written so far are removed and the page cache's
        # dirty pages are written out (``sync``, not timed): otherwise a run
        # pays for the previous one's writeback, whoever came before.
        for round_no in range(args.runs):
            for name, run in contenders.items():
                # Only the file this send replaces: the gets read the other server's.
                replaced = ([] if not name.startswith("sockhub send") else stored[1:]
                            if "server from" in name else stored[:1])
                for path in written + replaced:
                    path.unlink(missing_ok=True)
                os.sync()
                LAST_CPU.clear()
                times[name].append(run())
                runs_cpu[name].append(LAST_CPU[0] if LAST_CPU else (0.0, 0.0))
            print(f"round {round_no + 1}: " + ", ".join(
                f"{name} {size / times[name][-1] / 1e6:.0f} MB/s" for name in contenders),
                file=sys.stderr)
        for name in contenders:
            fastest = min(times[name])
            results[name] = fastest
            if any(c != (0.0, 0.0) for c in runs_cpu[name]):
                # The median over the runs: on a shared machine one run's CPU moves too.
                server_s = statistics.median(c[0] for c in runs_cpu[name])
                client_s = statistics.median(c[1] for c in runs_cpu[name])
                cpu[name] = (server_s / gib, client_s / gib)
        send_name = next(n for n in ("sockhub send (to the server's disk)",
                                     "sockhub send --digest sha256", "ncat pipe > file")
                         if n in times)
        paired = sorted(p / s for p, s in zip(times["ncat pipe > file"], times[send_name],
                                              strict=True))
        others = ""
        for name in times:
            if name.startswith("sockhub") and name != send_name:
                ratios = sorted(p / t for p, t in zip(times["ncat pipe > file"], times[name],
                                                      strict=True))
                others += (f"; {name}: median {statistics.median(ratios):.2f}x "
                           f"({', '.join(f'{r:.2f}x' for r in ratios)})")
        pipe_file = results["ncat pipe > file"]
        pipe_null = results.get("ncat pipe > /dev/null")  # not timed under --only
        load_after = os.getloadavg()
        print(f"\n{args.size} MiB over 127.0.0.1, best of {args.runs}, server loop {args.loop}, "
              f"{os.cpu_count()} cores, load average {load_before[0]:.1f} before, "
              f"{load_after[0]:.1f} after; `sockhub send` over the ncat pipe > file, "
              f"paired by round: median {statistics.median(paired):.2f}x "
              f"(rounds: {', '.join(f'{r:.2f}x' for r in paired)}){others}\n")
        print("| what | MB/s | vs ncat pipe > file | vs ncat pipe > /dev/null "
              "| server CPU s/GiB | client CPU s/GiB | both ends CPU s/GiB |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, seconds in results.items():
            server_s = client_s = both = ""
            if name in cpu:
                server_cpu, client_cpu = cpu[name]
                if server_cpu:
                    server_s, client_s = f"{server_cpu:.2f}", f"{client_cpu:.2f}"
                both = f"{server_cpu + client_cpu:.2f}"
            print(f"| {name} | {size / seconds / 1e6:.0f} | {pipe_file / seconds:.2f}x "
                  f"| {'' if pipe_null is None else f'{pipe_null / seconds:.2f}x'} "
                  f"| {server_s} | {client_s} | {both} |")
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
