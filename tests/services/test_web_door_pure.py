"""The web door driven with bytes and a manual clock: every split of the input, and its timers.

No sockets: the door is fed as the engine would feed it, and a websockets
``ClientProtocol`` reads what it answers, so the deadlines (408, keep-alive,
ping) are checked by moving the clock, not by waiting.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from helpers import split_at_every_byte
from irc_support import ManualClock
from sockhub.doors.web import WebDoor
from sockhub.limits import Limits
from sockhub.protocols.base import ConnectionInfo
from sockhub.services.chat import ChatService, ChatSettings


@pytest.fixture
def service(tmp_path):
    chat = ChatService(ChatSettings(data_dir=tmp_path, flood_rate=None), Limits())
    yield chat
    chat.close()


def door_for(service: ChatService, clock: ManualClock) -> WebDoor:
    door = WebDoor(service)
    door.clock = clock
    door.connection_made(ConnectionInfo(peer="127.0.0.1:5555"))
    return door


def out(door: WebDoor) -> bytes:
    return b"".join(door.data_to_send())


HELLO = b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.mark.parametrize("chunks", split_at_every_byte(HELLO))
def test_a_request_split_anyhow_gets_the_same_answer(service, chunks):
    door = door_for(service, ManualClock())
    answer = b""
    for chunk in chunks:
        door.receive_data(chunk)
        answer += out(door)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nHello, World")
    assert not door.close_expected()


def test_an_incomplete_request_gets_408_when_the_deadline_passes(service):
    clock = ManualClock()
    door = door_for(service, clock)
    door.receive_data(b"GET /hello HTTP/1.1\r\nHost: te")
    clock.advance(9.9)
    assert out(door) == b"" and not door.close_expected()
    clock.advance(0.2)
    assert out(door).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert door.close_expected()


def test_keep_alive_closes_after_the_idle_time_and_a_new_request_resets_it(service):
    clock = ManualClock()
    door = door_for(service, clock)
    door.receive_data(HELLO)
    out(door)
    clock.advance(29)
    door.receive_data(HELLO)
    assert out(door).startswith(b"HTTP/1.1 200 ")
    clock.advance(29)
    assert not door.close_expected()
    clock.advance(2)
    assert door.close_expected() and out(door) == b""  # an idle close says nothing


class Browser:
    """A websockets client protocol wired to one door."""

    def __init__(self, service: ChatService, clock: ManualClock, *, extra: bytes = b"",
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.door = door_for(service, clock)
        self.client = ClientProtocol(parse_uri("ws://test/ws"))
        self.pending: list[object] = []
        request = self.client.connect()
        for name, value in headers:
            request.headers[name] = value
        self.client.send_request(request)
        self.door.receive_data(b"".join(self.client.data_to_send()) + extra)
        self.response, *self.pending = self.pump()

    def pump(self) -> list[object]:
        self.client.receive_data(out(self.door))
        events, self.pending = [*self.pending, *self.client.events_received()], []
        return events

    def send(self, obj: object) -> None:
        self.client.send_text(json.dumps(obj).encode())
        self.door.receive_data(b"".join(self.client.data_to_send()))

    def objects(self) -> list[dict]:
        return [json.loads(f.data) for f in self.pump()
                if isinstance(f, Frame) and f.opcode is Opcode.TEXT]


def test_frames_right_behind_the_handshake_are_not_lost(service):
    # A client may send its first frame in the same read as the request.
    first = ClientProtocol(parse_uri("ws://test/ws"))
    first.send_request(first.connect())
    first.data_to_send()
    frame = Frame(Opcode.TEXT, b'{"type":"hello","version":1,"nick":"quick"}')
    browser = Browser(service, ManualClock(), extra=frame.serialize(mask=True))
    assert isinstance(browser.response, Response) and browser.response.status_code == 101
    [welcome] = browser.objects()
    assert welcome["type"] == "welcome" and welcome["nick"] == "quick"


def test_a_foreign_origin_is_refused_with_403_before_any_websocket(service):
    browser = Browser(service, ManualClock(), headers=(("Origin", "http://evil.example"),))
    assert isinstance(browser.response, Response) and browser.response.status_code == 403
    assert browser.door.close_expected()
    own = Browser(service, ManualClock(), headers=(("Origin", "http://test"),))
    assert isinstance(own.response, Response) and own.response.status_code == 101


def test_a_quiet_client_is_pinged_then_closed_with_ping_timeout(service):
    clock = ManualClock()
    browser = Browser(service, clock)
    browser.send({"type": "hello", "version": 1})
    browser.objects()
    clock.advance(29)
    assert browser.pump() == []
    clock.advance(1)
    [ping] = browser.pump()
    assert isinstance(ping, Frame) and ping.opcode is Opcode.PING
    # This client does not answer (its pong is never fed back).
    browser.client.data_to_send()
    clock.advance(20)
    [close] = browser.pump()
    assert isinstance(close, Frame) and close.opcode is Opcode.CLOSE
    assert close.data[:2] == (1001).to_bytes(2, "big") and close.data[2:] == b"ping timeout"
    assert browser.door.close_expected()


def test_a_pong_keeps_the_client(service):
    clock = ManualClock()
    browser = Browser(service, clock)
    clock.advance(30)
    browser.pump()
    browser.door.receive_data(b"".join(browser.client.data_to_send()))  # the pong
    clock.advance(25)
    assert not browser.door.close_expected()


def test_a_graceful_stop_sends_1001_with_the_reason(service):
    browser = Browser(service, ManualClock())
    browser.door.closing_notice("server shutting down")
    [close] = browser.pump()
    assert isinstance(close, Frame) and close.opcode is Opcode.CLOSE
    assert close.data == (1001).to_bytes(2, "big") + b"server shutting down"
    assert browser.door.close_expected()


def test_no_hello_in_time_closes_with_1008(tmp_path):
    service = ChatService(ChatSettings(data_dir=tmp_path, registration_timeout=5), Limits())
    clock = ManualClock()
    browser = Browser(service, clock)
    clock.advance(4.9)
    assert browser.pump() == []
    clock.advance(0.1)
    [close] = browser.pump()
    assert isinstance(close, Frame) and close.data == (1008).to_bytes(2, "big") + b"no hello"
    service.close()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(st.binary(min_size=1, max_size=64), max_size=8))
def test_any_bytes_get_an_http_status_or_nothing_never_an_exception(service, data):
    door = door_for(service, ManualClock())
    answer = b""
    for chunk in data:
        door.receive_data(chunk)
        answer += out(door)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 ")
    assert b"Traceback" not in answer and b" 500 " not in answer[:13]
    door.connection_lost()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=80), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "id", "room", "text", "nick", "to", "limit", "before",
                         "after", "version", "action", "password", "topic"]),
        inner, max_size=5),
    max_leaves=8).map(json.dumps)))
def test_any_frame_text_gets_json_answers_never_an_exception(service, text):
    browser = Browser(service, ManualClock())
    browser.send({"type": "hello", "version": 1})
    browser.objects()
    browser.client.send_text(text.encode())
    browser.door.receive_data(b"".join(browser.client.data_to_send()))
    for frame in browser.pump():
        assert isinstance(frame, Frame)
        if frame.opcode is Opcode.TEXT:
            assert isinstance(json.loads(frame.data), dict)
        else:
            assert frame.opcode is Opcode.CLOSE and frame.data[:2] != (1011).to_bytes(2, "big")
    browser.door.connection_lost()


def test_a_text_that_cannot_be_utf8_is_still_framed_not_raised(service):
    browser = Browser(service, ManualClock())
    browser.door.send_text("bad \ud800 text")
    [frame] = [f for f in browser.pump() if isinstance(f, Frame)]
    assert frame.data.decode() == "bad ? text"
