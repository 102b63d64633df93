"""The web door's own reading of client frames (door.py ``_ws_receive``), byte by byte.

Whole data frames are unmasked by the door; control frames, fragments and
whatever websockets must refuse go to websockets whole. Every case is fed
as one read, split at every byte, and in random pieces: what the room and
the sender see must not depend on how TCP cut the stream. websockets'
``ClientProtocol`` builds the client's bytes and reads the answers.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from irc_support import ManualClock
from sockhub.doors.web import WebDoor
from sockhub.doors.web.chat_json import FRAME_MAX, loads
from sockhub.limits import Limits
from sockhub.protocols.base import ConnectionInfo
from sockhub.services.chat import ChatService, ChatSettings


@pytest.fixture
def service(tmp_path):
    chat = ChatService(ChatSettings(data_dir=tmp_path, flood_rate=None), Limits())
    yield chat
    chat.close()


class Browser:
    """One WebDoor and the websockets client protocol that speaks to it."""

    def __init__(self, service: ChatService, clock: ManualClock, nick: str,
                 subprotocol: str | None = None) -> None:
        self.door = door = WebDoor(service)
        door.clock = clock
        door.wake = lambda: None
        door.connection_made(ConnectionInfo(peer="127.0.0.1:5555", local="test",
                                            transport="tcp"))
        self.client = ClientProtocol(parse_uri("ws://test/ws"),
                                     subprotocols=[subprotocol] if subprotocol else None)
        self.client.send_request(self.client.connect())
        self.door.receive_data(self.queued())
        self.frames()  # the handshake's answer
        if subprotocol is None:
            self.door.receive_data(self.say_bytes({"type": "hello", "version": 1, "nick": nick},
                                                  {"type": "join", "room": "#r"}))
            self.frames()

    def queued(self) -> bytes:
        return b"".join(self.client.data_to_send())

    def say_bytes(self, *objs: object) -> bytes:
        for obj in objs:
            self.client.send_text(json.dumps(obj).encode())
        return self.queued()

    def frames(self) -> list[Frame]:
        self.client.receive_data(b"".join(self.door.data_to_send()))
        return [e for e in self.client.events_received() if isinstance(e, Frame)]

    def texts(self) -> list[str]:
        return [json.loads(f.data)["text"] for f in self.frames()
                if f.opcode is Opcode.TEXT and json.loads(f.data)["type"] == "message"]


def _say(text: str) -> dict[str, object]:
    return {"type": "say", "room": "#r", "text": text}


def _stream(alice: Browser) -> tuple[bytes, list[str]]:
    """One client's bytes: messages of every length encoding, a ping, a fragmented message."""
    client = alice.client
    client.send_text(json.dumps(_say("short")).encode())
    client.send_text(json.dumps(_say("x" * 300)).encode())  # 16-bit length
    client.send_ping(b"are you there")
    client.send_text(b'{"type":"say","room":"#r",', fin=False)  # a fragmented message
    client.send_continuation(b'"text":"in two pieces"}', fin=True)
    client.send_text(json.dumps(_say("é中😀 after the pieces")).encode())
    client.send_binary(b"\x00not json")  # JSON chat is text: an error, and on
    client.send_text(json.dumps(_say("last")).encode())
    return alice.queued(), ["short", "x" * 300, "in two pieces", "é中😀 after the pieces",
                            "last"]


def _play(service: ChatService, cuts: list[int]) -> None:
    clock = ManualClock()
    alice, bob = Browser(service, clock, "alice"), Browser(service, clock, "bob")
    data, expected = _stream(alice)
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    for start, end in itertools.pairwise(bounds):
        alice.door.receive_data(data[start:end])
    assert bob.texts() == expected
    frames = alice.frames()
    pongs = [f for f in frames if f.opcode is Opcode.PONG]
    assert [p.data for p in pongs] == [b"are you there"]
    errors = [json.loads(f.data) for f in frames if f.opcode is Opcode.TEXT
              and json.loads(f.data)["type"] == "error"]
    assert [e["code"] for e in errors] == ["bad_json"]
    assert not alice.door.close_expected() and not alice.door._inbox


def test_a_stream_read_whole_reaches_the_room_in_order_with_its_pong(service):
    _play(service, [])


def test_a_stream_read_byte_by_byte_is_the_same(service):
    _play(service, list(range(1, 2000)))


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 2000), max_size=12))
def test_a_stream_cut_anywhere_is_the_same(tmp_path_factory, cuts):
    chat = ChatService(ChatSettings(data_dir=tmp_path_factory.mktemp("frames"),
                                    flood_rate=None), Limits())
    try:
        _play(chat, cuts)
    finally:
        chat.close()


def _closed_with(browser: Browser) -> int:
    [close] = [f for f in browser.frames() if f.opcode is Opcode.CLOSE]
    assert browser.door.close_expected()
    return int.from_bytes(close.data[:2], "big")


