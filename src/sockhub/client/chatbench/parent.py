"""``bench_chat``: fork the workers, walk them through the phases, merge their counts.

The parent process of a run (see the phases in :mod:`sockhub.client.chatbench`):
it checks the parameters, asks an IRC server once whether it offers
``echo-message``, forks one :mod:`.worker` per share of the clients, says
"join", "go" and "quit" only when every worker has reported, and merges
what they counted into a :class:`~.result.ChatBenchResult`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, cast

from sockhub.client.chatbench.plan import MODES, Mode, Plan, cap_names, parse_irc
from sockhub.client.chatbench.receiver import Counts
from sockhub.client.chatbench.result import ChatBenchResult, percentile
from sockhub.client.chatbench.worker import GRACE, WorkerOptions, run_worker

#: Clients per worker process before another process is worth forking.
CLIENTS_PER_PROC = 50
#: Connection attempts in flight, all workers together. sockhub listens with
#: a backlog of 1,024; ncat with 10, and a burst past that leaves clients
#: half-connected and, in our runs, made ncat exit ("getpeername ... failed").
CONNECT_GATE: dict[Mode, int] = {"line": 512, "ncat": 8, "irc": 8, "ws": 64}
#: Seconds the parent waits for an IRC server's ``CAP LS`` answer.
CAP_PROBE_TIMEOUT = 5.0


def irc_offers(host: str, port: int, capability: str,
               timeout: float = CAP_PROBE_TIMEOUT) -> bool:
    """Does the IRC server list ``capability`` in ``CAP LS``? One short, unregistered connection.

    A server that cannot be reached, does not know CAP or does not answer
    in ``timeout`` offers nothing (the run itself then reports what failed).
    """
    caps: set[bytes] = set()
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout) as sock:
            sock.sendall(b"CAP LS 302\r\n")
            buffer = b""
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                chunk = sock.recv(4096)
                if not chunk:
                    break
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    _, command, params = parse_irc(line)
                    if command == b"CAP" and len(params) >= 3 and params[1].upper() == b"LS":
                        caps |= cap_names(params[-1])
                        if params[2] != b"*" or len(params) < 4:
                            return capability.encode() in caps
                    elif command.isdigit() or command == b"ERROR":
                        return False
    except OSError:  # refused, reset, or timed out
        pass
    return False


def bench_chat(
    host: str,
    port: int,
    *,
    clients: int = 100,
    senders: int = 10,
    messages: int = 100,
    rate: float | None = None,
    room: str = "#bench",
    mode: str = "line",
    timeout: float = 60.0,
    procs: int | None = None,
    window: int = 1,
    on_phase: Callable[[str], None] | None = None,
    realtime: bool = False,
) -> ChatBenchResult:
    """Run the fan-out load in worker processes and merge what they counted.

    ``procs`` defaults to one process per 50 clients, at most one per usable
    CPU; a paced run (``rate``) forks one more, for the senders alone, and
    staggers them so that each message reaches the server alone. ``window``
    is how many messages a sender may have unacknowledged (1: send the next
    when the previous one is seen). ``realtime`` (paced runs only) gives the
    senders' process a real-time priority (SCHED_FIFO, as root; else nice
    -10 if allowed) so that its sends keep their slots on a busy machine;
    off unless asked, since it changes the scheduling of the whole machine.
    ``on_phase`` is called
    in this process with ``"connected"`` (every client greeted, none
    registered), ``"ready"`` (everyone joined, nothing sent yet) and
    ``"done"`` (everyone counted, nobody disconnected yet): the benchmark
    script samples the server's CPU time and memory there. ``messages=0``
    only connects and joins (a memory probe).

    IRC mode registers every client (``NICK``/``USER``, waiting for the end
    of the MOTD), joins ``room`` (waiting for ``366``) and sends ``PRIVMSG``.
    If the server lists ``echo-message`` in ``CAP LS`` (asked once, before
    the run), the senders request it and are paced by their own echo and
    every client expects K·M messages; otherwise they are paced like ncat
    mode and a sender expects none of its own.

    WebSocket mode (``ws``) speaks the web door's JSON protocol v1 at
    ``ws://HOST:PORT/ws`` (docs/web-protocol.md) through websockets'
    sans-I/O client: ``hello``, waiting for ``welcome``; ``join``, waiting
    for the room's ``history``; ``say``, each sender paced by its own
    ``message`` coming back, like the line mode.

    Raises:
        ValueError: a parameter out of range.
    """
    _check(clients, senders, messages, rate, room, mode, timeout, procs, window)
    if realtime and rate is None:
        raise ValueError("--realtime needs --rate (it is for the paced senders)")
    start = time.monotonic()
    echo = mode == "irc" and senders > 0 and irc_offers(host, port, "echo-message",
                                                         min(timeout, CAP_PROBE_TIMEOUT))
    url = f"ws://{f'[{host}]' if ':' in host else host}:{port}/ws" if mode == "ws" else ""
    plan = Plan(clients, senders, messages, room, cast(Mode, mode), irc_echo=echo, url=url)
    if not plan.echoes and clients < 2:
        raise ValueError(f"{mode} mode without an echo needs at least 2 clients")
    usable = len(os.sched_getaffinity(0))
    if procs is None:
        procs = min(usable, max(1, clients // CLIENTS_PER_PROC))
    # Without an echo, a sender needs a witness next to it.
    procs = max(1, min(procs, clients if plan.echoes else clients // 2))
    gate = max(1, CONNECT_GATE[plan.mode] // procs)
    opts = WorkerOptions(host, port, window, rate, start + timeout, gate, realtime)
    shares = [list(range(index, clients, procs)) for index in range(procs)]
    if rate is not None and 0 < senders < clients:
        # Paced: the senders get a process of their own, so that their schedule
        # does not wait on the reading of hundreds of clients (which made
        # messages leave, and reach the server, in bunches).
        shares = [list(range(senders))] + [
            share for share in ([c for c in range(senders, clients) if c % procs == index]
                                for index in range(procs)) if share]
    context = multiprocessing.get_context("fork")
    workers: list[_Worker] = []
    try:
        for mine in shares:
            inbox, orders = context.Pipe(duplex=False)
            reports, outbox = context.Pipe(duplex=False)
            process = context.Process(target=run_worker, args=(plan, mine, opts, inbox, outbox),
                                      daemon=True)
            process.start()
            inbox.close()
            outbox.close()
            workers.append(_Worker(process, orders, reports))
        return _coordinate(plan, opts, workers, start, on_phase)
    finally:
        for worker in workers:
            worker.tell("quit")
        for worker in workers:
            worker.process.join(max(0.1, opts.deadline + GRACE - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.orders.close()
            worker.reports.close()


@dataclass
class _Worker:
    """A forked worker and our ends of its two pipes."""

    process: multiprocessing.process.BaseProcess
    orders: Connection
    reports: Connection

    def tell(self, command: str) -> None:
        with contextlib.suppress(OSError):  # it may be gone already
            self.orders.send(command)


def _check(clients: int, senders: int, messages: int, rate: float | None, room: str,
           mode: str, timeout: float, procs: int | None, window: int) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if clients < 1:
        raise ValueError("--clients must be at least 1")
    if mode == "ncat" and clients < 2:
        raise ValueError("ncat mode needs at least 2 clients (ncat does not echo)")
    if not 0 <= senders <= clients:
        raise ValueError("--senders must be between 0 and --clients")
    if messages < 0:
        raise ValueError("--messages must not be negative")
    if rate is not None and not rate > 0:
        raise ValueError("--rate must be more than 0")
    if not timeout > 0:
        raise ValueError("--timeout must be more than 0")
    if procs is not None and procs < 1:
        raise ValueError("procs must be at least 1")
    if window < 1:
        raise ValueError("window must be at least 1")
    if mode != "ncat" and (not room.startswith("#") or len(room) < 2 or " " in room):
        raise ValueError(f"--room must look like #name, not {room!r}")


def _coordinate(plan: Plan, opts: WorkerOptions, workers: list[_Worker], start: float,
                on_phase: Callable[[str], None] | None) -> ChatBenchResult:
    """Walk every worker through the phases together; stop at the first failed one."""
    pipes = [worker.reports for worker in workers]
    errors: list[str] = []
    error_count = 0
    setup_s = 0.0
    for phase, then in (("connected", "join"), ("ready", "go")):
        replies = _gather(pipes, phase, opts.deadline)
        for pipe in pipes:
            reply = replies.get(pipe)
            if reply is None:
                error_count += 1
                errors.append(f"a client process was not {phase} in time")
            elif reply[1]:
                error_count += reply[1]
                errors.extend(reply[2])
        if error_count:
            return _merge(plan, opts, len(workers), setup_s, [], error_count, errors)
        setup_s = time.monotonic() - start
        if on_phase is not None:
            on_phase(phase)
        for worker in workers:
            worker.tell(then)
    replies = _gather(pipes, "result", opts.deadline + GRACE)
    if on_phase is not None:
        on_phase("done")
    results = [replies[p][1] for p in pipes if p in replies]
    if len(results) < len(pipes):
        error_count += len(pipes) - len(results)
        errors.append("a client process did not report its counts")
    return _merge(plan, opts, len(workers), setup_s, results, error_count, errors)


def _gather(pipes: list[Connection], kind: str, deadline: float) -> dict[Connection, Any]:
    """Each pipe's next message of ``kind``, until ``deadline`` (missing = failed)."""
    replies: dict[Connection, Any] = {}
    waiting = list(pipes)
    while waiting and (left := deadline - time.monotonic()) > 0:
        for pipe in wait(waiting, left):
            conn = cast(Connection, pipe)
            waiting.remove(conn)
            try:
                message = conn.recv()
            except (EOFError, OSError):
                continue
            if isinstance(message, tuple) and message[0] == kind:
                replies[conn] = message
    return replies


