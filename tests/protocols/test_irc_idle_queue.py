"""What idle IRC connections share (issue 16's memory): the empty receive queue, capability sets.

An empty deque is 760 bytes; with 10,000 idle clients that was a quarter of
the per-client budget. What must hold: lines stay each connection's own and
in order, a drained queue is given back, and flood control still counts.
"""

from __future__ import annotations

from irc_support import Network
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


def test_connections_with_the_same_capabilities_share_one_set(tmp_path):
    """A capability set is kept once for all who hold it; changing one's own changes no other."""
    net = Network(tmp_path)
    try:
        a = net.register("ann", "echo-message", "server-time")
        b = net.register("bob", "server-time", "echo-message")
        c = net.connect()  # no CAP at all
        assert a.door.caps is b.door.caps
        assert a.door.caps == {"echo-message", "server-time", "cap-notify"}
        assert c.door.caps == frozenset()
        reply = a.ask("CAP REQ :-server-time", "CAP LIST")
        assert reply[-1].params[-1] == "cap-notify echo-message"
        assert b.door.caps == {"echo-message", "server-time", "cap-notify"}
        assert b.ask("CAP LIST")[-1].params[-1] == "cap-notify echo-message server-time"
    finally:
        net.close()
