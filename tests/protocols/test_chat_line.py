"""The chat line format: parsing commands and rendering events, no network."""

from __future__ import annotations

import pytest

from sockhub.hub.events import (
    BanChanged,
    Joined,
    Kicked,
    Message,
    NickChanged,
    Parted,
    Private,
    Quit,
    TopicChanged,
)
from sockhub.protocols.chat_line import (
    COMMANDS,
    Command,
    CommandError,
    help_lines,
    parse_line,
    render,
)

TS = 1_763_780_493.0  # 2025-11-22 03:01:33 UTC


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello there", Command("say", ("hello there",))),
        ("", Command("say", ("",))),
        ("//slash at start", Command("say", ("/slash at start",))),
        ("/nick alice", Command("nick", ("alice",))),
        ("/NICK alice", Command("nick", ("alice",))),
        ("/join #dev", Command("join", ("#dev",))),
        ("/msg bob hi  there", Command("msg", ("bob", "hi  there"))),
        ("/me waves  twice", Command("me", ("waves  twice",))),
        ("/part", Command("part", ())),
        ("/part #dev see you", Command("part", ("#dev", "see you"))),
        ("/topic #dev new topic here", Command("topic", ("#dev", "new topic here"))),
        ("/quit gone fishing", Command("quit", ("gone fishing",))),
        ("/kick #dev bob too loud", Command("kick", ("#dev", "bob", "too loud"))),
        ("/history 10", Command("history", ("10",))),
        ("/rooms   ", Command("rooms", ())),
    ],
)
def test_parse_line(line, command):
    assert parse_line(line) == command


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/bogus", "unknown command /bogus; /help lists commands"),
        ("/nick", "usage: /nick NAME"),
        ("/nick a b", "usage: /nick NAME"),
        ("/join", "usage: /join #ROOM [PASSWORD]"),
        ("/msg bob", "usage: /msg NICK TEXT"),
        ("/rooms extra", "usage: /rooms"),
        ("/oper name", "usage: /oper NAME PASSWORD"),
    ],
)
def test_parse_errors(line, message):
    with pytest.raises(CommandError) as exc:
        parse_line(line)
    assert str(exc.value) == message


def test_help_lists_every_command():
    text = "\n".join(help_lines())
    for name in COMMANDS:
        assert f"/{name}" in text
    assert help_lines("join") == [
        "-- /join #ROOM [PASSWORD]: join a room (created if new) and talk there"
    ]
    assert help_lines("/nope")[0].startswith("error:")


@pytest.mark.parametrize(
    ("event", "viewer", "line"),
    [
        (Message("#lobby", "alice", "hi", TS), "", "03:01:33 #lobby <alice> hi"),
        (
            Message("#lobby", "alice", "waves", TS, action=True),
            "",
            "03:01:33 #lobby ** alice waves",
        ),
        (
            Message("#lobby", "alice", "old", TS, history=True),
            "",
            "[history] 2025-11-22 03:01:33 #lobby <alice> old",
        ),
        (Private("alice", "bob", "psst", TS), "bob", "03:01:33 [pm] <alice> psst"),
        (Private("alice", "bob", "psst", TS), "alice", "03:01:33 [pm to bob] <alice> psst"),
        (Joined("#dev", "bob", TS), "", "03:01:33 #dev * bob joined"),
        (Parted("#dev", "bob", "", TS), "", "03:01:33 #dev * bob left"),
        (Parted("#dev", "bob", "lunch", TS), "", "03:01:33 #dev * bob left (lunch)"),
        (Quit("bob", "connection lost", TS), "", "03:01:33 * bob quit (connection lost)"),
        (NickChanged("bob", "rob", TS), "", "03:01:33 * bob is now known as rob"),
        (
            TopicChanged("#dev", "bob", "ship it", TS),
            "",
            "03:01:33 #dev * bob set the topic: ship it",
        ),
        (TopicChanged("#dev", "bob", "", TS), "", "03:01:33 #dev * bob cleared the topic"),
        (
            Kicked("#dev", "bob", "op", "spam", TS),
            "",
            "03:01:33 #dev * bob was kicked by op (spam)",
        ),
        (BanChanged("#dev", "bob", "op", True, TS), "", "03:01:33 #dev * op banned bob"),
    ],
)
def test_render(event, viewer, line):
    assert render(event, viewer) == line
