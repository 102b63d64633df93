"""IRC door limits on a manual clock: flood control, PING keep-alive, registration deadline."""

from __future__ import annotations

import pytest

from irc_support import Network, commands, find


@pytest.fixture
def net(tmp_path):
    network = Network(tmp_path, flood_rate=1.0, flood_burst=5, irc_ping_interval=30.0,
                      irc_ping_timeout=10.0, registration_timeout=20.0)
    yield network
    network.close()


def test_flood_control_delays_lines_and_loses_none(tmp_path):
    net = Network(tmp_path, flood_rate=1.0, flood_burst=5)
    alice = net.register("alice")
    bob = net.register("bob")
    alice.ask("JOIN #f")
    bob.ask("JOIN #f")
    alice.take()
    net.clock.advance(10)  # both have paid off their registration lines
    bob.send(*(f"PRIVMSG #f :line {i}" for i in range(20)))
    first = [m.params[1] for m in alice.take() if m.command == "PRIVMSG"]
    assert 4 <= len(first) <= 6  # the burst passes at once
    got = list(first)
    for _ in range(30):
        net.clock.advance(1.0)
        got += [m.params[1] for m in alice.take() if m.command == "PRIVMSG"]
    assert got == [f"line {i}" for i in range(20)]  # all of them, in order, one a second
    net.close()


def test_a_burst_of_joins_on_connect_passes(tmp_path):
    # The defaults (5 lines a second, bursts of 20): what a client sends on
    # connect, registration and a dozen JOINs and WHOs, is not delayed.
    net = Network(tmp_path, flood_rate=5.0, flood_burst=20)
    client = net.connect()
    lines = ["CAP LS 302", "NICK joiner", "USER j 0 * :J", "CAP REQ :multi-prefix", "CAP END"]
    lines += [f"JOIN #room{i}" for i in range(8)] + [f"WHO #room{i}" for i in range(6)]
    client.send(*lines)
    replies = client.take()
    assert len([m for m in replies if m.command == "JOIN"]) == 8
    assert len([m for m in replies if m.command == "315"]) == 6
    net.close()


def test_excess_flood_is_dropped_with_error(net):
    alice = net.register("alice")
    flooder = net.register("flooder")
    alice.ask("JOIN #f")
    flooder.ask("JOIN #f")
    alice.take()
    flooder.send(b"".join(b"PRIVMSG #f :spam %d\r\n" % i for i in range(300)))
    out = flooder.take()
    assert out[-1].command == "ERROR" and "Excess Flood" in out[-1].params[0]
    assert flooder.closed
    quit_msg = find(alice.take(), "QUIT")
    assert quit_msg.params == ("Excess Flood",)


def test_silent_client_gets_ping_then_is_dropped(net):
    alice = net.register("alice")
    quiet = net.register("quiet")
    alice.ask("JOIN #p")
    quiet.ask("JOIN #p")
    alice.take()
    net.clock.advance(29)
    assert quiet.take() == []
    alice.ask("PING still-here")  # alice talks, quiet does not
    net.clock.advance(1)
    ping = quiet.take()
    assert commands(ping) == ["PING"] and ping[0].params == ("irc.test",)
    net.clock.advance(9.5)
    assert not quiet.closed
    net.clock.advance(1)
    assert quiet.closed
    assert "Ping timeout" in quiet.take()[-1].params[0]
    assert find(alice.take(), "QUIT").params == ("Ping timeout: 10 seconds",)


def test_a_client_that_answers_ping_stays(net):
    alice = net.register("alice")
    for _ in range(5):
        net.clock.advance(30)
        ping = find(alice.take(), "PING")
        net.clock.advance(5)
        alice.send(f"PONG :{ping.params[0]}")
    net.clock.advance(20)
    assert not alice.closed
    # Any line proves the client alive, not only PONG: no PING while it talks.
    for _ in range(10):
        net.clock.advance(20)
        alice.ask("PING keepalive")
    assert "PING" not in commands(alice.take())


def test_registration_must_finish_in_time(net):
    slow = net.connect()
    slow.send("CAP LS 302", "NICK slow", "USER slow 0 * :S")  # never sends CAP END
    net.clock.advance(19)
    assert not slow.closed
    net.clock.advance(2)
    assert slow.closed
    assert "Registration timed out" in slow.take()[-1].params[0]


def test_half_a_line_is_no_sign_of_life(net):
    # Idle means "no complete line", not "no byte": a client trickling half a
    # line is PINGed and dropped like a silent one.
    quiet = net.register("quiet")
    quiet.door.active = False  # as the engine's idle check does on each tick
    for _ in range(30):
        net.clock.advance(1)
        quiet.send(b"P")  # never the end of a line
    assert commands(quiet.take()) == ["PING"]
    assert not quiet.door.active  # the engine's idle check sees no line either
    for _ in range(11):
        net.clock.advance(1)
        quiet.send(b"P")
    assert quiet.closed
    assert "Ping timeout" in quiet.take()[-1].params[0]


def test_registration_timeout_can_be_turned_off(tmp_path):
    net = Network(tmp_path, registration_timeout=None, irc_ping_interval=7200.0)
    idle = net.connect()
    net.clock.advance(3600)
    assert not idle.closed
    net.close()
