"""The chat line format: parsing commands and rendering events, no network."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockhub.codec.lines import encode_line
from sockhub.hub.events import (
    AwayChanged,
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
from sockhub.hub.names import CONTROLS
from sockhub.protocols.chat_line import (
    COMMANDS,
    Command,
    CommandError,
    help_lines,
    parse_line,
    render,
    visible,
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
        # Private actions read as room ones do; CTCP never shows as raw \x01.
        (Private("alice", "bob", "waves", TS, True), "bob", "03:01:33 [pm] ** alice waves"),
        (Private("alice", "bob", "\x01PING 1\x01", TS), "bob",
         "03:01:33 [ctcp] alice sent CTCP PING; the server answered for you"),
        (Private("alice", "bob", "\x01dcc SEND f 1 2", TS), "bob",
         "03:01:33 [ctcp] alice sent CTCP DCC; not answered"),
        (Private("alice", "bob", "\x01VERSION irssi\x01", TS, notice=True), "bob",
         "03:01:33 [ctcp reply] alice: VERSION irssi"),
        (Private("alice", "bob", "\x01TIME\x01", TS), "alice", "03:01:33 [ctcp to bob] TIME"),
        (Private("alice", "bob", "\x01", TS), "bob", "03:01:33 [pm] <alice> ^A"),
        (Message("#lobby", "alice", "\x01VERSION\x01", TS), "",
         "03:01:33 #lobby * alice sent a CTCP VERSION request to the room"),
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


# Control characters (issue 8: terminal injection) -------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, é and 日本", "plain text, é and 日本"),
        ("\x1b[2J\x1b]0;pwned\x07", "^[[2J^[]0;pwned^G"),  # clear screen, retitle, bell
        ("nul\x00 del\x7f cr\rlf\n", "nul^@ del^? cr^Mlf^J"),
        ("csi\x9b2J nel\x85", "csiM-^[2J nelM-^E"),  # C1, as an 8-bit terminal reads it
        ("tab\there", "tab here"),
        (
            "\x0304,01red\x03 \x02bold\x02 \x1ditalic\x1d \x1funder\x1f \x0fplain",
            "red bold italic under plain",
        ),
        ("\x04FF8800hex\x04 \x11mono\x11 \x16rev\x16 \x1estrike\x1e", "hex mono rev strike"),
        ("\x0312345", "345"),  # a colour takes two digits at most (Modern IRC)
        ("\x033,x", ",x"),  # a comma without a digit after it is text
        ("\x01ACTION waves\x01", "^AACTION waves^A"),  # CTCP is shown, not obeyed
    ],
)
def test_visible_shows_controls_as_cat_v_does_and_hides_irc_formatting(text, shown):
    assert visible(text) == shown


# Any text, with control characters (and IRC formatting digits) made frequent.
_TEXT = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(CONTROLS + "0123456789,")),
    max_size=200,
)


@given(_TEXT)
def test_visible_output_never_holds_a_control_character(text):
    line = encode_line(visible(text))
    body, end = line[:-2], line[-2:]
    assert end == b"\r\n"
    assert all(byte >= 0x20 and byte != 0x7F for byte in body)  # no C0 but the line end, no DEL
    assert not any(0x80 <= ord(char) <= 0x9F for char in body.decode())  # no C1


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (Message("#dev", "bob", "\x1b[2Jhi\x07", TS), "03:01:33 #dev <bob> ^[[2Jhi^G"),
        (
            Message("#dev", "bob", "\x1b]0;x\x07", TS, history=True),
            "[history] 2025-11-22 03:01:33 #dev <bob> ^[]0;x^G",
        ),
        (Private("alice", "bob", "\x00\x7f", TS), "03:01:33 [pm] <alice> ^@^?"),
        (TopicChanged("#dev", "bob", "\x1b[5m", TS), "03:01:33 #dev * bob set the topic: ^[[5m"),
        (Quit("bob", "\x9b31m", TS), "03:01:33 * bob quit (M-^[31m)"),
        (Parted("#dev", "bob", "\x07", TS), "03:01:33 #dev * bob left (^G)"),
        (AwayChanged("bob", "\x1b[8m", TS), "03:01:33 * bob is away: ^[[8m"),
    ],
)
def test_render_makes_every_user_string_visible(event, line):
    assert render(event, "bob") == line


def test_clock_formats_each_second_as_datetime_does():
    """chat_line.clock keeps the last second's text (issue 16): never a stale one."""
    from datetime import UTC, datetime

    from sockhub.protocols.chat_line import clock

    seconds = [TS, TS + 0.999, TS + 1.0, TS + 0.5, TS + 86_399.25, 0.0, TS, TS + 59.5]
    for ts in seconds + seconds[::-1]:
        assert clock(ts) == datetime.fromtimestamp(int(ts), UTC).strftime("%H:%M:%S")
    assert render(Message("#r", "ann", "hi", TS + 1.0), "") == "03:01:34 #r <ann> hi"
