"""The IRC door's pure vocabulary: modes, capabilities, ISUPPORT, rendering; and a fuzzed door."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irc_support import Network
from sockhub.codec.irc import MAX_BODY, parse_message
from sockhub.doors.irc import INTERNAL_ERROR
from sockhub.doors.irc.commands import COMMANDS
from sockhub.hub.events import (
    BanChanged,
    Joined,
    Kicked,
    Message,
    ModeChange,
    ModeChanged,
    NickChanged,
    Parted,
    Quit,
    TopicChanged,
)
from sockhub.protocols.irc.protocol import Registration
from sockhub.protocols.irc.vocabulary import (
    EXTENDED_JOIN,
    MESSAGE_TAGS,
    SERVER_TIME,
    cap_ls_lines,
    clean_username,
    irc_host,
    isupport_tokens,
    parse_action,
    parse_cap_request,
    parse_modes,
    render_event,
    render_mode_changes,
)

TS = 1_700_000_000.25


def test_parse_modes():
    parsed = parse_modes("+mo-v+kl-n", ["alice", "bob", "key", "10"])
    assert parsed.changes == [
        ModeChange("moderated", True),
        ModeChange("operator", True, "alice"),
        ModeChange("voice", False, "bob"),
        ModeChange("password", True, "key"),
        ModeChange("limit", True, "10"),
        ModeChange("no_external", False),
    ]
    assert not parsed.unknown and not parsed.missing
    listing = parse_modes("b", [])
    assert listing.list_bans and not listing.bans
    bans = parse_modes("+b-b", ["a!*@*", "b!*@*"])
    assert bans.bans == [(True, "a!*@*"), (False, "b!*@*")]
    odd = parse_modes("+xo-lk", [])
    assert odd.unknown == ["x"] and odd.missing == ["o"]
    assert odd.changes == [ModeChange("limit", False), ModeChange("password", False)]
    capped = parse_modes("+oooooooo", [f"n{i}" for i in range(8)])
    assert len(capped.changes) == 6  # ISUPPORT MODES=6


def test_render_mode_changes():
    changes = [ModeChange("moderated", True), ModeChange("operator", True, "bob"),
               ModeChange("password", False), ModeChange("limit", False),
               ModeChange("limit", True, "5")]
    assert render_mode_changes(changes) == ["+mo-kl+l", "bob", "*", "5"]


def test_capability_requests():
    assert parse_cap_request("multi-prefix -server-time") == [("multi-prefix", True),
                                                              ("server-time", False)]
    assert parse_cap_request("multi-prefix bogus") is None
    assert parse_cap_request("") is None
    # 302 clients see values (sasl's mechanisms); older ones the bare names.
    assert cap_ls_lines(301) == [" ".join(cap.split("=")[0]
                                          for cap in cap_ls_lines(302, budget=10_000)[0].split())]
    assert "sasl=PLAIN,SCRAM-SHA-256" in cap_ls_lines(302)[0].split()
    split = cap_ls_lines(302, budget=50)
    assert len(split) > 1 and all(len(line) <= 50 for line in split)


def test_registration_state():
    reg = Registration()
    assert not reg.complete
    reg.nick, reg.username = "a", "a"
    assert reg.complete
    reg.negotiating = True
    assert not reg.complete
    assert clean_username("~we!rd@name that is long") == "~werdnamethatisl"
    assert irc_host("::1") == "0::1" and irc_host("") == "localhost"


def test_command_table_and_isupport():
    assert COMMANDS["USER"].min_params == 4 and COMMANDS["USER"].pre_reg
    assert not COMMANDS["JOIN"].pre_reg and COMMANDS["PONG"].cost == 0
    tokens = isupport_tokens("net")
    assert all(token.isascii() and " " not in token for token in tokens)
    assert all(token.count("=") <= 1 for token in tokens)  # irctest splits on '='
    assert "NETWORK=net" in tokens


def test_parse_action():
    assert parse_action("\x01ACTION waves\x01") == ("waves", True)
    assert parse_action("\x01ACTION waves") == ("waves", True)
    assert parse_action("\x01ACTION\x01") == ("\x01ACTION\x01", False)
    assert parse_action("\x01VERSION\x01") == ("\x01VERSION\x01", False)


@pytest.mark.parametrize(
    ("event", "wire"),
    [
        (Joined("#c", "a", TS), b":a!u@h JOIN #c\r\n"),
        (Parted("#c", "a", "", TS), b":a!u@h PART #c\r\n"),
        (Parted("#c", "a", "bye now", TS), b":a!u@h PART #c :bye now\r\n"),
        (Kicked("#c", "b", "a", "", TS), b":a!u@h KICK #c b :a\r\n"),
        (Quit("a", "Ping timeout: 60 seconds", TS), b":a!u@h QUIT :Ping timeout: 60 seconds\r\n"),
        (Quit("a", "bye", TS, voluntary=True), b":a!u@h QUIT :Quit: bye\r\n"),
        (NickChanged("a", "b", TS), b":a!u@h NICK b\r\n"),
        (TopicChanged("#c", "a", "", TS), b":a!u@h TOPIC #c :\r\n"),
        (BanChanged("#c", "x!*@*", "a", True, TS), b":a!u@h MODE #c +b x!*@*\r\n"),
        (ModeChanged("#c", "a", (ModeChange("voice", True, "b"),), TS),
         b":a!u@h MODE #c +v b\r\n"),
        (Message("#c", "a", "hi", TS, action=True), b":a!u@h PRIVMSG #c :\x01ACTION hi\x01\r\n"),
        (Message("#c", "a", "hi", TS, notice=True), b":a!u@h NOTICE #c :hi\r\n"),
    ],
)
def test_render_event(event, wire):
    assert render_event(event, "a!u@h", 0) == wire


def test_render_profiles():
    message = Message("#c", "a", "hi", TS, id=42, meta=(("+draft/reply", "7"),))
    assert render_event(message, "a!u@h", SERVER_TIME) == (
        b"@time=2023-11-14T22:13:20.250Z :a!u@h PRIVMSG #c :hi\r\n")
    assert render_event(message, "a!u@h", MESSAGE_TAGS) == (
        b"@msgid=42;+draft/reply=7 :a!u@h PRIVMSG #c :hi\r\n")
    joined = render_event(Joined("#c", "a", TS), "a!u@h", EXTENDED_JOIN, realname="Real A")
    assert joined == b":a!u@h JOIN #c * :Real A\r\n"
    long = render_event(Message("#c", "a", "x" * 2000, TS), "a!u@h", 0)
    lines = long.split(b"\r\n")[:-1]
    assert all(len(line) <= MAX_BODY for line in lines) and len(lines) == 5


# A fuzzed door: whatever a client sends, the door answers or ignores, never raises ----------

_words = st.sampled_from(
    ["NICK", "USER", "CAP", "JOIN", "PART", "MODE", "PRIVMSG", "NOTICE", "KICK", "INVITE",
     "TOPIC", "WHO", "WHOIS", "AWAY", "PING", "PONG", "CHATHISTORY", "TAGMSG", "LIST", "NAMES",
     "QUIT", "OPER", "ISON", "USERHOST", "LS", "REQ", "END", "#c", "#d", "a", "b", "+o", "-k",
     "+lk", "*", "0", ":", ":x y", "msgid=1", "LATEST", "timestamp=2020-01-01T00:00:00.000Z",
     "@label=1", "@+t=v", "\x01ACTION", "", "é"])
_line = st.lists(_words, min_size=1, max_size=7).map(lambda ws: " ".join(ws).encode())
_junk = st.binary(max_size=80).map(lambda b: b.replace(b"\n", b""))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_line | _junk, max_size=12), min_size=1, max_size=3))
def test_door_survives_any_command_sequence(tmp_path_factory, scripts):
    net = Network(tmp_path_factory.mktemp("fuzz"))
    try:
        clients = [net.connect() for _ in scripts]
        for i, client in enumerate(clients):
            client.send(b"NICK n%d\r\nUSER u 0 * :U\r\n" % i)
        for client, script in zip(clients, scripts, strict=True):
            client.send(b"".join(line + b"\r\n" for line in script))
            for line in client.take_raw().split(b"\r\n"):
                if line:
                    assert len(line) <= 512 + 8191
                    parse_message(line)  # every reply is itself a valid message
                    assert INTERNAL_ERROR.encode() not in line, line  # no handler failed
            net.clock.advance(1)
    finally:
        net.close()
