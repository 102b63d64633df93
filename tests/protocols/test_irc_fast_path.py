"""The IRC protocol's PRIVMSG #channel fast path and the one-go rendering of room messages.

Both exist for speed only (issue 16), so each is held to what the general
path does: the same events for the lines it takes (and the general events for
the lines it must not take), the same flood charge, the same bytes out.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockhub.codec.irc import MAX_BODY, Overlong
from sockhub.doors.irc.channels import cmd_privmsg, privmsg_channel
from sockhub.doors.irc.commands import COMMANDS
from sockhub.hub.events import Message
from sockhub.protocols.irc.protocol import (
    ChannelText,
    CommandReceived,
    CommandSpec,
    IrcEvent,
    IrcProtocol,
    IrcState,
    Refused,
    Undecodable,
)
from sockhub.protocols.irc.vocabulary import (
    ACCOUNT_TAG,
    EXTENDED_JOIN,
    MESSAGE_TAGS,
    SERVER_TIME,
    event_tags,
    render_event,
    render_message,
    render_text,
)

#: The table without the fast path: every line goes the general way.
GENERAL = {**COMMANDS, "PRIVMSG": CommandSpec(cmd_privmsg, 0)}


def protocol(commands: dict[str, CommandSpec] = COMMANDS, *,
             registered: bool = True) -> IrcProtocol:
    irc = IrcProtocol(commands, flood_rate=2.0, flood_burst=1000, now=0.0)
    if registered:
        irc.complete_registration()
    return irc


def events(irc: IrcProtocol, line: bytes) -> list[IrcEvent]:
    assert irc.receive_data(line + b"\r\n")
    out = []
    while (event := irc.next_event(0.0)) is not None:
        out.append(event)
    return out


def comparable(events: list[IrcEvent]) -> list[object]:
    """Events with a command's spec reduced to its handler (the tables differ in ``fast``)."""
    return [(e.message, e.spec.handler) if isinstance(e, CommandReceived) else e
            for e in events]


def general_twin(line: bytes, *, registered: bool = True) -> tuple[list[IrcEvent], float]:
    irc = protocol(GENERAL, registered=registered)
    return events(irc, line), irc.penalty_at


@pytest.mark.parametrize(("line", "target", "text"), [
    (b"PRIVMSG #room :hello", "#room", "hello"),
    (b"PRIVMSG #room :with: colons  and spaces ", "#room", "with: colons  and spaces "),
    (b"PRIVMSG #room ::starts with a colon", "#room", ":starts with a colon"),
    (b"PRIVMSG #room :x :y", "#room", "x :y"),
    ("PRIVMSG #sal\u00e9 :\u00fcn\u00efc\u00f6d\u00e9 \u2713".encode(), "#sal\u00e9",
     "\u00fcn\u00efc\u00f6d\u00e9 \u2713"),
    (b"PRIVMSG #room :\x02bold\x02 \x07bell\r", "#room", "\x02bold\x02 \x07bell\r"),
    (b"PRIVMSG # :bare hash", "#", "bare hash"),  # the hub refuses the name, as before
    (b"PRIVMSG #room : ", "#room", " "),  # the hub's "nothing to send", as before
])
def test_the_plain_shape_is_read_as_the_general_parser_reads_it(line, target, text):
    irc = protocol()
    (event,) = events(irc, line)
    assert type(event) is ChannelText
    assert (event.target, event.text, event.size) == (target, text, len(line))
    assert event.spec is COMMANDS["PRIVMSG"]
    (general,), penalty = general_twin(line)
    assert isinstance(general, CommandReceived)
    assert general.message.command == "PRIVMSG"
    assert general.message.params == (target, text)
    assert not general.message.tags and general.message.source is None
    assert irc.penalty_at == penalty  # the same flood charge


@pytest.mark.parametrize("line", [
    b"@+draft/reply=1 PRIVMSG #room :tagged",  # message-tags: client tags travel with it
    b"@label=abc PRIVMSG #room :labeled",  # labeled-response
    b"PRIVMSG #room,#other :two targets",
    b"PRIVMSG #room,bob :a channel and a nick",
    b"NOTICE #room :a notice",
    b"PRIVMSG #room :\x01ACTION waves\x01",  # CTCP ACTION
    b"PRIVMSG #room :\x01VERSION\x01",  # a CTCP request (+C refuses it)
    b"PRIVMSG #room :bad \xff\xfe utf-8",  # UTF8ONLY: FAIL INVALID_UTF8
    b"PRIVMSG #room :nul \x00 byte",  # 400
    b"PRIVMSG #room :" + b"x" * (MAX_BODY - 14),  # 511 bytes: 417
    b"PRIVMSG #room middle",  # no ':': a middle parameter
    b"PRIVMSG #room :",  # 412
    b"PRIVMSG #room",  # 412
    b"PRIVMSG #room ",
    b"privmsg #room :lower case",
    b":alice PRIVMSG #room :with a source",
    b"PRIVMSG  #room :two spaces",
    b"PRIVMSG #room  :two spaces before the colon",
    b"PRIVMSG bob :to a nick",
    b"PRIVMSG #",
])
def test_lines_it_must_not_take_get_the_general_events(line):
    irc = protocol()
    got = events(irc, line)
    want, penalty = general_twin(line)
    assert not any(type(event) is ChannelText for event in got)
    assert comparable(got) == comparable(want)
    assert irc.penalty_at == penalty


