"""doors/web/frames.py on bytes: RFC 6455 as the server reads a client, no door, no socket.

Every case is fed whole, a byte at a time and cut at random: the events
must not depend on how TCP cut the stream. Every refusal is checked with
its close code, and nothing after it is read.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Close as WsClose
from websockets.frames import Frame, Opcode

from sockhub.doors.web.frames import (
    FRAGMENTS_MAX,
    ClientFrames,
    Close,
    Event,
    Failure,
    Ping,
    Pong,
    close_frame,
    frame,
    ping_frame,
    pong_frame,
)

LIMIT = 1000
MASK = b"\x37\xfa\x21\x3d"


def client(first: int, payload: bytes = b"", *, mask: bytes | None = MASK,
           length: int | None = None) -> bytes:
    """One client frame: ``first`` is FIN, RSV and opcode; masked unless ``mask`` is None."""
    size = len(payload) if length is None else length
    bit = 0x80 if mask is not None else 0
    if size < 126:
        head = bytes((first, bit | size))
    elif size < 0x10000:
        head = bytes((first, bit | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, bit | 127)) + size.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(data: bytes | str, *, fin: bool = True) -> bytes:
    return client((0x80 if fin else 0) | 0x1, data.encode() if isinstance(data, str) else data)


def binary(data: bytes, *, fin: bool = True) -> bytes:
    return client((0x80 if fin else 0) | 0x2, data)


def cont(data: bytes | str, *, fin: bool = True) -> bytes:
    return client((0x80 if fin else 0), data.encode() if isinstance(data, str) else data)


def ping(data: bytes = b"") -> bytes:
    return client(0x89, data)


def close(code: int | None = None, reason: bytes = b"") -> bytes:
    return client(0x88, b"" if code is None else code.to_bytes(2, "big") + reason)


def feed(data: bytes, cuts: list[int]) -> list[Event]:
    frames = ClientFrames(LIMIT)
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    events: list[Event] = []
    for start, end in itertools.pairwise(bounds):
        if end > start:
            events += frames.receive(data[start:end])
    return events


def every_way(data: bytes) -> list[Event]:
    """The events of ``data`` read whole, a byte at a time and in random pieces: the same."""
    whole = feed(data, [])
    assert feed(data, list(range(1, len(data)))) == whole
    rng = random.Random(len(data))
    for _ in range(20):
        assert feed(data, [rng.randrange(len(data) + 1) for _ in range(rng.randrange(6))]) \
            == whole
    return whole


# What is read ----------------------------------------------------------------------------

def test_messages_of_every_length_encoding_in_order():
    stream = (text("hi") + binary(b"\x00\xff") + text("") + text("x" * 126) + text("é" * 300)
              + binary(bytes(range(256)) * 3) + text("🙂" * 250))
    assert every_way(stream) == ["hi", b"\x00\xff", "", "x" * 126, "é" * 300,
                                 bytes(range(256)) * 3, "🙂" * 250]


def test_a_64_bit_length_is_read():
    frames = ClientFrames(70000)
    assert frames.receive(binary(b"z" * 66000)) == [b"z" * 66000]


def test_a_message_of_the_limit_exactly_is_read_one_byte_more_is_1009():
    assert every_way(text("a" * LIMIT)) == ["a" * LIMIT]
    assert every_way(text("a" * (LIMIT + 1))) == [Failure(1009, "message too big")]


def test_a_fragmented_text_with_control_frames_between_its_fragments():
    # RFC 6455 §5.4: control frames may come between fragments; §5.5.2 ping, §5.5.3 pong
    stream = (text("one ", fin=False) + ping(b"p1") + cont("two ", fin=False)
              + client(0x8A, b"unasked") + cont("three") + text("after"))
    assert every_way(stream) == [Ping(b"p1"), Pong(b"unasked"), "one two three", "after"]


def test_a_ping_inside_a_fragmented_message_does_not_count_against_its_size():
    # websockets counted it (its max_size), refusing this message with 1009
    half = LIMIT // 2
    stream = text("a" * half, fin=False) + ping(b"p" * 125) + cont("b" * (LIMIT - half))
    assert every_way(stream) == [Ping(b"p" * 125), "a" * half + "b" * (LIMIT - half)]


def test_fragments_over_the_limit_together_are_1009_from_the_header_of_the_one_over():
    stream = text("a" * 600, fin=False) + cont("b" * 401)
    assert every_way(stream) == [Failure(1009, "message too big")]
    # the payload of the one over the limit is never waited for
    frames = ClientFrames(LIMIT)
    assert frames.receive(text("a" * 600, fin=False)) == []
    assert frames.receive(cont("b" * 401)[:8]) == [Failure(1009, "message too big")]


def test_a_fragmented_binary_message():
    stream = binary(b"\x00", fin=False) + cont(b"\xff", fin=False) + cont(b"")
    assert every_way(stream) == [b"\x00\xff"]


def test_a_character_cut_across_two_fragments_is_utf8_all_the_same():
    euro = "€".encode()
    stream = text(b"price " + euro[:1], fin=False) + cont(euro[1:2], fin=False) + cont(euro[2:])
    assert every_way(stream) == ["price €"]


@pytest.mark.parametrize("stream", [
    text(b"\xff\xfe"),  # not UTF-8 in one frame (§8.1)
    text(b"ok \xe2\x82", fin=False) + cont(b"\x28 bad"),  # a sequence broken across fragments
    text(b"bad \xc0", fin=False) + cont(b"never read", fin=False),  # failed at once
    text(b"cut \xe2\x82", fin=False) + cont(b""),  # a sequence the last fragment leaves open
    text(b"\xed\xa0\x80"),  # a surrogate's encoding is not UTF-8
])
def test_text_that_is_not_utf8_is_1007(stream):
    assert every_way(stream) == [Failure(1007, "text frames must be UTF-8")]


def test_an_invalid_fragment_fails_before_the_message_ends():
    frames = ClientFrames(LIMIT)
    assert frames.receive(text(b"\xc0", fin=False)) == [Failure(1007,
                                                                "text frames must be UTF-8")]
    assert frames.done


def test_a_surrogate_fails_once_its_second_byte_is_read_not_at_the_next_fragment():
    """ED A0 can only begin a UTF-16 surrogate (RFC 3629 §3): 1007 there, even with
    the rest of the message still to come in empty fragments (ED 9F begins U+D7C0)."""
    frames = ClientFrames(LIMIT)
    assert frames.receive(text(b"ok \xed\x9f", fin=False)) == []
    assert frames.receive(cont(b"\x80", fin=False) + cont(b"", fin=False)) == []
    frames = ClientFrames(LIMIT)
    assert frames.receive(text(b"ok \xed\xa0", fin=False)) == [
        Failure(1007, "text frames must be UTF-8")]
    assert frames.done
    assert every_way(text(b"\xed", fin=False) + cont(b"\xa0", fin=False) + cont(b"")) == [
        Failure(1007, "text frames must be UTF-8")]


def test_a_message_in_more_fragments_than_the_cap_is_1009_whatever_their_size():
    """Empty fragments (6 bytes each on the wire) hold nothing the size limit counts:
    past FRAGMENTS_MAX of them the message fails, and what is held stays the data."""
    frames = ClientFrames(LIMIT)
    events = frames.receive(binary(b"x", fin=False)
                            + cont(b"", fin=False) * (FRAGMENTS_MAX - 1))
    assert events == []
    message = frames._message
    assert message is not None and message.size == 1 and len(message.data) == 1
    assert frames.receive(cont(b"", fin=False) + ping(b"p")) == [
        Failure(1009, "message in too many fragments")]
    assert frames.done and frames._message is None


def test_a_message_in_the_most_fragments_allowed_is_read_whole():
    stream = (text("é", fin=False)
              + b"".join(cont("é", fin=False) for _ in range(FRAGMENTS_MAX - 2)) + cont("!"))
    assert ClientFrames(10_000).receive(stream) == ["é" * (FRAGMENTS_MAX - 1) + "!"]


def test_binary_messages_are_not_utf8_checked():
    assert every_way(binary(b"\xff\xfe")) == [b"\xff\xfe"]


# The client's close (§5.5.1, §7.1.5, §7.1.6, §7.4) ---------------------------------------

@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                  1013, 1014, 3000, 3999, 4000, 4999])
def test_a_close_with_a_valid_code_is_read_with_its_reason(code):
    payload = code.to_bytes(2, "big") + "bye é".encode()
    assert every_way(close(code, "bye é".encode())) == [Close(code, "bye é", payload)]


def test_an_empty_close_is_read_with_no_code():
    assert every_way(close()) == [Close(None, "", b"")]


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000,
                                  65535])
def test_a_close_with_a_code_no_frame_may_carry_is_1002(code):
    assert every_way(close(code)) == [Failure(1002, "invalid status code")]


def test_a_close_of_one_byte_is_1002():
    assert every_way(client(0x88, b"\x03")) == [Failure(1002, "close frame too short")]


def test_a_close_whose_reason_is_not_utf8_is_1007():
    assert every_way(close(1000, b"\xff")) == [Failure(1007, "close reason must be UTF-8")]


def test_a_close_between_fragments_ends_the_message_unread():
    stream = text("half", fin=False) + close(1001) + cont("rest")
    assert every_way(stream) == [Close(1001, "", (1001).to_bytes(2, "big"))]


def test_nothing_after_a_close_is_read():
    frames = ClientFrames(LIMIT)
    assert frames.receive(text("before") + close(1000) + text("after")) == [
        "before", Close(1000, "", b"\x03\xe8")]
    assert frames.done
    assert frames.receive(text("later")) == []


# Refusals from the frame's first bytes (§5.1, §5.2, §5.4, §5.5) -------------------------

#: Each refusal, its frame with a payload that is never waited for.
REFUSALS = [
    (client(0x81, b"hello", mask=None), "incorrect masking"),  # §5.1, §5.3
    (client(0xC1, b"hello"), "reserved bits must be 0"),  # RSV1, no extension (§5.2)
    (client(0xA1, b"hello"), "reserved bits must be 0"),  # RSV2
    (client(0x91, b"hello"), "reserved bits must be 0"),  # RSV3
    *[(client(0x80 | op, b"x"), "invalid opcode") for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD,
                                                              0xE, 0xF)],  # §5.2
    (client(0x09, b"ping"), "fragmented control frame"),  # §5.5
    (client(0x08, b""), "fragmented control frame"),
    (client(0x89, b"p" * 126), "control frame too long"),  # §5.5: at most 125 bytes
    (client(0x88, b"\x03\xe8" + b"r" * 124), "control frame too long"),
    (cont("nothing to continue"), "unexpected continuation frame"),  # §5.4
    (text("a", fin=False) + text("b"), "expected a continuation frame"),  # §5.4
    (text("a", fin=False) + binary(b"b", fin=False), "expected a continuation frame"),
]


@pytest.mark.parametrize(("stream", "reason"), REFUSALS)
def test_a_frame_to_refuse_is_1002_and_nothing_after_it_is_read(stream, reason):
    events = every_way(text("before") + stream + text("after"))
    assert events == ["before", Failure(1002, reason)]


@pytest.mark.parametrize("first", [0x83, 0xC1, 0x89, 0x09])
def test_a_refusal_is_made_from_the_first_two_bytes_without_the_payload(first):
    frames = ClientFrames(LIMIT)
    head = bytes((first, 0xFE, 0x3F, 0x00))  # declares 16,128 bytes, none sent
    assert frames.receive(head[:1]) == []
    [failure] = frames.receive(head[1:2])
    assert isinstance(failure, Failure) and failure.code == 1002


def test_a_64_bit_length_with_its_top_bit_set_is_1002_from_the_header_alone():
    head = bytes((0x82, 0xFF)) + (2**63).to_bytes(8, "big")
    assert every_way(head + MASK) == [Failure(1002, "invalid frame length")]
    frames = ClientFrames(LIMIT)
    assert frames.receive(head) == [Failure(1002, "invalid frame length")]


def test_a_huge_declared_length_is_1009_from_the_header_alone():
    frames = ClientFrames(LIMIT)
    head = bytes((0x82, 0xFF)) + (2**63 - 1).to_bytes(8, "big")
    assert frames.receive(head[:5]) == []
    assert frames.receive(head[5:]) == [Failure(1009, "message too big")]


@settings(max_examples=60, deadline=None)
@given(pieces=st.lists(st.sampled_from([
    text("plain"), text("é中"), binary(b"\x00"), ping(b"x"), client(0x8A, b"y"),
    text("frag ", fin=False) + ping() + cont("ment"), text("a" * 300),
]), max_size=8), cuts=st.lists(st.integers(0, 4000), max_size=10))
def test_any_stream_of_good_frames_reads_the_same_however_cut(pieces, cuts):
    data = b"".join(pieces)
    assert feed(data, cuts) == feed(data, [])
    assert not any(isinstance(e, Failure) for e in feed(data, []))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64), cuts=st.lists(st.integers(0, 64), max_size=6))
def test_any_bytes_give_events_or_a_failure_never_an_exception(data, cuts):
    events = feed(data, cuts)
    assert events == feed(data, [])
    assert all(not isinstance(e, Failure) for e in events[:-1])


# The server's frames --------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG])
def test_a_frame_is_the_bytes_websockets_would_serialize(size, opcode):
    if opcode in (Opcode.PING, Opcode.PONG) and size > 125:
        return
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert frame(opcode, data) == Frame(opcode, data).serialize(mask=False)


def test_ping_and_pong_frames():
    assert ping_frame(b"sockhub") == Frame(Opcode.PING, b"sockhub").serialize(mask=False)
    assert pong_frame(b"echo") == Frame(Opcode.PONG, b"echo").serialize(mask=False)


def test_a_close_frame_carries_the_code_and_a_reason_cut_to_fit_as_utf8():
    assert close_frame(1001, "server shutting down") == Frame(
        Opcode.CLOSE, WsClose(1001, "server shutting down").serialize()).serialize(mask=False)
    long = close_frame(1008, "é" * 100)  # 200 bytes of reason: cut on a character
    assert len(long) == 2 + 2 + 122  # §5.5: a control frame's payload is at most 125 bytes
    parsed = WsClose.parse(long[2:])
    assert parsed.code == 1008 and parsed.reason == "é" * 61
