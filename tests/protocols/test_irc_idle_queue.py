"""The IRC protocol's receive queue: idle connections share one empty queue (issue 16's memory).

An empty deque is 760 bytes; with 10,000 idle clients that was a quarter of
the per-client budget. What must hold: lines stay each connection's own and
in order, a drained queue is given back, and flood control still counts.
"""

from __future__ import annotations

from sockhub.doors.irc.commands import COMMANDS
from sockhub.protocols.irc.protocol import (
    RECVQ_LINES,
    CommandReceived,
    IrcProtocol,
    IrcState,
)


def protocol() -> IrcProtocol:
    irc = IrcProtocol(COMMANDS, flood_rate=None, flood_burst=10, now=0.0)
    irc.complete_registration()
    return irc


def drain(irc: IrcProtocol) -> list[str]:
    got = []
    while (event := irc.next_event(0.0)) is not None:
        assert isinstance(event, CommandReceived)
        got.append(event.message.params[-1])
    return got


def test_lines_stay_with_their_connection_and_in_order():
    a, b = protocol(), protocol()
    assert a.pending is b.pending  # both idle: the one shared, empty queue
    assert a.receive_data(b"PING :a1\r\nPING :a2\r\n")
    assert b.receive_data(b"PING :b1\r\n")
    assert a.pending is not b.pending
    assert drain(b) == ["b1"]
    assert drain(a) == ["a1", "a2"]
    assert a.pending is b.pending and len(a.pending) == 0 and a.pending_bytes == 0
    assert a.receive_data(b"PING :a3\r\n") and drain(a) == ["a3"]
    assert drain(b) == []


def test_half_a_line_queues_nothing_and_a_closed_connection_drops_its_queue():
    irc = protocol()
    assert not irc.receive_data(b"PING :ha")
    assert irc.receive_data(b"lf\r\nPING :more\r\n")
    irc.close()
    assert irc.state is IrcState.CLOSED and len(irc.pending) == 0
    assert irc.next_event(0.0) is None
    assert not irc.receive_data(b"PING :late\r\n")
    assert len(protocol().pending) == 0  # the shared queue took nothing


def test_a_flood_is_still_seen():
    irc = protocol()
    irc.receive_data(b"PING :x\r\n" * (RECVQ_LINES + 1))
    assert irc.flooded
    drain(irc)
    assert not irc.flooded
