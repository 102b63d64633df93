"""One worker process of ``sockhub bench chat``: its clients on one event loop.

The worker connects its share of the clients, reports, joins them on the
parent's word, runs the window (senders paced by acknowledgements or by a
rate) and reports its counts, then holds its connections until told to quit
(see the phases in :mod:`sockhub.client.chatbench`). The only I/O of the
bench but the parent's pipes: everything it reads goes to a
:class:`~.receiver.Receiver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from array import array
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import cast

from sockhub.client.chatbench.plan import Plan, message_text
from sockhub.client.chatbench.receiver import Counts, Receiver, SharedStream
from sockhub.engine import loops

#: Seconds without any send or receipt after which a worker stops waiting
#: (at least: see settle_seconds). On a shared machine a pinned server can
#: be kept off its core for seconds; 2 s gave up on live servers (issue 16).
SETTLE = 5.0
#: Closed loop: server seconds allowed per delivery that can be outstanding at
#: once. A whole window of every sender can reach the server in one read and
#: be fanned out in one loop turn before it writes anything: at N=2000 that
#: is up to 2.56 M deliveries, seconds of silence on a loaded machine, not a stall.
SETTLE_PER_DELIVERY = 5e-6
#: Seconds the parent allows past the deadline for workers to report and exit.
GRACE = 5.0


class _Run:
    """One worker's progress: what is still outstanding, and when anything last moved."""

    def __init__(self, receivers: int) -> None:
        self.incomplete = receivers
        self.senders_left = 0
        self.done = asyncio.Event()
        self.last_activity = time.monotonic()
        self.first_send_ns = 0
        self.sent = 0
        #: When each message went out (ns), and how late a paced send was on its schedule.
        self.send_ns: array[int] = array("q")
        self.late_ns: array[int] = array("q")
        self.errors: list[str] = []
        self.started = False

    def check(self) -> None:
        if self.started and self.incomplete <= 0 and self.senders_left <= 0:
            self.done.set()

    def fail(self, text: str) -> None:
        self.errors.append(text)


