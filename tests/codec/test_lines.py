"""LineDecoder, decode_utf8 and encode_line: pure, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import cut, feed_all, split_at_every_byte
from sockhub.codec.lines import DEFAULT_MAX_LINE, LineDecoder, decode_utf8, encode_line
from sockhub.errors import DecodeError, LimitExceeded, LineTooLong, ProtocolError

CR, LF = b"\r", b"\n"


def feed_checked(decoder: LineDecoder, chunks: list[bytes]) -> list[bytes]:
    """Like feed_all, but check the buffering bound after every read."""
    out: list[bytes] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
        if decoder.max_line is not None:
            assert decoder.buffered <= decoder.max_line + 1
    return out


# --- framing, at every split -------------------------------------------------

FRAMING_CASES = [
    (b"a\n", [b"a"]),
    (b"a\r\n", [b"a"]),
    (b"a\rb\n", [b"a\rb"]),  # a lone CR inside a line is content
    (b"\rab\r\n", [b"\rab"]),
    (b"a\r\r\n", [b"a\r"]),  # only the CR right before LF is removed
    (b"\n", [b""]),
    (b"\r\n", [b""]),
    (b"\n\r\n\n", [b"", b"", b""]),
    (b"one\ntwo\r\nthree\n", [b"one", b"two", b"three"]),
    (b"\x00\xff\x80\n", [b"\x00\xff\x80"]),  # binary is fine: decoding is separate
    (b"caf\xc3\xa9\r\n", ["café".encode()]),
]


@pytest.mark.parametrize(("stream", "expected"), FRAMING_CASES)
def test_lines_at_every_split(stream: bytes, expected: list[bytes]) -> None:
    for chunks in split_at_every_byte(stream):
        decoder = LineDecoder()
        assert feed_checked(decoder, chunks) == expected, chunks
        assert decoder.buffered == 0
        assert decoder.flush() is None


def test_partial_line_is_held_until_its_ending() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b"hel") == []
    assert decoder.buffered == 3
    assert decoder.feed(b"lo\r") == []
    assert decoder.buffered == 6
    assert decoder.feed(b"\nwor") == [b"hello"]
    assert decoder.buffered == 3
    assert decoder.feed(b"ld\n") == [b"world"]
    assert decoder.buffered == 0


def test_many_lines_in_one_feed() -> None:
    lines = [b"line %d" % i for i in range(1000)]
    stream = b"".join(line + (LF if i % 2 else CR + LF) for i, line in enumerate(lines))
    decoder = LineDecoder()
    assert decoder.feed(stream + b"partial") == lines
    assert decoder.buffered == len(b"partial")


def test_empty_feed_yields_nothing() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"ab") == []
    assert decoder.feed(b"") == []
    assert decoder.buffered == 2


# --- flush ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "lines", "last"),
    [
        (b"tail", [], b"tail"),
        (b"a\nb", [b"a"], b"b"),
        (b"a\r\nb\r", [b"a"], b"b"),  # a CR at end of stream is an ending's first half
        (b"a\rb", [], b"a\rb"),
        (b"a\n", [b"a"], None),
        (b"", [], None),
    ],
)
def test_flush_returns_unterminated_last_line(
    stream: bytes, lines: list[bytes], last: bytes | None
) -> None:
    for chunks in split_at_every_byte(stream):
        decoder = LineDecoder()
        assert feed_all(decoder, chunks) == lines
        assert decoder.flush() == last
        assert decoder.buffered == 0
        assert decoder.flush() is None


# --- max_line ------------------------------------------------------------------


def test_default_limit() -> None:
    assert LineDecoder().max_line == DEFAULT_MAX_LINE == 64 * 1024


@pytest.mark.parametrize("bad", [0, -1])
def test_max_line_below_one_is_rejected(bad: int) -> None:
    with pytest.raises(ValueError):
        LineDecoder(bad)


@pytest.mark.parametrize("ending", [LF, CR + LF])
def test_line_of_exactly_max_line_is_accepted(ending: bytes) -> None:
    stream = b"abcd" + ending + b"wxyz" + ending
    for chunks in split_at_every_byte(stream):
        decoder = LineDecoder(max_line=4)
        assert feed_checked(decoder, chunks) == [b"abcd", b"wxyz"], chunks


def test_lone_cr_after_max_line_bytes_waits_for_its_lf() -> None:
    decoder = LineDecoder(max_line=4)
    assert decoder.feed(b"abcd") == []
    assert decoder.feed(b"\r") == []  # may be the first half of CRLF
    assert decoder.buffered == 5
    assert decoder.feed(b"\n") == [b"abcd"]
    assert decoder.buffered == 0


def test_lone_cr_after_max_line_bytes_then_eof_flushes_the_line() -> None:
    decoder = LineDecoder(max_line=4)
    assert decoder.feed(b"abcd\r") == []
    assert decoder.flush() == b"abcd"


@pytest.mark.parametrize("follow", [b"x", b"x\n", b"\r\n", b"\r"])
def test_lone_cr_after_max_line_bytes_that_is_content_is_rejected(follow: bytes) -> None:
    # "abcd\r" then anything but LF: the CR was the line's 5th byte.
    decoder = LineDecoder(max_line=4)
    assert decoder.feed(b"abcd\r") == []
    with pytest.raises(LineTooLong):
        decoder.feed(follow)
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    "stream",
    [
        b"ok\nabcde\n",
        b"ok\r\nabcde\r\n",
        b"ok\nabcde",  # partial: refused before its ending arrives
        b"ok\nabcd\rx\n",  # a CR inside the line counts
        b"ok\nabcdefghijklmnopqrstuvwxyz\nmore\n",
    ],
)
def test_line_over_max_line_is_rejected_at_every_split(stream: bytes) -> None:
    for chunks in split_at_every_byte(stream):
        decoder = LineDecoder(max_line=4)
        yielded: list[bytes] = []
        with pytest.raises(LineTooLong) as info:
            for chunk in chunks:
                yielded += decoder.feed(chunk)
                assert decoder.buffered <= 5
        assert yielded + info.value.frames == [b"ok"], chunks
        assert info.value.limit == 4
        assert decoder.buffered == 0


def test_too_long_error_carries_lines_completed_in_the_same_feed() -> None:
    decoder = LineDecoder(max_line=4)
    assert decoder.feed(b"zero\n") == [b"zero"]
    with pytest.raises(LineTooLong) as info:
        decoder.feed(b"one\r\ntwo\n\nabcdef")
    assert info.value.frames == [b"one", b"two", b""]
    assert info.value.limit == 4
    assert isinstance(info.value, LimitExceeded)
    assert isinstance(info.value, ProtocolError)


def test_too_long_complete_line_in_the_middle_of_a_feed() -> None:
    decoder = LineDecoder(max_line=4)
    with pytest.raises(LineTooLong) as info:
        decoder.feed(b"a\nabcdefgh\nb\n")
    assert info.value.frames == [b"a"]  # nothing after the bad line is trusted


def test_decoder_refuses_input_after_failure() -> None:
    decoder = LineDecoder(max_line=4)
    with pytest.raises(LineTooLong):
        decoder.feed(b"abcde")
    with pytest.raises(LineTooLong) as info:
        decoder.feed(b"ok\n")
    assert info.value.frames == []
    assert decoder.buffered == 0
    assert decoder.flush() is None


def test_never_buffers_more_than_max_line_plus_one() -> None:
    decoder = LineDecoder(max_line=8)
    for _ in range(8):
        decoder.feed(b"x")
    assert decoder.buffered == 8
    with pytest.raises(LineTooLong):
        decoder.feed(b"x")
    assert decoder.buffered == 0


def test_big_junk_read_is_not_kept() -> None:
    decoder = LineDecoder(max_line=16)
    with pytest.raises(LineTooLong):
        decoder.feed(b"x" * 1_000_000)
    assert decoder.buffered == 0


def test_unbounded_decoder_accepts_long_lines() -> None:
    decoder = LineDecoder(max_line=None)
    big = b"y" * 200_000
    assert decoder.feed(big) == []
    assert decoder.buffered == len(big)
    assert decoder.feed(b"\r\n") == [big]


# --- decode_utf8 / encode_line ------------------------------------------------------


def test_decode_utf8_valid() -> None:
    assert decode_utf8(b"") == ""
    assert decode_utf8("héllo ✓".encode()) == "héllo ✓"


@pytest.mark.parametrize(
    ("raw", "offset"),
    [
        (b"\xff", 0),
        (b"ab\xffcd", 2),
        (b"caf\xc3", 3),  # truncated two-byte sequence
        ("é".encode() + b"\x80", 2),  # stray continuation byte
        (b"ok\xed\xa0\x80", 2),  # an encoded surrogate is not UTF-8
    ],
)
def test_decode_utf8_invalid_reports_offset(raw: bytes, offset: int) -> None:
    with pytest.raises(DecodeError, match=rf"invalid UTF-8 at byte {offset}\b"):
        decode_utf8(raw)


def test_decode_error_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_utf8(b"\xfe")


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("hi", b"hi\r\n"),
        ("", b"\r\n"),
        ("é", b"\xc3\xa9\r\n"),
        ("a\nb", b"a b\r\n"),
        ("a\rb", b"a b\r\n"),
        ("a\r\nb", b"a b\r\n"),
        ("x\n\nPRIVMSG y", b"x  PRIVMSG y\r\n"),
    ],
)
def test_encode_line(text: str, wire: bytes) -> None:
    assert encode_line(text) == wire


def test_encode_line_custom_newline() -> None:
    assert encode_line("a\nb", newline=b"\n") == b"a b\n"


@settings(deadline=None, max_examples=200)
@given(st.text(max_size=40))
def test_encode_line_is_always_exactly_one_line(text: str) -> None:
    wire = encode_line(text)
    assert wire.endswith(b"\r\n")
    assert wire.count(b"\n") == 1
    assert b"\r" not in wire[:-2]
    lines = LineDecoder(max_line=None).feed(wire)
    assert len(lines) == 1
    assert len(decode_utf8(lines[0])) == len(text.replace("\r\n", " "))


# --- properties ----------------------------------------------------------------

MAX = 16
line_content = st.binary(max_size=MAX).map(lambda b: b.replace(LF, b""))
ending = st.sampled_from([LF, CR + LF])


def join_lines(pairs: list[tuple[bytes, bytes]]) -> bytes:
    out = b""
    for line, end in pairs:
        if end == LF and line.endswith(CR):
            end = CR + LF  # with a bare LF that CR would be read as the ending's
        out += line + end
    return out


@settings(deadline=None, max_examples=150)
@given(pairs=st.lists(st.tuples(line_content, ending), max_size=20), data=st.data())
def test_any_lines_any_split_round_trip(
    pairs: list[tuple[bytes, bytes]], data: st.DataObject
) -> None:
    stream = join_lines(pairs)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=len(stream) + 1))
    decoder = LineDecoder(max_line=MAX)
    assert feed_checked(decoder, cut(stream, points)) == [line for line, _ in pairs]
    assert decoder.buffered == 0


@settings(deadline=None, max_examples=150)
@given(
    pairs=st.lists(st.tuples(line_content, ending), max_size=8),
    bad=st.binary(min_size=MAX + 1, max_size=3 * MAX).map(lambda b: b.replace(LF, b"-")),
    bad_end=st.sampled_from([b"", LF, CR + LF]),
    suffix=st.binary(max_size=40),
    data=st.data(),
)
def test_any_over_limit_line_is_refused_without_overbuffering(
    pairs: list[tuple[bytes, bytes]],
    bad: bytes,
    bad_end: bytes,
    suffix: bytes,
    data: st.DataObject,
) -> None:
    if bad.endswith(CR):
        bad = bad[:-1] + b"-"  # "...\r" + "\n" could be a legal line of max_line bytes
    good = join_lines(pairs)
    stream = good + bad + bad_end + suffix
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=len(stream) + 1))
    decoder = LineDecoder(max_line=MAX)
    yielded: list[bytes] = []
    with pytest.raises(LineTooLong) as info:
        for chunk in cut(stream, points):
            yielded += decoder.feed(chunk)
            assert decoder.buffered <= MAX + 1
    assert yielded + info.value.frames == [line for line, _ in pairs]
    assert decoder.buffered == 0
