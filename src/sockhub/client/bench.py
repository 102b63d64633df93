"""``sockhub bench echo``: closed-loop load against an echo service.

Each connection sends ``size`` bytes, waits for all of them to come back,
records the round trip, and sends again, until ``seconds`` have passed.
One Python process tops out near one core's worth of requests, which makes
every fast server look the same; ``procs`` spreads the connections over
several processes, and the report gives the client's own CPU use so a
saturated client is visible. Latencies from every process are merged before
percentiles are taken.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import resource
import time
from array import array
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import cast

from sockhub.engine import loops


@dataclass
class BenchResult:
    """What one run measured (``--json`` prints this)."""

    target: str
    conns: int
    size: int
    procs: int
    seconds: float
    requests: int
    errors: int
    req_per_s: float
    mb_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_s: float

    def report(self) -> str:
        cpu = 100.0 * self.client_cpu_s / self.seconds if self.seconds else 0.0
        return "\n".join(
            [
                f"bench echo {self.target}: {self.conns} connections x {self.size} bytes, "
                f"{self.seconds:.1f} s, {self.procs} client process(es)",
                f"requests    {self.requests:,}  ({self.req_per_s:,.0f} req/s)",
                f"throughput  {self.mb_per_s:,.1f} MB/s each way",
                f"latency     p50 {self.p50_ms:.3f} ms   p99 {self.p99_ms:.3f} ms   "
                f"max {self.max_ms:.3f} ms",
                f"errors      {self.errors}",
                f"client CPU  {self.client_cpu_s:.2f} s ({cpu:.0f}% of one core)",
            ]
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class _EchoClient(asyncio.Protocol):
    def __init__(self, payload: bytes, deadline: float, latencies: array[float]) -> None:
        self.payload = payload
        self.size = len(payload)
        self.deadline = deadline
        self.latencies = latencies
        self.pending = 0
        self.t0 = 0.0
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.pending = self.size
        self.t0 = time.perf_counter()
        self.transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.pending -= len(data)
        if self.pending > 0:
            return
        now = time.perf_counter()
        self.latencies.append(now - self.t0)
        if self.pending < 0:
            self.error = "received more bytes than were sent"
        if now >= self.deadline or self.error:
            assert self.transport is not None
            self.transport.close()
        else:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.error is None:
            self.error = str(exc) or type(exc).__name__
        if self.pending > 0 and time.perf_counter() < self.deadline and self.error is None:
            self.error = "server closed the connection"
        if not self.done.done():
            self.done.set_result(None)


async def _run_connections(
    host: str, port: int, conns: int, size: int, seconds: float
) -> tuple[array[float], int]:
    loop = asyncio.get_running_loop()
    payload = os.urandom(size)
    latencies: array[float] = array("d")
    deadline = time.perf_counter() + seconds
    clients: list[_EchoClient] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        try:
            _, client = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _EchoClient(payload, deadline, latencies), host, port
                ),
                10.0,
            )
        except (OSError, TimeoutError):
            errors += 1
            return
        clients.append(client)
        # A connection that stalls past the deadline is cut and counted.
        try:
            await asyncio.wait_for(client.done, max(0.1, deadline - time.perf_counter()) + 5.0)
        except TimeoutError:
            client.error = "no answer"
            if client.transport is not None:
                client.transport.abort()
        if client.error:
            errors += 1

    await asyncio.gather(*(one() for _ in range(conns)))
    return latencies, errors


def _worker(host: str, port: int, conns: int, size: int, seconds: float, loop_name: str,
            pipe: Connection) -> None:
    latencies, errors = loops.run(_run_connections(host, port, conns, size, seconds), loop_name)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pipe.send((latencies.tobytes(), errors, usage.ru_utime + usage.ru_stime))
    pipe.close()


def _percentile(sorted_values: array[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def bench_echo(
    host: str,
    port: int,
    *,
    conns: int = 10,
    size: int = 1024,
    seconds: float = 5.0,
    procs: int = 1,
    loop: str = "auto",
) -> BenchResult:
    """Run the load in ``procs`` processes and merge what they measured."""
    if conns < 1 or size < 1 or seconds <= 0 or procs < 1:
        raise ValueError("conns, size, procs must be >= 1 and seconds > 0")
    procs = min(procs, conns)
    context = multiprocessing.get_context("fork")
    workers = []
    for index in range(procs):
        share = conns // procs + (1 if index < conns % procs else 0)
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker, args=(host, port, share, size, seconds, loop, sender), daemon=True
        )
        process.start()
        sender.close()
        workers.append((process, receiver))
    merged: array[float] = array("d")
    errors = 0
    cpu = 0.0
    for process, receiver in workers:
        try:
            raw, worker_errors, worker_cpu = receiver.recv()
        except EOFError:
            errors += 1
            raw, worker_cpu = b"", 0.0
        else:
            errors += worker_errors
        process.join()
        chunk: array[float] = array("d")
        chunk.frombytes(raw)
        merged.extend(chunk)
        cpu += worker_cpu
    # Every connection runs until the same deadline, `seconds` after its
    # process started, so that is the measured interval.
    measured = seconds
    values = array("d", sorted(merged))
    requests = len(values)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return BenchResult(
        target=target,
        conns=conns,
        size=size,
        procs=procs,
        seconds=round(measured, 3),
        requests=requests,
        errors=errors,
        req_per_s=requests / measured,
        mb_per_s=requests * size / measured / 1e6,
        p50_ms=_percentile(values, 0.50) * 1000,
        p99_ms=_percentile(values, 0.99) * 1000,
        max_ms=(values[-1] * 1000) if values else 0.0,
        client_cpu_s=round(cpu, 3),
    )