class _Client(asyncio.Protocol):
    """One connection: feeds its Receiver and wakes the senders it paces."""

    def __init__(self, receiver: Receiver, run: _Run) -> None:
        self.receiver = receiver
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.pacers: list[_Sender] = []
        self.closing = False
        self._counted = False
        self._want = ""  # "greeted" or "ready": what the waiter is waiting for
        self._waiter: asyncio.Future[str | None] | None = None

    def until(self, flag: str) -> asyncio.Future[str | None]:
        """A future resolved with None once ``receiver.<flag>``, or with a problem."""
        self._want = flag
        self._waiter = asyncio.get_running_loop().create_future()
        self._check_waiter()
        return self._waiter

    def _check_waiter(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self.receiver.errors:
            waiter.set_result(self.receiver.errors[0])
        elif getattr(self.receiver, self._want):
            waiter.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        opening = self.receiver.opening()
        if opening:
            self.transport.write(opening)

    def data_received(self, data: bytes) -> None:
        receiver = self.receiver
        receiver.feed(data, time.monotonic_ns())
        if receiver.outbox:
            if self.transport is not None:
                self.transport.write(bytes(receiver.outbox))
            receiver.outbox.clear()
        run = self.run
        run.last_activity = time.monotonic()
        if not run.started:
            self._check_waiter()
        elif receiver.errors:
            run.done.set()  # the server refused a line (flood control?): the run failed
        for pacer in self.pacers:
            pacer.pump()
        if not self._counted and receiver.complete:
            self._counted = True
            run.incomplete -= 1
            run.check()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closing:
            return
        why = f"{self.receiver.plan.nick(self.receiver.client)}: server closed the connection"
        if exc is not None:
            why += f" ({exc})"
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(why)
        else:
            self.run.fail(why)
        self.run.done.set()  # nothing more will come: stop waiting

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


class _Sender:
    """Sends one sender's M messages, paced by acknowledgements or by a rate."""

    def __init__(self, client: _Client, acker: Receiver, plan: Plan, window: int,
                 rate: float | None, run: _Run) -> None:
        self.client = client
        self.sender = client.receiver.client
        self.acks = acker.tally.counts
        self.plan = plan
        self.window = window
        self.rate = rate
        self.run = run
        self.next = 0
        self.t0 = 0.0
        self.loop = asyncio.get_running_loop()

    def start(self) -> None:
        if self.rate is None:
            self.pump()
        else:
            # Senders take turns: with K senders at R a second, sender s sends at
            # s/(K*R) past each 1/R, so that each message reaches the server alone
            # (issue 16's paced load) instead of K at once.
            self.t0 = self.loop.time() + self.sender / (self.plan.senders * self.rate)
            self.loop.call_at(self.t0, self._tick)

    def pump(self) -> None:
        """Closed loop: keep at most ``window`` messages unacknowledged."""
        if self.rate is not None or not self.run.started:
            return
        messages, acks, sender = self.plan.messages, self.acks, self.sender
        while self.next < messages and self.next - acks[sender] < self.window:
            self._send()

    def _tick(self) -> None:
        """Open loop: send what is due by now, then sleep until the next is due."""
        assert self.rate is not None
        now = self.loop.time()
        due = min(self.plan.messages, int((now - self.t0) * self.rate) + 1)
        if self.next < due:
            self.run.late_ns.append(int(1e9 * (now - self.t0 - self.next / self.rate)))
        while self.next < due:
            self._send()
        if self.next < self.plan.messages:
            self.loop.call_at(self.t0 + self.next / self.rate, self._tick)

    def _send(self) -> None:
        transport = self.client.transport
        if transport is None or transport.is_closing():
            self.next = self.plan.messages
        else:
            now = time.monotonic_ns()
            if not self.run.first_send_ns:
                self.run.first_send_ns = now
            self.run.send_ns.append(now)
            transport.write(self.client.receiver.frame(
                self.plan.wrap(message_text(self.sender, self.next, now))))
            self.next += 1
            self.run.sent += 1
            self.run.last_activity = time.monotonic()
        if self.next >= self.plan.messages:
            self.run.senders_left -= 1
            self.run.check()


async def _connect(host: str, port: int, receiver: Receiver, run: _Run,
                   gate: asyncio.Semaphore, deadline: float) -> _Client | str:
    """Connect one client and wait for the server's first line."""
    loop = asyncio.get_running_loop()
    name = receiver.plan.nick(receiver.client)
    async with gate:
        try:
            _, client = await asyncio.wait_for(
                loop.create_connection(lambda: _Client(receiver, run), host, port),
                max(0.01, deadline - time.monotonic()),
            )
        except TimeoutError:
            return f"{name}: connect timed out"
        except OSError as exc:
            return f"{name}: {exc.strerror or exc}"
        return await _reach(client, "greeted", "no greeting", deadline)


async def _join(client: _Client, deadline: float) -> _Client | str:
    """Register and join (line mode), then wait until the server has us in the room."""
    assert client.transport is not None
    receiver = client.receiver
    client.transport.write(receiver.frame(receiver.plan.hello(receiver.client)))
    return await _reach(client, "ready", f"not in {receiver.plan.room}", deadline)


async def _reach(client: _Client, flag: str, failure: str, deadline: float) -> _Client | str:
    name = client.receiver.plan.nick(client.receiver.client)
    try:
        problem = await asyncio.wait_for(client.until(flag),
                                         max(0.01, deadline - time.monotonic()))
    except TimeoutError:
        problem = f"{name}: {failure} before the timeout"
    if problem:
        client.close()
        return problem
    return client


@dataclass(frozen=True)
class WorkerOptions:
    host: str
    port: int
    window: int
    rate: float | None
    deadline: float
    gate: int  # connection attempts in flight in one worker
    #: ``--realtime``: the paced senders' process asks for a real-time priority.
    realtime: bool = False


async def _worker_main(plan: Plan, mine: list[int], opts: WorkerOptions,
                       inbox: Connection, pipe: Connection) -> None:
    """One process's share: set up, report ready, run on go, report, close on quit.

    Commands come on ``inbox``, watched by the loop (which makes its fd
    non-blocking, fine for one-word commands); reports go out on ``pipe``,
    which stays blocking because a report may hold megabytes of latencies.
    """
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def on_command() -> None:
        try:
            commands.put_nowait(inbox.recv())
        except (EOFError, OSError):  # the parent is gone: stop
            loop.remove_reader(inbox.fileno())
            commands.put_nowait("quit")

    loop.add_reader(inbox.fileno(), on_command)
    latencies: array[int] = array("q")
    # A paced run's receivers share one stream (see SharedStream): what a
    # process can read at 250k deliveries a second on one core.
    stream = SharedStream(plan) if opts.rate is not None else None
    receivers = [Receiver(plan, client, latencies, stream) for client in mine]
    run = _Run(len(receivers))
    gate = asyncio.Semaphore(opts.gate)
    outcomes = await asyncio.gather(
        *(_connect(opts.host, opts.port, r, run, gate, opts.deadline) for r in receivers)
    )
    clients = [o for o in outcomes if isinstance(o, _Client)]
    problems = [o for o in outcomes if isinstance(o, str)]
    try:
        pipe.send(("connected", len(problems), problems[:3]))
        if await _next(commands, opts.deadline) != "join":
            return
        # Everyone, in every process, is connected: now all join at once.
        outcomes = await asyncio.gather(*(_join(c, opts.deadline) for c in clients))
        problems = [o for o in outcomes if isinstance(o, str)]
        pipe.send(("ready", len(problems), problems[:3]))
        if await _next(commands, opts.deadline) == "go":
            cpu0 = _cpu_seconds()
            await _window(plan, clients, opts, run)
            counts = Counts().add_receivers(receivers)
            errors = [e for r in receivers for e in r.errors] + run.errors
            pipe.send(("result", {
                "counts": asdict(counts),
                "latencies": latencies.tobytes(),
                "first_send_ns": run.first_send_ns,
                "last_ns": max((r.last_ns for r in receivers), default=0),
                "sent": run.sent,
                "send_ns": run.send_ns.tobytes(),
                "late_ns": run.late_ns.tobytes(),
                "errors": len(errors),
                "first_errors": errors[:3],
                "cpu": _cpu_seconds() - cpu0,
            }))
            # Hold the connections until every worker has counted (see the package doc).
            await _next(commands, opts.deadline + GRACE)
    finally:
        loop.remove_reader(inbox.fileno())
        for client in clients:
            client.close()
        await asyncio.sleep(0)  # let the aborts' connection_lost callbacks run


async def _next(commands: asyncio.Queue[str], deadline: float) -> str:
    try:
        return await asyncio.wait_for(commands.get(), max(0.01, deadline - time.monotonic()))
    except TimeoutError:
        return "timeout"


async def _window(plan: Plan, clients: list[_Client], opts: WorkerOptions, run: _Run) -> None:
    """Start the local senders and wait until every local client has everything."""
    by_number = {c.receiver.client: c for c in clients}
    local = sorted(by_number)
    senders = []
    for index, number in enumerate(local):
        if number >= plan.senders or plan.messages == 0:
            continue
        client = by_number[number]
        # Line mode (and IRC with echo-message): its own message coming back is
        # the acknowledgement. Without an echo the next local client witnesses it.
        witness = index if plan.echoes else (index + 1) % len(local)
        acker = by_number[local[witness]]
        sender = _Sender(client, acker.receiver, plan, opts.window, opts.rate, run)
        acker.pacers.append(sender)
        senders.append(sender)
    run.senders_left = len(senders)
    run.started = True
    run.last_activity = time.monotonic()
    for sender in senders:
        sender.start()
    run.check()
    settle = settle_seconds(plan, opts)
    while not run.done.is_set():
        now = time.monotonic()
        left = min(opts.deadline - now, run.last_activity + settle - now)
        if left <= 0:
            run.fail("timed out" if opts.deadline <= now else
                     f"nothing moved for {settle:g} s; giving up")
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.done.wait(), left)


