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
from websockets.streams import StreamReader
from websockets.uri import parse_uri

from irc_support import ManualClock
from sockhub.doors.web import WebDoor, chat_json
from sockhub.doors.web.chat_json import FRAME_MAX, dumps, event_object, loads, message_json
from sockhub.doors.web.door import _frame_run
from sockhub.doors.web.frames import frame as _frame
from sockhub.hub import Message
from sockhub.limits import Limits
from sockhub.protocols.base import ConnectionInfo, Protocol
from sockhub.services.chat import ChatService, ChatSettings


class Browser:
    """One WebDoor and the websockets client protocol that speaks to it."""

    def __init__(self, service: ChatService, clock: ManualClock, nick: str,
                 subprotocol: str | None = None, controls: object = None) -> None:
        self.door = door = WebDoor(service)
        door.clock = clock
        if controls is not None:  # the engine's place: its connection
            door.controls = controls  # type: ignore[assignment]
        door.wake = lambda: None
        self.wakes = 0
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
    assert not alice.door.close_expected() and not alice.door.ws._inbox


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


def _answered(browser: Browser) -> None:
    """The server sent its close and waits for the client's (RFC 6455 §7.1.2); the client
    (websockets) answers it, and then the server hangs up."""
    assert not browser.door.close_expected()
    answer = browser.queued()
    assert answer  # websockets answers a close at once
    browser.door.receive_data(answer)
    assert browser.door.close_expected()


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


def _registered_irc(service: ChatService, clock: ManualClock, nick: str,
                    controls: object = None) -> Browser:
    irc = Browser(service, clock, "", subprotocol="text.ircv3.net", controls=controls)
    for line in (f"NICK {nick}".encode(), f"USER {nick} 0 * :{nick}".encode()):
        irc.client.send_text(line)
    irc.door.receive_data(irc.queued())
    assert any(b" 001 " in f.data for f in irc.frames())
    return irc


def test_an_irc_text_frame_that_is_not_utf8_closes_with_1007(service):
    """RFC 6455 §8.1 holds whatever speaks over the WebSocket: IRC's INVALID_UTF8 is for
    binary frames (irctest sends non-UTF-8 as binary for that reason)."""
    clock = ManualClock()
    irc = _registered_irc(service, clock, "ann")
    irc.client.send_text(b"PRIVMSG ann :caf\xe9")
    irc.door.receive_data(irc.queued())
    assert _closed_with(irc) == 1007


def test_an_irc_binary_frame_that_is_not_utf8_gets_irc_s_own_refusal(service):
    clock = ManualClock()
    irc = _registered_irc(service, clock, "ann")
    irc.client.send_binary(b"PRIVMSG ann :caf\xe9")
    irc.client.send_text("PRIVMSG ann :caf\u00e9".encode())
    irc.door.receive_data(irc.queued())
    lines = [f.data for f in irc.frames()]
    assert any(b"FAIL PRIVMSG INVALID_UTF8 " in line for line in lines)
    assert not irc.door.close_expected()


class Reading:
    """The engine's connection as a protocol sees it: what set_reading was asked."""

    def __init__(self) -> None:
        self.asked: list[bool] = []

    def set_reading(self, reading: bool, /) -> None:
        self.asked.append(reading)


def test_a_hosted_irc_door_s_hold_stops_reading_the_connection(service):
    """A password check (hold) stops the engine reading, as on port 6667: the lines a
    web IRC client pipelines meanwhile wait in the kernel, not in a queue that floods."""
    clock = ManualClock()
    reading = Reading()
    irc = _registered_irc(service, clock, "ann", controls=reading)
    assert reading.asked == [False, True]  # registration's own check held it, then let go
    hosted = irc.door.irc
    assert hosted is not None
    resume = hosted.hold()
    assert reading.asked[2:] == [False]
    resume(lambda: None)
    assert reading.asked[2:] == [False, True]


