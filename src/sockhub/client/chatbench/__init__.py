"""``sockhub bench chat``: fan-out load on one chat room, checked message by message.

A chat server's work is fan-out: one line in, N lines out. So the unit here
is the *delivery* (one message reaching one client), and the question is not
only "how many a second" but "did every client get every message exactly
once, in its sender's order". Every message carries its sender, its sequence
number and its send time (``time.monotonic_ns()``: CLOCK_MONOTONIC is one
clock for the whole machine on Linux, so a receiver in another process can
subtract it), and every client checks what it receives.

The run has three phases, coordinated by the parent process over pipes so
that nothing waits on a sleep:

1. *setup*: each worker process connects its share of the clients and waits
   for each greeting, then (line mode) has them all register ``b0001``… and
   join the room at once: a chat server announces every join to the whole
   room, and joins that arrive together share its writes. A client is ready
   when it reads the server's own account of its join. Workers report ready.
   (IRC mode registers on connect, CAP negotiation included, is greeted by
   the end of the MOTD, and is ready at the ``366`` that ends its join.)
2. *window*: the parent says go; K senders each send M messages, paced by
   their acknowledgement (line mode: their own message coming back; ncat
   mode, which has no echo: a witness client in the same process receiving
   it) or by a fixed rate. Workers report their counts when every local
   client has everything, or when nothing has moved for a while.
3. *teardown*: only once every worker has reported does the parent let them
   disconnect, so a worker that finishes early does not make the server
   broadcast departures into the measured window.

The parsing and accounting are pure, byte-in and counts-out, and
unit-tested alone; the asyncio and multiprocessing code only moves bytes and
numbers around. One module per part:

* :mod:`.plan`: the run's shape (:class:`~.plan.Plan`: who sends, who expects
  what) and the message format, and the few IRC lines the bench reads;
* :mod:`.receiver`: one client's reading side, sans-I/O
  (:class:`~.receiver.Receiver`), and exactly-once, in-order accounting
  (:class:`~.receiver.Tally`, :class:`~.receiver.Counts`);
* :mod:`.worker`: one worker process: its clients' connections, the
  senders' pacing, its side of the phases (asyncio);
* :mod:`.parent`: :func:`bench_chat`: fork the workers, walk them through
  the phases, merge what they counted;
* :mod:`.result`: :class:`ChatBenchResult`, the merged figures and their report.
"""

from __future__ import annotations

from sockhub.client.chatbench.parent import bench_chat
from sockhub.client.chatbench.result import ChatBenchResult

__all__ = ["ChatBenchResult", "bench_chat"]