def _merge(plan: Plan, opts: WorkerOptions, procs: int, setup_s: float,
           results: list[dict[str, Any]], error_count: int,
           errors: list[str]) -> ChatBenchResult:
    counts = Counts()
    merged: array[int] = array("q")
    first_send = min((r["first_send_ns"] for r in results if r["first_send_ns"]), default=0)
    last = max((r["last_ns"] for r in results), default=0)
    sent = 0
    cpu = 0.0
    send_ns: array[int] = array("q")
    late_ns: array[int] = array("q")
    for result in results:
        send_ns.frombytes(result["send_ns"])
        late_ns.frombytes(result["late_ns"])
        counts.add(Counts(**result["counts"]))
        chunk: array[int] = array("q")
        chunk.frombytes(result["latencies"])
        merged.extend(chunk)
        sent += result["sent"]
        error_count += result["errors"]
        errors.extend(result["first_errors"])
        cpu += result["cpu"]
    counts.expected = plan.total_expected  # a missing worker's messages count as lost
    values = sorted(merged)
    seconds = (last - first_send) / 1e9 if first_send and last > first_send else 0.0
    target = f"[{opts.host}]:{opts.port}" if ":" in opts.host else f"{opts.host}:{opts.port}"
    return ChatBenchResult(
        target=target,
        mode=plan.mode,
        room=plan.room,
        clients=plan.clients,
        senders=plan.senders,
        messages=plan.messages,
        rate=opts.rate,
        window=opts.window,
        procs=procs,
        setup_s=round(setup_s, 3),
        seconds=round(seconds, 6),
        sent=sent,
        expected=counts.expected,
        deliveries=counts.deliveries,
        deliveries_per_s=counts.deliveries / seconds if seconds else 0.0,
        p50_ms=percentile(values, 0.50) / 1e6,
        p99_ms=percentile(values, 0.99) / 1e6,
        max_ms=(values[-1] / 1e6) if values else 0.0,
        lost=counts.lost,
        duplicated=counts.duplicated,
        reordered=counts.reordered,
        garbled=counts.garbled,
        errors=error_count,
        first_error=errors[0] if errors else "",
        client_cpu_s=round(cpu, 3),
        echo=plan.mode == "irc" and plan.irc_echo,
        offered_per_s=(plan.total_expected * opts.rate / plan.messages
                       if opts.rate and plan.messages else 0.0),
        sent_alone=sent_alone(sorted(send_ns), 0.5e9 / (plan.senders * opts.rate))
        if opts.rate and plan.senders else 0.0,
        send_late_p99_ms=percentile(sorted(late_ns), 0.99) / 1e6,
    )


def sent_alone(sorted_ns: list[int], gap_ns: float) -> float:
    """The share of messages sent at least ``gap_ns`` after the one before and before the
    one after (all senders together): those the server can only have read alone."""
    if not sorted_ns:
        return 0.0
    alone = 0
    last = len(sorted_ns) - 1
    for i, t in enumerate(sorted_ns):
        if (i == 0 or t - sorted_ns[i - 1] >= gap_ns) and (
                i == last or sorted_ns[i + 1] - t >= gap_ns):
            alone += 1
    return alone / len(sorted_ns)