@pytest.mark.parametrize("bad", [
    bytes((0x81, 0x05)) + b"hello",  # unmasked (RFC 6455 §5.1)
    bytes((0xC1, 0x85, 1, 2, 3, 4)) + b"hello",  # RSV1 with no extension (§5.2)
    bytes((0x83, 0x80, 1, 2, 3, 4)),  # a reserved opcode (§5.2)
    bytes((0x89, 0xFE, 0x00, 0x80, 1, 2, 3, 4)) + bytes(128),  # a ping over 125 bytes (§5.5)
    bytes((0x80, 0x80, 1, 2, 3, 4)),  # a continuation of nothing
])
def test_a_frame_websockets_refuses_closes_with_1002_and_nothing_after_it_is_read(service, bad):
    clock = ManualClock()
    alice, bob = Browser(service, clock, "alice"), Browser(service, clock, "bob")
    after = alice.say_bytes(_say("never read"))
    alice.door.receive_data(alice.say_bytes(_say("before")) + bad + after)
    assert _closed_with(alice) == 1002
    assert bob.texts() == ["before"]


@pytest.mark.parametrize("size", [FRAME_MAX + 1, 2**40])
def test_a_frame_over_the_limit_closes_with_1009_from_its_header_alone(service, size):
    clock = ManualClock()
    alice = Browser(service, clock, "alice")
    head = bytes((0x81, 0xFF)) + size.to_bytes(8, "big") + b"\x01\x02\x03\x04"
    alice.door.receive_data(head)  # no payload: the header is enough to refuse it
    assert _closed_with(alice) == 1009


def test_a_fragmented_message_over_the_limit_closes_with_1009(service):
    clock = ManualClock()
    alice = Browser(service, clock, "alice")
    alice.client.send_text(b"x" * (FRAME_MAX - 10), fin=False)
    alice.client.send_continuation(b"y" * 20, fin=True)
    alice.door.receive_data(alice.queued())
    assert _closed_with(alice) == 1009


def test_a_frame_of_the_limit_exactly_is_read(service):
    clock = ManualClock()
    alice = Browser(service, clock, "alice")
    text = json.dumps(_say("")).encode()
    padded = text[:-1] + b" " * (FRAME_MAX - len(text)) + b"}"
    alice.client.send_text(padded)
    data = alice.queued()
    for piece in (data[:3], data[3:5000], data[5000:]):
        alice.door.receive_data(piece)
    frames = alice.frames()
    assert not any(f.opcode is Opcode.CLOSE for f in frames)
    assert not alice.door.close_expected()


def test_a_text_frame_that_is_not_utf8_closes_with_1007(service):
    clock = ManualClock()
    alice = Browser(service, clock, "alice")
    alice.client.send_text(b"\xff\xfe not UTF-8")
    alice.door.receive_data(alice.queued())
    assert _closed_with(alice) == 1007


def test_the_close_handshake_is_answered_and_what_follows_is_discarded(service):
    clock = ManualClock()
    alice, bob = Browser(service, clock, "alice"), Browser(service, clock, "bob")
    first = alice.say_bytes(_say("first"))
    alice.client.send_close(1000, "bye")
    alice.door.receive_data(first + alice.queued()
                            + bytes((0x81, 0x85, 0, 0, 0, 0)) + b"after")
    assert _closed_with(alice) == 1000
    assert bob.texts() == ["first"]


def test_irc_over_websocket_frames_are_read_here_too(service):
    clock = ManualClock()
    irc = Browser(service, clock, "", subprotocol="text.ircv3.net")
    data = b""
    for line in (b"NICK ann", b"USER ann 0 * :Ann", b"PING :hello"):
        irc.client.send_text(line)
        data += irc.queued()
    for byte in range(len(data)):  # one byte a read
        irc.door.receive_data(data[byte:byte + 1])
    lines = [f.data for f in irc.frames() if f.opcode is Opcode.TEXT]
    assert any(b" 001 ann " in line for line in lines)
    assert b" PONG " in lines[-1] and lines[-1].endswith(b":hello")


# The JSON reader ----------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    '{"type":"say"}', ' {"type":"say"} ', '{"a":1}\n', "[1,2]", "3", '"x"', "NaN", "-Infinity",
    '{"a":1}{"b":2}', '{"a":1} x', "", " ", "{", '{"a":}', "\ufeff{}", '{"a":"\\ud800"}',
    '{"a":1.5e400}', "[" * 5 + "]" * 5, '{"a":"\x00"}',
])
def test_loads_reads_what_json_loads_reads_and_refuses_the_same(text):
    try:
        expected: object = json.loads(text)
    except ValueError as exc:
        with pytest.raises(ValueError) as caught:
            loads(text)
        assert str(caught.value) == str(exc)
        return
    got = loads(text)
    assert got == expected or (got != got and expected != expected)  # NaN
    assert type(got) is type(expected)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12),
       st.sampled_from(["", " ", "\n", "\t "]), st.sampled_from(["", " ", "\r\n", "x"]))
def test_loads_agrees_with_json_loads_on_any_value(value, before, after):
    text = before + json.dumps(value) + after
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            loads(text)
        return
    assert loads(text) == expected


def test_loads_refuses_nesting_too_deep_as_json_loads_does():
    with pytest.raises(RecursionError):
        json.loads("[" * 100_000)
    with pytest.raises(RecursionError):
        loads("[" * 100_000)