#: Headers that declare a payload of 16,128 bytes (or more), none of which is sent.
_BIG = (0xFE, 0x3F, 0x00, 1, 2, 3, 4)


@pytest.mark.parametrize("head", [
    bytes((0x83, *_BIG)),  # a reserved opcode (RFC 6455 §5.2)
    bytes((0xC1, *_BIG)),  # RSV1 with no extension (§5.2)
    bytes((0x89, *_BIG)),  # a ping over 125 bytes (§5.5)
    bytes((0x09, 0x85, 1, 2, 3, 4)),  # a fragmented ping (§5.5)
    bytes((0x81, 0x7F, 0, 0, 0, 0, 0, 0, 0x3F, 0x00)),  # unmasked
])
@pytest.mark.parametrize("cut", [None, 1, 2, 3])
def test_a_bad_frame_is_refused_from_its_header_without_its_payload(service, head, cut):
    """1002 as soon as the first two bytes say so, however the header is cut: the door
    neither waits for the payload nor hands websockets part of a frame."""
    clock = ManualClock()
    alice, bob = Browser(service, clock, "alice"), Browser(service, clock, "bob")
    after = alice.say_bytes(_say("never read"))
    pieces = [head] if cut is None else [head[:cut], head[cut:]]
    for piece in pieces:
        alice.door.receive_data(piece)
    assert _closed_with(alice) == 1002
    alice.door.receive_data(after)
    assert bob.texts() == []


@pytest.mark.parametrize("cut", [1, 2, 5])
def test_a_continuation_over_what_is_left_of_the_message_is_refused_from_its_header(service,
                                                                                   cut):
    clock = ManualClock()
    alice = Browser(service, clock, "alice")
    alice.client.send_text(b"x" * (FRAME_MAX - 10), fin=False)
    alice.door.receive_data(alice.queued())
    head = bytes((0x80, 0xFE, 0x00, 0x20, 1, 2, 3, 4))  # 32 bytes, none sent: over by 22
    alice.door.receive_data(head[:cut])
    alice.door.receive_data(head[cut:])
    assert _closed_with(alice) == 1009


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


# What leaves: a run's frames, a message's JSON --------------------------------------------

