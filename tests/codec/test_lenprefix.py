"""FrameDecoder and encode_frame: pure, no I/O."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import cut, split_at_every_byte
from sockhub.codec.lenprefix import DEFAULT_MAX_FRAME, HEADER_SIZE, FrameDecoder, encode_frame
from sockhub.errors import FrameTooLarge, LimitExceeded


def header(length: int) -> bytes:
    return struct.pack("!I", length)


def feed_checked(decoder: FrameDecoder, chunks: list[bytes]) -> list[bytes]:
    """Like feed_all, but check the buffering bound after every read."""
    out: list[bytes] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
        if decoder.max_frame is not None:
            assert decoder.buffered <= HEADER_SIZE + decoder.max_frame
    return out


def test_header_size_and_wire_format() -> None:
    assert HEADER_SIZE == 4
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"
    assert encode_frame(b"x" * 258)[:4] == b"\x00\x00\x01\x02"


def test_default_limit() -> None:
    assert FrameDecoder().max_frame == DEFAULT_MAX_FRAME == 1024 * 1024


def test_negative_max_frame_is_rejected() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame=-1)


PAYLOAD_CASES = [
    [b"hello"],
    [b""],
    [b"", b"", b""],
    [b"a", b"", b"bc", b""],
    [bytes(range(256))],
    [b"\x00\x00\x00\x05", b"\n\r\n"],  # payloads that look like headers or lines
]


@pytest.mark.parametrize("payloads", PAYLOAD_CASES)
def test_round_trip_at_every_split(payloads: list[bytes]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    for chunks in split_at_every_byte(stream):
        decoder = FrameDecoder()
        assert feed_checked(decoder, chunks) == payloads, chunks
        assert decoder.buffered == 0


def test_many_frames_in_one_feed() -> None:
    payloads = [b"frame %d" % i for i in range(1000)]
    stream = b"".join(map(encode_frame, payloads))
    decoder = FrameDecoder()
    assert decoder.feed(stream + b"\x00\x00") == payloads
    assert decoder.buffered == 2


def test_header_split_across_reads() -> None:
    decoder = FrameDecoder()
    wire = encode_frame(b"xyz")
    for i in range(HEADER_SIZE):
        assert decoder.feed(wire[i : i + 1]) == []
        assert decoder.buffered == i + 1
    assert decoder.feed(b"xy") == []
    assert decoder.buffered == HEADER_SIZE + 2
    assert decoder.feed(b"z" + wire[:3]) == [b"xyz"]
    assert decoder.buffered == 3
    assert decoder.feed(wire[3:]) == [b"xyz"]
    assert decoder.buffered == 0


def test_zero_length_frame_completes_with_its_header() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00\x00") == []
    assert decoder.feed(b"\x00") == [b""]
    assert decoder.buffered == 0


def test_empty_feed_yields_nothing() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.buffered == 0


def test_frame_of_exactly_max_frame_is_accepted() -> None:
    stream = encode_frame(b"0123456789") + encode_frame(b"abcdefghij")
    for chunks in split_at_every_byte(stream):
        decoder = FrameDecoder(max_frame=10)
        assert feed_checked(decoder, chunks) == [b"0123456789", b"abcdefghij"]


def test_max_frame_zero_accepts_only_empty_frames() -> None:
    decoder = FrameDecoder(max_frame=0)
    assert decoder.feed(encode_frame(b"") * 2) == [b"", b""]
    with pytest.raises(FrameTooLarge):
        decoder.feed(header(1))


def test_oversize_length_is_rejected_as_soon_as_the_header_is_in() -> None:
    decoder = FrameDecoder(max_frame=10)
    wire = header(11)
    for i in range(HEADER_SIZE - 1):
        assert decoder.feed(wire[i : i + 1]) == []
        assert decoder.buffered == i + 1
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(wire[3:])  # only the header: no payload byte ever sent
    assert info.value.limit == 10
    assert info.value.frames == []
    assert isinstance(info.value, LimitExceeded)
    assert decoder.buffered == 0


def test_huge_announced_length_costs_nothing() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(header(0xFFFFFFFF) + b"x" * 100_000)
    assert info.value.limit == DEFAULT_MAX_FRAME
    assert decoder.buffered == 0


@pytest.mark.parametrize("follow", [b"", b"payload" * 10])
def test_oversize_error_carries_earlier_frames(follow: bytes) -> None:
    decoder = FrameDecoder(max_frame=10)
    assert decoder.feed(encode_frame(b"first")) == [b"first"]
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(b"".join(map(encode_frame, [b"a", b"", b"b"])) + header(11) + follow)
    assert info.value.frames == [b"a", b"", b"b"]
    assert decoder.buffered == 0


def test_oversize_rejected_at_every_split() -> None:
    stream = encode_frame(b"ok") + header(1000) + b"z" * 50
    for chunks in split_at_every_byte(stream):
        decoder = FrameDecoder(max_frame=10)
        yielded: list[bytes] = []
        with pytest.raises(FrameTooLarge) as info:
            for chunk in chunks:
                yielded += decoder.feed(chunk)
                assert decoder.buffered <= HEADER_SIZE + 10
        assert yielded + info.value.frames == [b"ok"], chunks


def test_decoder_refuses_input_after_failure() -> None:
    decoder = FrameDecoder(max_frame=10)
    with pytest.raises(FrameTooLarge):
        decoder.feed(header(11))
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(encode_frame(b"ok"))
    assert info.value.frames == []


def test_unbounded_decoder_accepts_big_frames() -> None:
    big = b"q" * (DEFAULT_MAX_FRAME + 1)
    assert FrameDecoder(max_frame=None).feed(encode_frame(big)) == [big]


def test_encode_frame_limit() -> None:
    assert encode_frame(b"x" * 10, max_frame=10) == header(10) + b"x" * 10
    with pytest.raises(FrameTooLarge) as info:
        encode_frame(b"x" * 11, max_frame=10)
    assert info.value.limit == 10


# --- properties ----------------------------------------------------------------

MAX = 32
payload = st.binary(max_size=MAX)


@settings(deadline=None, max_examples=150)
@given(payloads=st.lists(payload, max_size=20), data=st.data())
def test_any_frames_any_split_round_trip(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(p, max_frame=MAX) for p in payloads)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=len(stream) + 1))
    decoder = FrameDecoder(max_frame=MAX)
    assert feed_checked(decoder, cut(stream, points)) == payloads
    assert decoder.buffered == 0


@settings(deadline=None, max_examples=150)
@given(
    payloads=st.lists(payload, max_size=8),
    length=st.integers(MAX + 1, 0xFFFFFFFF),
    suffix=st.binary(max_size=80),
    data=st.data(),
)
def test_any_oversize_frame_is_refused_before_its_payload(
    payloads: list[bytes], length: int, suffix: bytes, data: st.DataObject
) -> None:
    good = b"".join(map(encode_frame, payloads))
    stream = good + header(length) + suffix
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=len(stream) + 1))
    decoder = FrameDecoder(max_frame=MAX)
    yielded: list[bytes] = []
    fed = 0
    with pytest.raises(FrameTooLarge) as info:
        for chunk in cut(stream, points):
            yielded += decoder.feed(chunk)
            fed += len(chunk)
            assert decoder.buffered <= HEADER_SIZE + MAX
            if fed > len(good):  # inside the bad frame: only part of its header is held
                assert decoder.buffered == fed - len(good) < HEADER_SIZE
    assert yielded + info.value.frames == payloads
    assert decoder.buffered == 0
