"""``sockhub ping``: round-trip times to an echo service, printed like ping(8).

TCP: one connection, then ``count`` probes of ``size`` bytes, each timed from
write to the full echo. ``--connect`` times the TCP handshake instead, with
a new connection per probe (works against any TCP service). UDP: one
datagram per probe carrying its sequence number; a probe with no answer
within ``timeout`` counts as lost.

A reply that is not the probe's own bytes is lost too: a service that
answers with something else is not echoing, and saying "0% loss" of it
would hide exactly what ping is run to find. The exit status is strict, for
health checks: 0 only if every probe was answered correctly.
"""

from __future__ import annotations

import asyncio
import math
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_PROBE = struct.Struct("!4sIQ")  # magic, sequence, send time in ns
_MAGIC = b"SKHP"


@dataclass
class PingStats:
    sent: int = 0
    rtts: list[float] = field(default_factory=list)
    #: Probes answered with other bytes than were sent (counted as lost).
    wrong: int = 0

    @property
    def received(self) -> int:
        return len(self.rtts)

    def summary(self, target: str, elapsed: float) -> str:
        loss = 100.0 * (self.sent - self.received) / self.sent if self.sent else 0.0
        lines = [
            f"--- {target} ping statistics ---",
            f"{self.sent} probes sent, {self.received} received, "
            + (f"{self.wrong} wrong, " if self.wrong else "")
            + f"{loss:.0f}% loss, time {elapsed * 1000:.0f}ms",
        ]
        if self.rtts:
            ms = [r * 1000 for r in self.rtts]
            mean = sum(ms) / len(ms)
            mdev = math.sqrt(sum((x - mean) ** 2 for x in ms) / len(ms))
            lines.append(
                f"rtt min/avg/max/mdev = {min(ms):.3f}/{mean:.3f}/{max(ms):.3f}/{mdev:.3f} ms"
            )
        return "\n".join(lines)


def _payload(seq: int, size: int) -> bytes:
    head = _PROBE.pack(_MAGIC, seq, time.monotonic_ns())
    return (head + b"." * max(0, size - len(head)))[: max(size, len(head))]


async def ping(
    host: str,
    port: int,
    *,
    udp: bool = False,
    connect_only: bool = False,
    count: int | None = 4,
    interval: float = 1.0,
    timeout: float = 2.0,
    size: int = 32,
    emit: Callable[[str], None] = print,
) -> int:
    """Send probes and print one line each, then the summary.

    Returns:
        0 if every probe sent got its own bytes back (or its handshake, with
        ``connect_only``); 1 if any was lost, answered wrongly, or none could
        be sent. A probe still waiting when ping is interrupted is not counted.
    """
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    mode = "udp echo" if udp else ("tcp connect" if connect_only else "tcp echo")
    size = max(size, _PROBE.size)
    emit(f"PING {target} ({mode}, {0 if connect_only else size} bytes)")
    stats = PingStats()
    started = time.monotonic()
    try:
        if udp:
            await _ping_udp(host, port, stats, count, interval, timeout, size, target, emit)
        elif connect_only:
            await _ping_connect(host, port, stats, count, interval, timeout, target, emit)
        else:
            await _ping_tcp(host, port, stats, count, interval, timeout, size, target, emit)
    except asyncio.CancelledError:
        pass
    except OSError as exc:
        emit(f"sockhub ping: {target}: {(exc.strerror or str(exc)).lower()}")
    emit(stats.summary(target, time.monotonic() - started))
    return 0 if stats.sent and stats.received == stats.sent else 1


def _sequence(count: int | None) -> range:
    return range(1, (count if count is not None else sys.maxsize) + 1)


