"""The IRC door's PRIVMSG #channel fast path against its general path, on the wire.

Each scenario runs twice on a fresh chat service: once as the door runs
(the protocol's fast path on, its handler counted), once with the fast path
taken out of the command table. Every client's bytes after every line must
be the same in both runs (server-time stamps and the random prefix of private
msgids aside), and the count says which lines took the fast path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from irc_support import Client, Network
from sockhub.codec.irc import MAX_BODY
from sockhub.doors.irc import channels
from sockhub.doors.irc.commands import COMMANDS
from sockhub.protocols.irc.protocol import CommandSpec

_TIME = re.compile(rb"time=[0-9T:.\-]+Z")
#: Private messages' msgids start with a prefix each service makes up at random.
_PRIVATE_ID = re.compile(rb"msgid=[0-9a-f]+-")

#: Scenario: (network, clients by name) → (client name, line) in order, taken lazily
#: (it may move the clock between lines); a line None sends nothing.
Scenario = Callable[[Network, dict[str, Client]], Iterable[tuple[str, bytes | None]]]


@contextmanager
def privmsg_table(fast: bool, taken: list[str]) -> Iterator[None]:
    """PRIVMSG's row with the fast path counted (``taken``), or without one."""
    def counted(door, target, text, size):  # type: ignore[no-untyped-def]
        taken.append(text)
        channels.privmsg_channel(door, target, text, size)

    row = CommandSpec(channels.cmd_privmsg, 0, fast=counted if fast else None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(COMMANDS, "PRIVMSG", row)
        yield


def run(data_dir: Path, fast: bool, scenario: Scenario,
        **options: object) -> tuple[list[list[bytes]], list[str]]:
    """Every client's output after each line of ``scenario``, and what took the fast path."""
    taken: list[str] = []
    with privmsg_table(fast, taken):
        net = Network(data_dir, **options)
        try:
            clients = {
                # echo-message, labels, tags and time: the richest profile
                "alice": net.register("alice", "echo-message", "labeled-response", "batch",
                                      "message-tags", "server-time", "account-tag"),
                "bob": net.register("bob"),  # no capabilities at all
                "carol": net.register("carol", "server-time", "message-tags"),
            }
            for client in clients.values():
                client.ask("JOIN #room")
            clients["alice"].ask("JOIN #quiet", "MODE #quiet +m", "JOIN #noctcp",
                                 "MODE #noctcp +C")
            clients["bob"].ask("JOIN #quiet", "JOIN #noctcp")
            clients["carol"].ask("JOIN #outside")
            for client in clients.values():
                client.take()
            clients["lurker"] = net.connect()  # never registers
            outputs = []
            for name, line in scenario(net, clients):
                if line is not None:
                    clients[name].send(line + b"\r\n")
                outputs.append([_PRIVATE_ID.sub(b"msgid=P-", _TIME.sub(b"time=T", c.take_raw()))
                                for c in clients.values()])
            return outputs, taken
        finally:
            net.close()


def same_on_both_paths(tmp_path: Path, scenario: Scenario,
                       **options: object) -> tuple[list[list[bytes]], list[str]]:
    fast, taken = run(tmp_path / "fast", True, scenario, **options)
    general, never = run(tmp_path / "general", False, scenario, **options)
    assert never == []
    assert len(fast) == len(general)
    for i, (got, want) in enumerate(zip(fast, general, strict=True)):
        assert got == want, f"line {i}"
    return fast, taken


UNICODE = "\u00fcn\u00efc\u00f6d\u00e9 \u2713"
CONTROLS = "\x02bold\x02 \x1b[31m and a bell \x07"  # formatting, an escape, a bell
#: Lines the fast path takes, with the text its handler gets.
TAKEN = [
    (b"PRIVMSG #room :hello", "hello"),
    (b"PRIVMSG #ROOM :case-folded channel", "case-folded channel"),
    (b"PRIVMSG #room :with: colons  and spaces ", "with: colons  and spaces "),
    (b"PRIVMSG #room :" + UNICODE.encode(), UNICODE),
    (b"PRIVMSG #room :" + CONTROLS.encode(), CONTROLS),  # made visible by the hub
    (b"PRIVMSG #room :   ", "   "),  # spaces only: the hub's refusal
    (b"PRIVMSG #nosuch :no such channel", "no such channel"),  # 401
    (b"PRIVMSG #outside :not a member, +n", "not a member, +n"),  # 404
    (b"PRIVMSG #quiet :moderated, no voice", "moderated, no voice"),  # alice is op: passes
    (b"PRIVMSG # :a bare hash", "a bare hash"),
    # alice's relayed line, ":alice!alice@127.0.0.1 " + this + CR LF: 512 bytes, then 513 (417)
    (b"PRIVMSG #room :" + b"y" * 472, "y" * 472),
    (b"PRIVMSG #room :" + b"y" * 473, "y" * 473),
]

#: Lines the fast path must leave to the general path.
LEFT = [
    b"@+draft/reply=1 PRIVMSG #room :client tags",
    b"@label=l1 PRIVMSG #room :labeled",
    b"@label=l2 PRIVMSG #nosuch :labeled refusal",
    b"PRIVMSG #room,#outside :two targets",
    b"PRIVMSG #room,bob :a channel and a nick",
    b"NOTICE #room :a notice",
    b"NOTICE #nosuch :a notice nobody gets",
    b"PRIVMSG #room :\x01ACTION waves\x01",
    b"PRIVMSG #noctcp :\x01VERSION\x01",  # +C refuses CTCP but ACTION
    b"PRIVMSG #noctcp :\x01ACTION may\x01",
    b"PRIVMSG #room :bad \xff\xfe utf-8",
    b"PRIVMSG #room :nul \x00 byte",
    b"PRIVMSG #room :" + b"z" * MAX_BODY,  # over 512 as received
    b"PRIVMSG #room :" + b"w" * 9000,  # past the framer's limit
    b"PRIVMSG #room middle",
    b"PRIVMSG #room :",
    b"PRIVMSG #room",
    b"privmsg #room :lower case",
    b":alice PRIVMSG #room :with a source",
    b"PRIVMSG  #room :two spaces",
    b"PRIVMSG #room  :two spaces before the colon",
    b"PRIVMSG bob :a private message",
]


def test_lines_it_takes_are_answered_as_by_the_general_path(tmp_path):
    def scenario(net, clients):
        lines = [("alice", line) for line, _ in TAKEN]
        lines += [("bob", line) for line, _ in TAKEN]  # no echo-message, no tags
        lines += [("bob", b"PRIVMSG #quiet :moderated, no voice")]  # 404
        return lines

    outputs, taken = same_on_both_paths(tmp_path, scenario)
    texts = [text for _, text in TAKEN]
    assert taken == texts + texts + ["moderated, no voice"]
    first = outputs[0]
    assert first[0].endswith(b"PRIVMSG #room :hello\r\n")  # alice's echo, tagged
    assert first[0].startswith(b"@") and b";msgid=" in first[0]
    assert first[1] == b":alice!alice@127.0.0.1 PRIVMSG #room :hello\r\n"
    assert first[2].startswith(b"@time=T;msgid=")
    assert first[3] == b""  # the lurker is in no channel
    assert b" 401 alice #nosuch " in outputs[6][0]
    assert b" 404 alice #outside " in outputs[7][0]
    assert outputs[len(TAKEN) - 2][1].endswith(b"y" * 472 + b"\r\n")
    assert len(outputs[len(TAKEN) - 2][1]) == MAX_BODY + 2
    assert b" 417 alice " in outputs[len(TAKEN) - 1][0] and outputs[len(TAKEN) - 1][1] == b""
    assert b" 404 bob #quiet " in outputs[-1][1]


def test_lines_it_must_not_take_are_left_to_the_general_path(tmp_path):
    def scenario(net, clients):
        return [("alice", line) for line in LEFT] + [("bob", line) for line in LEFT]

    outputs, taken = same_on_both_paths(tmp_path, scenario)
    assert taken == []
    answers = [out[0] for out in outputs[: len(LEFT)]]
    assert answers[1].startswith(b"@label=l1;")  # one labeled line: the echo
    assert b"FAIL PRIVMSG INVALID_UTF8" in answers[10]
    assert b" 400 alice " in answers[11]
    assert b" 417 alice " in answers[12] and b" 417 alice " in answers[13]
    assert b" 412 alice " in answers[15] and b" 412 alice " in answers[16]


def test_before_registration_it_is_451_as_before(tmp_path):
    def scenario(net, clients):
        return [("lurker", b"PRIVMSG #room :too soon"), ("lurker", b"NICK lurker"),
                ("lurker", b"PRIVMSG #room :still too soon")]

    outputs, taken = same_on_both_paths(tmp_path, scenario)
    assert taken == []
    assert b" 451 " in outputs[0][3]


def test_flood_control_charges_it_as_before(tmp_path):
    """Bob sends twenty lines at once, allowed a burst of five (RFC 1459 §8.10):
    the others see them paced out at one a second, on both paths alike."""
    def scenario(net, clients):
        net.clock.advance(60)  # registration and joins paid off
        yield "bob", b"\r\n".join(b"PRIVMSG #room :flood %d" % i for i in range(20))
        for _ in range(25):
            net.clock.advance(1.0)
            yield "bob", None

    outputs, taken = same_on_both_paths(tmp_path, scenario, flood_rate=1.0, flood_burst=5)
    assert taken == [f"flood {i}" for i in range(20)]
    carol = [out[2].count(b"PRIVMSG #room :flood") for out in outputs]
    assert 4 <= carol[0] <= 6 and sum(carol) == 20 and max(carol[1:]) == 1
