"""The line door's room-message fast path (issue 16), sans-I/O on a manual clock.

A room message rendered for the first member is queued as the same bytes for
the rest of the room without the checks other events need; these check that
nothing else changed: every member gets every line once and in order, a
closing connection gets nothing, the events between messages (joins, kicks,
private messages) still do what they did, and the door's message counts.
"""

from __future__ import annotations

import pytest

from irc_support import Network
from sockhub import metrics
from sockhub.doors.line import LineDoor
from sockhub.protocols.base import ConnectionInfo


class Line:
    """A line-door connection without a socket: lines in, lines out."""

    def __init__(self, net: Network, nick: str) -> None:
        self.door = LineDoor(net.service)
        self.door.clock = net.clock
        self.wakes = 0
        self.door.wake = self._woken
        net._port += 1
        self.door.connection_made(ConnectionInfo(peer=f"127.0.0.1:{net._port}", service="chat"))
        self.send(nick)
        self.take()

    def _woken(self) -> None:
        self.wakes += 1

    def send(self, *lines: str) -> None:
        self.door.receive_data("".join(f"{line}\n" for line in lines).encode())
        self.door.chat.commit()  # no loop here: the turn's group commit, by hand

    def take(self) -> list[str]:
        data = b"".join(self.door.data_to_send()).decode()
        return [line[9:] if line[:2].isdigit() else line for line in data.splitlines()]


@pytest.fixture
def net(tmp_path):
    network = Network(tmp_path)
    yield network
    network.close()


def test_every_member_gets_each_message_once_in_order(net):
    people = [Line(net, nick) for nick in ("ann", "bob", "cy")]
    for person in people:
        person.send("/join #r")
    for person in people:
        person.take()
    ann, bob, _ = people
    ann.door.receive_data(b"one\ntwo\n")
    bob.door.receive_data(b"three\n")
    net.service.commit()
    expected = ["#r <ann> one", "#r <ann> two", "#r <bob> three"]
    for person in people:
        assert person.take() == expected


def test_events_between_messages_still_take_their_own_way(net):
    op, bob, cy = (Line(net, nick) for nick in ("op", "bob", "cy"))
    op.send("/join #r")
    bob.send("/join #r")
    bob.send("before the join")
    cy.send("/join #r")  # the rendering cache now holds a Joined
    op.send("after the join")
    assert op.take()[-3:] == ["#r <bob> before the join", "#r * cy joined",
                              "#r <op> after the join"]
    assert cy.take()[-1] == "#r <op> after the join"
    op.send("/kick #r bob go")  # bob's door follows the kick: back to #lobby
    bob.take()
    bob.send("anyone?")
    assert bob.take() == ["#lobby <bob> anyone?"]
    cy.send("/msg op psst")  # private: rendered per viewer, never from the room's cache
    assert op.take()[-1] == "[pm] <cy> psst"
    op.send("and again")
    assert cy.take()[-2:] == ["[pm to op] <cy> psst", "#r <op> and again"]


def test_a_closing_connection_is_skipped_and_wakes_are_one_per_flush(net):
    ann, bob, cy = (Line(net, nick) for nick in ("ann", "bob", "cy"))
    for person in (ann, bob, cy):
        person.send("/join #r")
    for person in (ann, bob, cy):
        person.take()
    bob.door.close()
    wakes = cy.wakes
    ann.door.receive_data(b"m1\nm2\nm3\n")
    net.service.commit()
    assert bob.take() == []
    assert cy.take() == ["#r <ann> m1", "#r <ann> m2", "#r <ann> m3"]
    assert cy.wakes == wakes + 1  # queued behind the first: one wake for three lines


def test_the_door_counts_each_message_in_and_each_delivery_out(net):
    counts = metrics.door("line")
    people = [Line(net, nick) for nick in ("ann", "bob", "cy", "dee")]
    for person in people:
        person.send("/join #r")
    before_in, before_out = counts.messages_in, counts.messages_out
    people[0].door.receive_data(b"a\nb\n")
    net.service.commit()
    assert counts.messages_in - before_in == 2
    assert counts.messages_out - before_out == 2 * len(people)
