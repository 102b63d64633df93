"""An idle registered client holds only what it uses (issue 16: idle memory per client).

The nick guard, the barred-nick set, the IRC door's read markers and account
state (SASL, NickServ, a refused NICK) and the line door's held-lines list are
made on first use; these tests pin that, and that the first use still works.
"""

from __future__ import annotations

from dataclasses import astuple

import pytest

from irc_support import Network, commands, find
from net import irc_client
from sockhub.doors.api import OPER_ATTEMPTS
from sockhub.doors.irc import IrcDoor, WebSocketIrcDoor
from sockhub.doors.line import LineDoor
from sockhub.passwords import hash_password
from sockhub.protocols.base import ConnectionInfo
from sockhub.protocols.irc.protocol import REGISTRATION_OVER, Registration


def test_an_irc_client_whose_nick_is_no_ones_holds_no_guard_markers_or_bars(tmp_path):
    net = Network(tmp_path, nick_grace=30.0)
    try:
        client = net.register("alice")
        door = client.door
        assert door.acct is None  # no SASL, no NickServ, no owned nick: no account state
        assert door.markers is None
        assert door.user is not None and door.user.barred == frozenset()
        assert isinstance(door.user.barred, frozenset)
    finally:
        net.close()


def test_the_guard_is_made_when_the_nick_becomes_someones(tmp_path):
    net = Network(tmp_path, nick_grace=30.0)
    try:
        owner = net.register("owner")
        owner.ask("PRIVMSG NickServ :REGISTER hunter22")
        net.service.commit()
        owner.send("QUIT :bye")
        taker = net.register("taker")
        assert taker.door.acct is None
        taker.take()
        taker.send("NICK owner")
        told = find(taker.take(), "NOTICE")
        assert "belongs to account owner" in told.params[1]
        assert taker.door.acct is not None
        guard = taker.door.acct.guard
        assert guard is not None and guard.timer is not None
        net.clock.advance(31)  # not identified: renamed, and barred from it
        user = taker.door.user
        assert user is not None and user.nick != "owner"
        assert user.barred == frozenset({"owner"})
    finally:
        net.close()


def test_read_markers_of_a_user_without_an_account_are_made_on_first_use(tmp_path):
    net = Network(tmp_path)
    try:
        client = net.register("alice", "draft/read-marker")
        client.ask("JOIN #r")
        assert client.door.markers is None
        client.ask("MARKREAD #r timestamp=2026-01-01T00:00:00.000Z")
        assert client.door.markers is not None and len(client.door.markers) == 1
    finally:
        net.close()


def test_account_state_is_made_by_authenticate_and_the_exchange_still_works(tmp_path):
    net = Network(tmp_path)
    try:
        client = net.connect()
        client.send("CAP LS 302", "CAP REQ :sasl", "NICK alice", "USER alice 0 * :A")
        client.take()
        assert client.door.acct is None
        client.send("AUTHENTICATE PLAIN")
        assert [m.params for m in client.take() if m.command == "AUTHENTICATE"] == [("+",)]
        state = client.door.acct
        assert state is not None and state.mechanism == "PLAIN"
        assert "906" in commands(client.ask("AUTHENTICATE *"))  # aborted: ERR_SASLABORTED
        assert state.mechanism is None
        assert "001" in commands(client.ask("CAP END"))
        assert client.door.user is not None and client.door.user.account is None
    finally:
        net.close()


def test_a_refused_nick_before_registration_is_remembered_for_register_star(tmp_path):
    net = Network(tmp_path)
    try:
        net.register("alice")
        client = net.connect()
        assert "433" in commands(client.ask("NICK alice"))  # ERR_NICKNAMEINUSE
        assert client.door.acct is not None and client.door.acct.tried_nick == "alice"
    finally:
        net.close()


class Line:
    """A line-door connection without a socket."""

    def __init__(self, net: Network) -> None:
        self.door = LineDoor(net.service)
        self.door.clock = net.clock
        self.reading: list[bool] = []
        self.door.controls = self  # the engine's place: set_reading comes here
        self.door.connection_made(ConnectionInfo(peer="127.0.0.1:40000", service="chat"))

    def set_reading(self, reading: bool, /) -> None:
        self.reading.append(reading)

    def take(self) -> list[str]:
        return b"".join(self.door.data_to_send()).decode().splitlines()


@pytest.fixture
def net(tmp_path):
    network = Network(tmp_path)
    yield network
    network.close()


