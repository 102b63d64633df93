"""IrcProtocol with bytes alone: framing, the command table's checks, the flood clock.

No door, no hub, no event loop: the protocol takes bytes and a time and
answers events (protocols/irc/protocol.py).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockhub.codec.irc import (
    ERR_INPUTTOOLONG,
    ERR_NEEDMOREPARAMS,
    ERR_NOTREGISTERED,
    ERR_UNKNOWNCOMMAND,
    ERR_UNKNOWNERROR,
)
from sockhub.doors.irc.commands import COMMANDS as DOOR_COMMANDS
from sockhub.protocols.irc.protocol import (
    RECVQ_LINES,
    CommandReceived,
    CommandSpec,
    IrcProtocol,
    IrcState,
    Refused,
    Undecodable,
    Wait,
)


def handler(door: object, message: object) -> None:  # never called here
    raise AssertionError("the protocol does not call handlers")


TABLE = {
    "NICK": CommandSpec(handler, 0, pre_reg=True),
    "USER": CommandSpec(handler, 4, pre_reg=True),
    "PONG": CommandSpec(handler, 0, pre_reg=True, cost=0.0),
    "JOIN": CommandSpec(handler, 1),
    "PRIVMSG": CommandSpec(handler, 0),
}


def drain(irc: IrcProtocol, now: float = 0.0) -> list[object]:
    events = []
    while (event := irc.next_event(now)) is not None:
        events.append(event)
        if isinstance(event, Wait):
            break
    return events


def protocol(rate: float | None = None, burst: int = 5) -> IrcProtocol:
    return IrcProtocol(TABLE, flood_rate=rate, flood_burst=burst, now=0.0)


def test_a_command_that_passes_the_checks_names_its_row():
    irc = protocol()
    assert irc.receive_data(b"NICK alice\r\n")
    (event,) = drain(irc)
    assert isinstance(event, CommandReceived)
    assert event.message.command == "NICK" and event.message.params == ("alice",)
    assert event.spec is TABLE["NICK"]


def test_half_a_line_is_no_event_and_no_sign_of_life():
    irc = protocol()
    assert not irc.receive_data(b"NICK ali")
    assert drain(irc) == []
    assert irc.receive_data(b"ce\n")
    assert [e.message.params for e in drain(irc)] == [("alice",)]


def test_registration_state_gates_commands():
    irc = protocol()
    irc.receive_data(b"JOIN #a\r\nFOO\r\n")
    assert drain(irc) == [Refused(ERR_NOTREGISTERED, ("You have not registered",))] * 2
    irc.complete_registration()
    assert irc.state is IrcState.REGISTERED and irc.registered
    irc.receive_data(b"JOIN #a\r\nFOO x\r\n")
    joined, unknown = drain(irc)
    assert isinstance(joined, CommandReceived)
    assert unknown == Refused(ERR_UNKNOWNCOMMAND, ("FOO", "Unknown command"))


def test_arity_is_checked_once_from_the_table():
    irc = protocol()
    irc.receive_data(b"USER a 0 *\r\nUSER a 0 * :A\r\n")
    short, enough = drain(irc)
    assert short == Refused(ERR_NEEDMOREPARAMS, ("USER", "Not enough parameters"))
    assert isinstance(enough, CommandReceived)


def test_bad_lines_are_answered_and_the_rest_goes_on():
    irc = protocol()
    irc.receive_data(b"\r\n   \r\n" + b"NICK " + b"x" * 600 + b"\r\nNICK \xff\r\n:\r\nNICK ok\r\n")
    too_long, undecodable, malformed, ok = drain(irc)
    assert too_long == Refused(ERR_INPUTTOOLONG, ("Input line was too long",))
    assert undecodable == Undecodable("NICK")
    assert isinstance(malformed, Refused) and malformed.numeric == ERR_UNKNOWNERROR
    assert isinstance(ok, CommandReceived)


def test_the_flood_clock_holds_lines_past_the_burst_and_lets_them_through_later():
    irc = protocol(rate=2.0, burst=2)  # a command costs 0.5 s; 1 s may be banked
    irc.receive_data(b"NICK a\r\n" * 5)
    events = drain(irc, now=0.0)
    assert [type(e) for e in events] == [CommandReceived] * 3 + [Wait]
    assert events[-1] == Wait(pytest.approx(0.5))
    assert len(irc.pending) == 2
    assert [type(e) for e in drain(irc, now=0.5)] == [CommandReceived, Wait]
    assert [type(e) for e in drain(irc, now=1.0)] == [CommandReceived]


def test_free_commands_cost_nothing_on_the_flood_clock():
    irc = protocol(rate=1.0, burst=1)
    irc.receive_data(b"PONG x\r\n" * 50 + b"NICK a\r\nNICK b\r\nNICK c\r\n")
    events = drain(irc)
    assert [type(e) for e in events] == [CommandReceived] * 52 + [Wait]


def test_the_end_of_input_lifts_flood_control():
    irc = protocol(rate=1.0, burst=1)
    irc.receive_data(b"NICK a\r\n" * 10)
    assert isinstance(drain(irc)[-1], Wait)
    irc.receive_eof()
    assert [type(e) for e in drain(irc)] == [CommandReceived] * 8


def test_a_client_that_does_not_pace_itself_is_flooded():
    irc = protocol(rate=1.0, burst=1)
    irc.receive_data(b"NICK a\r\n" * RECVQ_LINES)
    drain(irc)
    assert not irc.flooded
    irc.receive_data(b"NICK a\r\n" * 5)
    assert irc.flooded


def test_closing_drops_what_is_queued_and_ignores_more():
    irc = protocol(rate=1.0, burst=1)
    irc.receive_data(b"NICK a\r\n" * 5)
    irc.close()
    assert irc.state is IrcState.CLOSED and drain(irc) == []
    assert not irc.receive_data(b"NICK b\r\n")


def test_every_row_of_the_doors_table_is_checked_the_same_way():
    irc = IrcProtocol(DOOR_COMMANDS, flood_rate=None, flood_burst=1, now=0.0)
    for name, spec in DOOR_COMMANDS.items():
        irc.complete_registration()
        if spec.min_params:
            irc.receive_data(f"{name}\r\n".encode())
            assert drain(irc) == [Refused(ERR_NEEDMOREPARAMS, (name, "Not enough parameters"))]
        irc.receive_data(f"{name} {' '.join(['x'] * spec.min_params)}\r\n".encode())
        (event,) = drain(irc)
        assert isinstance(event, CommandReceived) and event.spec.handler is spec.handler


@given(st.lists(st.sampled_from([b"NICK a\r\n", b"JOIN\r\n", b"\r\n", b"X y z\n", b"PONG\r\n"]),
                max_size=20),
       st.integers(min_value=1, max_value=7))
def test_any_split_of_the_input_gives_the_same_events(lines, size):
    data = b"".join(lines)
    whole = protocol()
    whole.receive_data(data)
    split = protocol()
    for i in range(0, len(data), size):
        split.receive_data(data[i : i + size])
    assert drain(whole) == drain(split)