def settle_seconds(plan: Plan, opts: WorkerOptions) -> float:
    """How long nothing may move before the run is given up as stalled.

    Paced: three intervals between messages. Closed loop: what the server
    may spend on one turn's fan-out of every sender's window at once.
    """
    if opts.rate:
        return max(SETTLE, 3.0 / opts.rate)
    outstanding = plan.senders * min(opts.window, plan.messages) * plan.clients
    return max(SETTLE, outstanding * SETTLE_PER_DELIVERY)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def keeps_time(plan: Plan, mine: list[int], opts: WorkerOptions) -> bool:
    """Whether this worker is the paced senders' own process and ``--realtime`` asked
    for it to keep time (:func:`_keep_time`): never unasked, it changes the machine's
    scheduling for everyone else."""
    return (opts.realtime and opts.rate is not None and bool(mine)
            and max(mine) < plan.senders)


def _keep_time() -> None:
    """``--realtime``: the paced senders' process takes a real-time priority
    (SCHED_FIFO 1) where allowed (root), else nice -10 where allowed, so that its
    timers fire on time beside busy readers; neither allowed: as it was.

    It sleeps between sends (a few per cent of a core), so it cannot starve anyone;
    the kernel's real-time throttling would stop it if it ever did.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (OSError, AttributeError):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -10)


def run_worker(plan: Plan, mine: list[int], opts: WorkerOptions, inbox: Connection,
            pipe: Connection) -> None:
    if keeps_time(plan, mine, opts):
        _keep_time()
    try:
        loops.run(_worker_main(plan, mine, opts, inbox, pipe))
    finally:
        inbox.close()
        pipe.close()