def test_a_line_client_that_never_held_has_no_held_lines_list(net):
    line = Line(net)
    line.door.receive_data(b"alice\n")
    net.service.commit()
    assert line.door.user is not None
    assert line.door.queued is None


def test_lines_and_an_end_of_file_read_while_held_are_taken_up_in_order(net):
    line = Line(net)
    line.door.receive_data(b"alice\n")
    net.service.commit()
    line.take()
    resume = line.door.hold()
    assert line.reading == [False] and line.door.queued == []
    line.door.receive_data(b"/me waves\n/nick bob\n")
    line.door.receive_eof()
    assert line.take() == []  # nothing answered while held
    assert not line.door.close_expected()
    resume(lambda: line.door.info_line("the held answer"))
    net.service.commit()
    said = line.take()
    assert line.reading == [False, True]
    assert said[0] == "-- the held answer"
    assert any("alice waves" in text for text in said[1:])
    assert any("bob" in text for text in said[1:])
    assert line.door.close_expected()  # the end of file counted last
    assert line.door.queued == []


def test_a_hold_after_hanging_up_is_not_resumed(net):
    line = Line(net)
    line.door.receive_data(b"alice\n")
    resume = line.door.hold()
    line.door.receive_data(b"more\n")
    line.door.connection_lost()
    assert line.door.queued is None
    resume(lambda: line.door.info_line("never"))
    assert all("never" not in text for text in line.take())


def test_a_registered_client_shares_the_one_read_only_registration(tmp_path):
    net = Network(tmp_path)
    try:
        client = net.register("alice", "sasl")
        reg = client.door.irc.reg
        assert reg is REGISTRATION_OVER and astuple(reg) == astuple(Registration())
        with pytest.raises(AttributeError):
            reg.nick = "mallory"
        # What may come after registration writes nothing to it.
        replies = client.ask("CAP LS 302", "CAP REQ :echo-message", "CAP END", "PASS again",
                             "USER x 0 * :X", "NICK alice2")
        assert "462" in commands(replies)  # ERR_ALREADYREGISTERED
        assert client.door.user is not None and client.door.user.nick == "alice2"
        assert astuple(REGISTRATION_OVER) == astuple(Registration())
    finally:
        net.close()


def _armed(net: Network) -> int:
    """Timers set on the manual clock and neither run nor cancelled."""
    return sum(1 for entry in net.clock._timers if not entry[2])


def test_an_irc_connection_holds_one_timer_for_its_deadline_and_keep_alive(tmp_path):
    net = Network(tmp_path, registration_timeout=20.0, irc_ping_interval=5.0,
                  irc_ping_timeout=100.0)
    try:
        alice = net.register("alice")
        assert alice.door._reg_deadline is None
        assert _armed(net) == 1  # the keep-alive's; no registration timer, set or cancelled
        slow = net.connect()
        assert _armed(net) == 2  # one each
        slow.send("NICK slow")  # never sends USER
        net.clock.advance(5)
        assert commands(slow.take()) == ["PING"]  # pinged meanwhile, as before
        net.clock.advance(14)
        assert not slow.closed
        net.clock.advance(1)  # the deadline, sooner than the ping's timeout
        assert slow.closed
        assert "Registration timed out" in slow.take()[-1].params[0]
        assert not alice.closed  # registered in time: the deadline is not hers
    finally:
        net.close()


def test_only_the_web_doors_irc_connections_are_websockets(tmp_path):
    net = Network(tmp_path)
    try:
        client = net.register("alice")
        assert client.door.websocket is False
        assert WebSocketIrcDoor.websocket is True
        assert "websocket" not in IrcDoor.__slots__  # a class attribute, not a slot each
    finally:
        net.close()


async def test_failed_opers_are_counted_in_the_lazily_made_account_state(serve, tmp_path):
    settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0,
                "operators": {"root": hash_password("s3cret", log_n=10)}}
    _, irc = await serve("chat", options=settings)
    client = await irc_client(irc.ports[0], "ops")
    for _ in range(OPER_ATTEMPTS - 1):
        await client.send(b"OPER root wrong\r\n")
        await client.expect(" 464 ")  # ERR_PASSWDMISMATCH
    await client.send(b"OPER root wrong\r\n")
    rest = await client.expect_eof()
    assert any("Too many failed OPER attempts" in line for line in rest), rest
    client.close()