@pytest.mark.parametrize("sizes", [[0], [1, 125], [126, 127], [65535], [65536], [3, 200, 70000]])
def test_a_runs_frames_are_each_texts_frame_joined(sizes):
    # é is two bytes in UTF-8: each text is ``size`` bytes; a lone surrogate is replaced
    texts = (*("é" * (size // 2) + "x" * (size % 2) for size in sizes), "\ud800 lone")
    joined = b"".join(_frame(Opcode.TEXT, text.encode("utf-8", "replace")) for text in texts)
    assert _frame_run(texts) == joined
    frames = list(_parse_all(joined))
    assert [f.data for f in frames] == [t.encode("utf-8", "replace") for t in texts]
    assert all(f.fin and f.opcode is Opcode.TEXT for f in frames)


def _parse_all(data: bytes):
    """Server frames as websockets reads them (unmasked), one after another."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            while True:
                next(parser)
        except StopIteration as done:
            yield done.value


def test_message_json_keeps_apart_senders_that_differ_only_in_user_or_address(monkeypatch):
    monkeypatch.setattr(chat_json, "_middles", {})
    monkeypatch.setattr(chat_json, "MIDDLES_MAX", 2)
    seen = []
    for username, address in [("a", "10.0.0.1"), ("b", "10.0.0.1"), ("a", "10.0.0.2"),
                              ("a", "10.0.0.1"), ("", "")]:
        message = Message(room="#r", nick="ann", text="<i>x</i>", ts=1.5, id=3,
                          username=username, address=address)
        rendered = message_json(message)
        assert rendered == dumps(event_object(message) or {})
        seen.append(json.loads(rendered)["source"])
        assert len(chat_json._middles) <= 2  # cleared when full
    assert seen == ["ann!a@10.0.0.1", "ann!b@10.0.0.1", "ann!a@10.0.0.2", "ann!a@10.0.0.1",
                    "ann!ann@unknown"]


# A say's checks: plain ASCII passes at once, anything else field by field -----------------

@pytest.mark.parametrize(("fields", "expected"), [
    ({"text": "plain"}, ("plain", False)),
    ({"text": "plain", "action": True}, ("plain", True)),
    ({"text": "plain", "action": False}, ("plain", False)),
    ({"text": "é中😀"}, ("é中😀", False)),
    ({"text": "é", "action": True}, ("é", True)),
    ({"text": "plain", "action": "yes"}, "action must be true or false"),
    ({"text": "plain", "action": 1}, "action must be true or false"),
    ({"text": 5}, "text must be a string"),
    ({"text": "\ud800"}, "text must be Unicode text (no lone surrogates)"),
    ({}, "text must be a string"),
    ({"room": 5, "text": "x"}, "room must be a string"),
])
def test_say_checks_each_field_as_before(service, fields, expected):
    clock = ManualClock()
    alice = Browser(service, clock, "alice")
    message = {"type": "say", "room": "#r", **fields}
    alice.client.send_text(json.dumps(message).encode())
    alice.door.receive_data(alice.queued())
    [answer] = [json.loads(f.data) for f in alice.frames() if f.opcode is Opcode.TEXT]
    if isinstance(expected, str):
        assert answer["type"] == "error" and answer["code"] == "bad_field"
        assert answer["message"] == expected
    else:
        assert answer["type"] == "message" and (answer["text"], answer["action"]) == expected


@pytest.mark.parametrize("ts", [
    0.0, -0.0, 0.0004, 0.0005, 0.0006, 0.0625, -0.0625, 2.675, 1e-7, 123.0, 1764541234.1235,
    1764541234.0, 999999999999.9995, -999999999999.9995, 1e12, -1e12, 1e15 + 0.5, 5, -7,
])
def test_message_json_writes_the_timestamp_as_dumps_does(ts):
    message = Message(room="#r", nick="ann", text="x", ts=ts, id=1)
    assert message_json(message) == dumps(event_object(message) or {})


@settings(max_examples=300)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-2e12, max_value=2e12)
       | st.integers(-2**40, 2**40).map(lambda n: n / 8000))
def test_message_json_timestamps_agree_with_dumps_at_any_value(ts):
    message = Message(room="#r", nick="ann", text="x", ts=ts, id=1)
    assert message_json(message) == dumps(event_object(message) or {})


# IRC over WebSocket: its lines framed as queued, so the door keeps Protocol's output -------

def test_the_web_door_keeps_protocols_output_queue_for_the_engines_inlined_flush():
    # engine/connection.py: plain_output needs both; overriding either costs every
    # browser the engine's slower flush (issue 16).
    assert WebDoor.data_to_send is Protocol.data_to_send
    assert WebDoor.close_expected is Protocol.close_expected


def _irc(service: ChatService, clock: ManualClock, nick: str | None = None) -> Browser:
    irc = Browser(service, clock, "", subprotocol="text.ircv3.net")
    irc.wakes = 0

    def woken() -> None:
        irc.wakes += 1
    irc.door.wake = woken
    assert irc.door.irc is not None
    irc.door.irc.wake = woken  # as the engine's, bound before the upgrade
    if nick is not None:
        data = b""
        for line in (f"NICK {nick}", f"USER {nick} 0 * :{nick}", "JOIN #r"):
            irc.client.send_text(line.encode())
            data += irc.queued()
        irc.door.receive_data(data)
        irc.frames()
        irc.wakes = 0
    return irc


def test_an_irc_client_closed_by_a_timer_gets_its_error_then_a_close(tmp_path):
    chat = ChatService(ChatSettings(data_dir=tmp_path, flood_rate=None,
                                    registration_timeout=5), Limits())
    try:
        clock = ManualClock()
        irc = _irc(chat, clock)
        irc.client.send_text(b"NICK slow")
        irc.door.receive_data(irc.queued())
        irc.frames()
        clock.advance(6)  # no USER in time: the IRC door drops it from its timer
        frames = irc.frames()
        assert [f.opcode for f in frames][-2:] == [Opcode.TEXT, Opcode.CLOSE]
        assert frames[-2].data.startswith(b"ERROR ")
        assert b"Registration timed out" in frames[-2].data
        assert int.from_bytes(frames[-1].data[:2], "big") == 1000
        _answered(irc)
    finally:
        chat.close()


def test_an_irc_client_killed_by_the_service_gets_its_error_then_a_close(service):
    clock = ManualClock()
    irc = _irc(service, clock, "ann")
    assert irc.door.irc is not None
    irc.door.irc.disconnect("Killed (oper (bye))")  # as the service does, outside any call
    assert irc.wakes >= 1
    clock.advance(0)  # the end of the call: the close follows what was said
    frames = irc.frames()
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.CLOSE]
    assert frames[0].data.startswith(b"ERROR ") and b"Killed" in frames[0].data
    assert irc.door.data_to_send() == []  # nothing after the close frame
    _answered(irc)


def test_room_messages_reach_an_irc_client_framed_with_one_wake_a_turn(service):
    clock = ManualClock()
    irc = _irc(service, clock, "ann")
    alice = Browser(service, clock, "alice")
    irc.frames()  # alice's join
    irc.wakes = 0
    alice.door.receive_data(alice.say_bytes(_say("one")))
    assert irc.wakes == 1
    alice.door.receive_data(alice.say_bytes(_say("two")))  # not yet written: no new wake
    assert irc.wakes == 1
    lines = [f.data for f in irc.frames()]
    assert [line.rsplit(b" :", 1)[-1] for line in lines] == [b"one", b"two"]
    assert all(b"\r\n" not in line for line in lines)
    alice.door.receive_data(alice.say_bytes(_say("three")))  # written: the next wakes again
    assert irc.wakes == 2


def test_an_irc_quit_gets_its_error_then_a_close_in_the_same_read(service):
    clock = ManualClock()
    irc = _irc(service, clock, "ann")
    irc.client.send_text(b"QUIT :done")
    irc.door.receive_data(irc.queued())
    frames = irc.frames()
    assert [f.opcode for f in frames][-2:] == [Opcode.TEXT, Opcode.CLOSE]
    assert frames[-2].data.startswith(b"ERROR ")
    _answered(irc)


def test_a_big_frame_sent_a_byte_at_a_time_is_gathered_in_one_buffer(service):
    # Gathered in place and read once whole: linear in the frame's size, not quadratic.
    clock = ManualClock()
    alice, bob = Browser(service, clock, "alice"), Browser(service, clock, "bob")
    text = "y" * 3000
    body = json.dumps(_say(text)).encode()
    alice.client.send_text(body[:-1] + b" " * (FRAME_MAX - len(body)) + b"}")  # 16 KiB
    data = alice.queued()
    alice.door.receive_data(data[:1])
    alice.door.receive_data(data[1:2])
    buffer = alice.door.ws._inbox
    assert isinstance(buffer, bytearray)
    for at in range(2, len(data) - 1):
        alice.door.receive_data(data[at:at + 1])
        assert alice.door.ws._inbox is buffer
    assert bob.texts() == []
    alice.door.receive_data(data[-1:])
    assert bob.texts() == [text] and not alice.door.ws._inbox


@pytest.mark.parametrize(("bad", "code"), [
    (bytes((0x81, 0x05)) + b"hello", 1002),  # unmasked
    (bytes((0x81, 0xFF)) + (FRAME_MAX + 1).to_bytes(8, "big") + b"mask", 1009),  # too big
])
def test_a_bad_header_after_a_partial_read_is_refused_at_once(service, bad, code):
    clock = ManualClock()
    alice = Browser(service, clock, "alice")
    alice.door.receive_data(bad[:1])
    alice.door.receive_data(bad[1:])
    assert _closed_with(alice) == code