async def _ping_tcp(host, port, stats, count, interval, timeout, size, target, emit) -> None:  # type: ignore[no-untyped-def]
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        for seq in _sequence(count):
            if seq > 1:
                await asyncio.sleep(interval)
            payload = _payload(seq, size)
            stats.sent += 1
            t0 = time.perf_counter()
            writer.write(payload)
            try:
                echoed = await _tcp_answer(reader, seq, size, timeout)
            except asyncio.CancelledError:
                stats.sent -= 1  # interrupted while waiting: neither answered nor lost
                raise
            except TimeoutError:
                emit(f"no answer from {target}: seq={seq} (timeout {timeout:g}s)")
                continue
            except asyncio.IncompleteReadError:
                emit(f"{target} closed the connection")
                return
            rtt = time.perf_counter() - t0
            if echoed != payload:
                stats.wrong += 1
                emit(f"{len(echoed)} bytes from {target}: seq={seq} wrong reply "
                     "(differs from what was sent)")
                continue
            stats.rtts.append(rtt)
            emit(f"{len(echoed)} bytes from {target}: seq={seq} time={rtt * 1000:.3f} ms")
    finally:
        writer.close()


async def _tcp_answer(reader: asyncio.StreamReader, seq: int, size: int,
                      timeout: float) -> bytes:
    """The echo of probe ``seq``, skipping late echoes of earlier probes.

    A probe that timed out may still be answered: its echo then waits in the
    stream ahead of this one's (whole, since probes are all ``size`` bytes and
    a timed-out read takes nothing), and must not count against this probe.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        echoed = await asyncio.wait_for(reader.readexactly(size),
                                        max(0.0, deadline - loop.time()))
        if not _earlier_probe(echoed, seq, size):
            return echoed


async def _ping_connect(host, port, stats, count, interval, timeout, target, emit) -> None:  # type: ignore[no-untyped-def]
    for seq in _sequence(count):
        if seq > 1:
            await asyncio.sleep(interval)
        stats.sent += 1
        t0 = time.perf_counter()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except asyncio.CancelledError:
            stats.sent -= 1
            raise
        except TimeoutError:
            emit(f"no answer from {target}: seq={seq} (timeout {timeout:g}s)")
            continue
        except OSError as exc:
            emit(f"{target}: seq={seq} {(exc.strerror or str(exc)).lower()}")
            continue
        rtt = time.perf_counter() - t0
        writer.close()
        stats.rtts.append(rtt)
        emit(f"connected to {target}: seq={seq} time={rtt * 1000:.3f} ms")


def _earlier_probe(data: bytes, seq: int, size: int) -> bool:
    """Whether ``data`` is the echo of one of our own earlier probes (a late answer)."""
    if len(data) != size or len(data) < _PROBE.size:
        return False
    magic: bytes
    earlier: int
    magic, earlier, _ = _PROBE.unpack_from(data)
    return magic == _MAGIC and earlier < seq


class _UdpProbe(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.answers.put_nowait((data, time.perf_counter()))

    def error_received(self, exc: Exception) -> None:
        self.answers.put_nowait((b"", time.perf_counter()))


async def _ping_udp(host, port, stats, count, interval, timeout, size, target, emit) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    transport, probe = await loop.create_datagram_endpoint(_UdpProbe, remote_addr=(host, port))
    try:
        for seq in _sequence(count):
            if seq > 1:
                await asyncio.sleep(interval)
            payload = _payload(seq, size)
            stats.sent += 1
            t0 = time.perf_counter()
            transport.sendto(payload)
            deadline = t0 + timeout
            while True:
                try:
                    data, t1 = await asyncio.wait_for(
                        probe.answers.get(), max(0.0, deadline - time.perf_counter())
                    )
                except asyncio.CancelledError:
                    stats.sent -= 1
                    raise
                except TimeoutError:
                    emit(f"no answer from {target}: seq={seq} (timeout {timeout:g}s)")
                    break
                if not data:
                    emit(f"{target}: seq={seq} port unreachable")
                    break
                if data == payload:
                    rtt = t1 - t0
                    stats.rtts.append(rtt)
                    emit(f"{len(data)} bytes from {target}: seq={seq} time={rtt * 1000:.3f} ms")
                    break
                if not _earlier_probe(data, seq, size):  # late answers are skipped
                    stats.wrong += 1
                    emit(f"{len(data)} bytes from {target}: seq={seq} wrong reply "
                         "(differs from what was sent)")
                    break
    finally:
        transport.close()