def test_the_longest_line_it_takes_and_the_first_it_leaves():
    head = b"PRIVMSG #room :"
    longest = head + b"x" * (MAX_BODY - len(head))
    (event,) = events(protocol(), longest)
    assert type(event) is ChannelText and event.size == MAX_BODY
    (refused,) = events(protocol(), longest + b"x")
    assert isinstance(refused, Refused) and refused.numeric == "417"


def test_before_registration_it_is_the_general_451():
    irc = protocol(registered=False)
    assert irc.state is IrcState.REGISTERING
    got = events(irc, b"PRIVMSG #room :too soon")
    want, _ = general_twin(b"PRIVMSG #room :too soon", registered=False)
    assert comparable(got) == comparable(want)
    assert isinstance(got[0], Refused) and got[0].numeric == "451"


def test_a_table_without_a_fast_handler_gets_the_general_event():
    (event,) = events(protocol(GENERAL), b"PRIVMSG #room :hello")
    assert isinstance(event, CommandReceived)
    assert COMMANDS["PRIVMSG"].fast is privmsg_channel


def test_undecodable_and_overlong_are_as_before():
    (bad,) = events(protocol(), b"PRIVMSG #room :\xc3")
    assert bad == Undecodable("PRIVMSG")
    irc = protocol()
    irc.receive_data(b"PRIVMSG #room :" + b"x" * 9000 + b"\r\n")
    assert all(isinstance(item, Overlong) for item in irc.pending)
    (event,) = list(iter(lambda: irc.next_event(0.0), None))
    assert isinstance(event, Refused) and event.numeric == "417"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80).map(lambda tail: b"PRIVMSG #" + tail))
def test_fuzz_any_line_gets_the_general_events_or_the_same_params(line):
    line = line.replace(b"\n", b"").replace(b"\r", b"")
    irc = protocol()
    got = events(irc, line) if line.strip(b" ") else []
    want, penalty = general_twin(line) if line.strip(b" ") else ([], 0.0)
    assert irc.penalty_at == penalty
    if got and type(got[0]) is ChannelText:
        (general,) = want
        assert isinstance(general, CommandReceived)
        assert general.message.params == (got[0].target, got[0].text)
        assert not general.message.tags and general.message.source is None
    else:
        assert comparable(got) == comparable(want)


# Rendering ------------------------------------------------------------------------

def general_render(event: Message, source: str, profile: int, *, account: str | None,
                   bot: bool) -> bytes:
    """render_event's room-message branch as it was before render_message."""
    tags = event_tags(event.ts, profile, msgid=event.id, meta=event.meta, account=account,
                      bot=bot)
    command = "NOTICE" if event.notice else "PRIVMSG"
    return render_text(command, source, event.room, event.text, action=event.action,
                       tags=tags)


PROFILES = [0, SERVER_TIME, MESSAGE_TAGS, ACCOUNT_TAG, EXTENDED_JOIN,
            SERVER_TIME | MESSAGE_TAGS | ACCOUNT_TAG | EXTENDED_JOIN]
SOURCE = "alice!al@127.0.0.1"


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("event", [
    Message("#room", "alice", "hello", 1_700_000_000.25, id=7),
    Message("#room", "alice", "waves", 1_700_000_000.25, True, id=8),
    Message("#room", "alice", "a notice", 1_700_000_000.25, id=9, notice=True),
    Message("#room", "alice", "\u00e9" * 300, 1_700_000_000.25, id=10),  # split: 600 bytes
    Message("#room", "alice", "x" * (MAX_BODY - len(f":{SOURCE} PRIVMSG #room :")), 1.5, id=11),
    Message("#room", "alice", "x" * (MAX_BODY + 1 - len(f":{SOURCE} PRIVMSG #room :")), 1.5),
    Message("#room", "alice", "cr\rlf\nnul\0", 1.5, id=12),  # blanked by serialize
    Message("#room", "alice", "meta", 1.5, id=13, meta=(("+draft/reply", "a b;c\\"),
                                                          ("+x", ""), ("+nul", "a\0b"))),
    Message("", "alice", "no room", 1.5),
    Message("#two words", "alice", "a spaced room", 1.5),
    Message(":room", "alice", "a colon room", 1.5),
])
@pytest.mark.parametrize(("account", "bot"), [(None, False), ("acct", True)])
def test_render_message_is_the_general_rendering(event, profile, account, bot):
    got = render_message(event, SOURCE, profile, account=account, bot=bot)
    assert got == general_render(event, SOURCE, profile, account=account, bot=bot)
    assert got == render_event(event, SOURCE, profile, account=account, bot=bot)


@settings(max_examples=300, deadline=None)
@given(text=st.text(min_size=1, max_size=600), room=st.text(min_size=0, max_size=12),
       action=st.booleans(), profile=st.sampled_from(PROFILES),
       source=st.sampled_from([SOURCE, "", "x" * 500, "\u00e9!\u00e9@::1"]))
def test_fuzz_render_message_is_the_general_rendering(text, room, action, profile, source):
    event = Message(room, "alice", text, 1.5, action, id=3, meta=(("+k", text[:20]),))
    assert render_message(event, source, profile, account="a", bot=True) == \
        general_render(event, source, profile, account="a", bot=True)
