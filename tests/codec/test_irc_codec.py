"""IRC message codec: framing, parsing and serializing, bytes only; property-tested."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import split_at_every_byte
from sockhub.codec.irc import (
    MAX_BODY,
    MAX_CLIENT_TAG_DATA,
    MAX_LINE,
    OVERLONG,
    IrcDecodeError,
    IrcFramer,
    IrcInputTooLong,
    IrcMessage,
    IrcSyntaxError,
    escape_tag_value,
    format_time,
    parse_message,
    parse_time,
    serialize,
    split_utf8,
    unescape_tag_value,
)

# Parsing (Modern IRC, "Message Format"; the examples are the document's) ------------


@pytest.mark.parametrize(
    ("line", "command", "params", "source", "tags"),
    [
        (b":irc.example.com CAP LS * :multi-prefix extended-join sasl", "CAP",
         ("LS", "*", "multi-prefix extended-join sasl"), "irc.example.com", {}),
        (b"@id=234AB :dan!d@localhost PRIVMSG #chan :Hey what's up!", "PRIVMSG",
         ("#chan", "Hey what's up!"), "dan!d@localhost", {"id": "234AB"}),
        (b"CAP REQ :sasl", "CAP", ("REQ", "sasl"), None, {}),
        (b":irc.example.com CAP * LIST :", "CAP", ("*", "LIST", ""), "irc.example.com", {}),
        (b"CAP * LS :multi-prefix sasl", "CAP", ("*", "LS", "multi-prefix sasl"), None, {}),
        (b":dan!d@localhost PRIVMSG #chan Hey!", "PRIVMSG", ("#chan", "Hey!"),
         "dan!d@localhost", {}),
        (b":dan!d@localhost PRIVMSG #chan ::-)", "PRIVMSG", ("#chan", ":-)"),
         "dan!d@localhost", {}),
        (b"@id=123AB;rose PING x", "PING", ("x",), None, {"id": "123AB", "rose": ""}),
        (b"@url=;netsplit=tur,ty PING x", "PING", ("x",), None,
         {"url": "", "netsplit": "tur,ty"}),
        (b"privmsg   bob    :spaced   text ", "PRIVMSG", ("bob", "spaced   text "), None, {}),
        (b"NICK", "NICK", (), None, {}),
        (b"USER u 0 * :", "USER", ("u", "0", "*", ""), None, {}),
        (b"@+example=raw+:=,escaped\\:\\s\\\\ NOTICE #c :m", "NOTICE", ("#c", "m"), None,
         {"+example": "raw+:=,escaped; \\"}),
        (b"@a=1;a=2;bad/;=x PING y", "PING", ("y",), None, {"a": "2"}),
        ("PRIVMSG #ü :grüße".encode(), "PRIVMSG", ("#ü", "grüße"), None, {}),
    ],
)
def test_parse(line, command, params, source, tags):
    message = parse_message(line)
    assert message == IrcMessage(command, params, source, tags)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"PRIVMSG #c :" + b"x" * (MAX_BODY - 11), IrcInputTooLong),
        (b"@" + b"t" * (MAX_CLIENT_TAG_DATA + 1) + b" PING x", IrcInputTooLong),
        (b"PRIVMSG bob :caf\xe9", IrcDecodeError),
        (b"@t=\xff PING x", IrcDecodeError),
        (b"PING a\x00b", IrcSyntaxError),
        (b"@tags-only", IrcSyntaxError),
        (b":source-only", IrcSyntaxError),
        (b"   ", IrcSyntaxError),
    ],
)
def test_parse_refuses(line, error):
    with pytest.raises(error):
        parse_message(line)


def test_limits_are_exactly_those_of_the_specifications():
    body = b"PRIVMSG #c :" + b"x" * (MAX_BODY - 12)
    assert len(body) == 510 and parse_message(body).params[1] == "x" * 498
    tags = b"@" + b"t" * MAX_CLIENT_TAG_DATA + b" " + body
    assert parse_message(tags).tags == {"t" * MAX_CLIENT_TAG_DATA: ""}


def test_invalid_utf8_reports_the_command():
    with pytest.raises(IrcDecodeError) as exc:
        parse_message(b":x PRIVMSG bob :\xff")
    assert exc.value.command == "PRIVMSG"


# Serializing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "wire"),
    [
        (("PRIVMSG", ("#chan", "hi")), {"source": "a!b@c"}, b":a!b@c PRIVMSG #chan :hi\r\n"),
        (("JOIN", ("#chan",)), {"source": "a!b@c"}, b":a!b@c JOIN #chan\r\n"),
        (("MODE", ("#c", "+o", "bob")), {}, b"MODE #c +o bob\r\n"),
        (("MODE", ("#c", "+k", ":odd")), {}, b"MODE #c +k ::odd\r\n"),
        (("001", ("bob", "Welcome")), {"source": "s"}, b":s 001 bob :Welcome\r\n"),
        (("QUIT", ("",)), {}, b"QUIT :\r\n"),
        (("PART", ("#c",)), {}, b"PART #c\r\n"),
        (("PING", ("x",)), {"tags": {"time": "t", "+a": "b c;d"}},
         b"@time=t;+a=b\\sc\\:d PING x\r\n"),
        (("403", ("bob", "#with space", "No such channel")), {},
         b"403 bob #with_space :No such channel\r\n"),
        (("PRIVMSG", ("bob", "inject\r\nQUIT")), {}, b"PRIVMSG bob :inject  QUIT\r\n"),
    ],
)
def test_serialize(args, kwargs, wire):
    assert serialize(*args, **kwargs) == wire


def test_serialize_cuts_long_text_to_512_bytes_on_a_character_boundary():
    wire = serialize("TOPIC", ("#c", "é" * 400), source="nick!user@host", tags={"time": "t"})
    body = wire.split(b" ", 1)[1]
    assert len(body) <= 512 and body.endswith(b"\r\n")
    topic = parse_message(wire[:-2]).params[1]
    assert topic == "é" * len(topic) and 200 < len(topic) < 250


# Framing ---------------------------------------------------------------------------------


def test_framer_splits_crlf_and_lf_at_every_byte():
    stream = b"NICK a\r\nUSER a 0 * :A\nPING x\r\n\r\npartial"
    for chunks in split_at_every_byte(stream):
        framer = IrcFramer()
        lines = [line for chunk in chunks for line in framer.feed(chunk)]
        assert lines == [b"NICK a", b"USER a 0 * :A", b"PING x", b""]
        assert framer.buffered == len(b"partial")


def test_framer_discards_overlong_lines_and_recovers():
    framer = IrcFramer(max_line=10)
    assert framer.feed(b"x" * 11 + b"\r\nPING a\r\n") == [OVERLONG, b"PING a"]
    assert framer.feed(b"y" * 50) == []
    assert framer.buffered == 0  # nothing over the limit is kept
    assert framer.feed(b"y" * 5000) == []
    assert framer.feed(b"yy\r\nPING b\r\n") == [OVERLONG, b"PING b"]
    assert IrcFramer().max_line == MAX_LINE


def test_framer_idle_holds_no_buffer_of_its_own():
    """Idle, a framer keeps the one shared empty bytes (issue 16: 56 B a client).

    Every idle framer holds the same object; a bytearray each would not be.
    """
    shared = IrcFramer()._buffer
    framer = IrcFramer()
    assert framer._buffer is shared and framer.buffered == 0
    assert framer.feed(b"PRIV") == []  # its first bytes: a part line is kept
    assert framer.buffered == 4
    assert framer.feed(b"MSG #a :hi") == []
    assert framer.buffered == len(b"PRIVMSG #a :hi")
    assert framer.feed(b"\r") == []  # the CR waits for its LF
    assert framer.feed(b"\nPING x\r\n") == [b"PRIVMSG #a :hi", b"PING x"]
    assert framer._buffer is shared and framer.buffered == 0  # drained: shared again
    data = b"NICK a\r\nUSER"
    assert framer.feed(data) == [b"NICK a"]
    assert data == b"NICK a\r\nUSER"  # what was read is never changed
    assert framer.feed(b" a 0 * :A\n") == [b"USER a 0 * :A"]
    assert framer._buffer is shared
    framer = IrcFramer(max_line=4)
    assert framer.feed(b"toolong") == [] and framer._buffer is shared  # discarding keeps nothing


# Properties (Hypothesis) ---------------------------------------------------------------------

_middle = st.text(
    st.characters(blacklist_characters=" \r\n\0:", blacklist_categories=("Cs",)),
    min_size=1, max_size=20,
)
_trailing = st.text(st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)),
                    max_size=60)
_command = st.from_regex(r"[A-Z]{1,10}|[0-9]{3}", fullmatch=True)
_tag_key = st.from_regex(r"\+?([a-z0-9]{1,8}\.[a-z]{2,4}/)?[A-Za-z0-9-]{1,12}", fullmatch=True)
_tag_value = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
                     max_size=20)


@given(
    command=_command,
    middles=st.lists(_middle, max_size=5),
    trailing=st.none() | _trailing,
    tags=st.dictionaries(_tag_key, _tag_value, max_size=4),
)
def test_serialize_then_parse_round_trips(command, middles, trailing, tags):
    params = tuple(middles) + ((trailing,) if trailing is not None else ())
    wire = serialize(command, params, source="nick!user@host", tags=tags)
    assert wire.endswith(b"\r\n") and wire.count(b"\n") == 1
    message = parse_message(wire[:-2])
    assert message.command == command
    assert message.params == params
    assert message.source == "nick!user@host"
    assert dict(message.tags) == tags


@given(st.binary(max_size=600))
def test_parse_never_fails_unexpectedly(data):
    line = data.replace(b"\n", b" ").replace(b"\r", b" ")
    try:
        message = parse_message(line)
    except (IrcInputTooLong, IrcDecodeError, IrcSyntaxError):
        return
    assert message.command == message.command.upper()
    assert all("\r" not in p and "\n" not in p and "\0" not in p for p in message.params)


@given(st.lists(st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")), max_size=8),
       st.data())
def test_any_split_gives_the_same_lines(lines, data):
    stream = b"".join(line + b"\r\n" for line in lines)
    points = data.draw(st.lists(st.integers(0, max(len(stream), 1)), max_size=6))
    bounds = [0, *sorted(points), len(stream)]
    framer = IrcFramer()
    got = [x for a, b in itertools.pairwise(bounds) for x in framer.feed(stream[a:b])]
    assert got == lines  # exactly one CR before each LF belongs to the ending


@given(st.text(max_size=40))
def test_tag_escaping_round_trips(value):
    escaped = escape_tag_value(value)
    assert not any(c in escaped for c in "; \r\n")
    assert unescape_tag_value(escaped) == value


@given(st.text(min_size=0, max_size=3000), st.integers(4, 500))
def test_split_utf8_keeps_every_character_within_the_budget(text, budget):
    pieces = split_utf8(text, budget)
    assert "".join(pieces) == text
    assert all(len(p.encode()) <= budget for p in pieces)


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_server_time_never_names_a_later_instant(ts):
    text = format_time(ts)
    assert len(text) == 24 and text.endswith("Z")
    back = parse_time(text)
    assert back is not None and back <= ts + 1e-6 and ts - back < 0.001 + 1e-6


def test_unescape_edge_cases():
    assert unescape_tag_value("test\\") == "test"
    assert unescape_tag_value("a\\bc") == "abc"
    assert parse_time("not a time") is None and parse_time("2020-01-01T00:00:00Z") is not None


def _reference_lines(stream: bytes, max_line: int) -> list[bytes | object]:
    """What a framer must give for the whole of ``stream``, read at once."""
    out: list[bytes | object] = []
    for line in stream.split(b"\n")[:-1]:
        line = line[:-1] if line.endswith(b"\r") else line
        out.append(OVERLONG if len(line) > max_line else line)
    return out


@given(st.lists(st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\r\n", b"x" * 13, b"y" * 40]),
                max_size=40),
       st.integers(min_value=1, max_value=30), st.lists(st.integers(1, 25), max_size=40))
def test_framer_is_the_reference_at_any_cut(parts, max_line, cuts):
    stream = b"".join(parts)
    framer = IrcFramer(max_line=max_line)
    got: list[bytes | object] = []
    pos = 0
    for n in [*cuts, len(stream)]:
        got += framer.feed(stream[pos : pos + n])
        pos += n
        assert framer.buffered <= max_line + 1
    got += framer.feed(stream[pos:])
    assert got == _reference_lines(stream, max_line)
