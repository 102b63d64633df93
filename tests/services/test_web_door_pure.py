"""The web door driven with bytes and a manual clock: every split of the input, and its timers.

No sockets: the door is fed as the engine would feed it, and a websockets
``ClientProtocol`` reads what it answers, so the deadlines (408, keep-alive,
ping) are checked by moving the clock, not by waiting.
"""

from __future__ import annotations

import json
import re

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


def door_for(service: ChatService, clock: ManualClock, *, local: str = "test",
             transport: str = "tcp") -> WebDoor:
    door = WebDoor(service)
    door.clock = clock
    door.connection_made(ConnectionInfo(peer="127.0.0.1:5555", local=local,
                                        transport=transport))
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
                 headers: tuple[tuple[str, str], ...] = (), uri: str = "ws://test/ws",
                 **info: str) -> None:
        self.door = door_for(service, clock, **info)
        self.client = ClientProtocol(parse_uri(uri))
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
    # The engine's close() after the notice: the door waits for the client's close
    # (RFC 6455 §7.1.2), then hangs up (§7.1.1: the server closes TCP first).
    browser.door.close()
    assert not browser.door.close_expected() and out(browser.door) == b""
    browser.door.receive_data(b"".join(browser.client.data_to_send()))
    assert browser.door.close_expected() and out(browser.door) == b""


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


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


LOOPBACK = "127.0.0.1:8080"


@pytest.mark.parametrize("uri", ["ws://evil.example:8080/ws", "ws://attacker.test/ws"])
def test_dns_rebinding_a_foreign_host_on_loopback_gets_421_and_no_websocket(service, uri):
    origin = uri.replace("ws://", "http://").removesuffix("/ws")
    browser = Browser(service, ManualClock(), uri=uri, headers=(("Origin", origin),),
                      local=LOOPBACK)
    assert isinstance(browser.response, Response) and browser.response.status_code == 421
    assert browser.door.close_expected() and browser.door.ws is None
    door = door_for(service, ManualClock(), local="[::1]:8080")
    door.receive_data(b"GET / HTTP/1.1\r\nHost: evil.example:8080\r\n\r\n")
    assert status_of(out(door)) == 421 and door.close_expected()


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:8080",
                                  "[::1]", "[::1]:8080", "LocalHost:8080", "chat.local:8080",
                                  "allowed.example"])
def test_loopback_names_the_server_name_and_web_origin_hosts_are_served(tmp_path, host):
    settings = ChatSettings(data_dir=tmp_path, flood_rate=None, server_name="chat.local",
                            web_origin=("https://allowed.example",))
    chat = ChatService(settings, Limits())
    try:
        door = door_for(chat, ManualClock(), local=LOOPBACK)
        door.receive_data(f"GET /hello HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert status_of(out(door)) == 200
        browser = Browser(chat, ManualClock(), uri=f"ws://{host}/ws",
                          headers=(("Origin", f"http://{host.lower()}"),), local=LOOPBACK)
        assert isinstance(browser.response, Response)
        assert browser.response.status_code == 101
    finally:
        chat.close()


def test_any_host_is_served_on_an_address_that_is_not_loopback(service):
    door = door_for(service, ManualClock(), local="192.0.2.7:8080")
    door.receive_data(b"GET /hello HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert status_of(out(door)) == 200


def test_the_own_origin_takes_its_scheme_from_the_transport(service):
    for transport, good, bad in (("tcp", "http", "https"), ("tls", "https", "http")):
        ok = Browser(service, ManualClock(), headers=(("Origin", f"{good}://test"),),
                     transport=transport)
        assert isinstance(ok.response, Response) and ok.response.status_code == 101
        refused = Browser(service, ManualClock(), headers=(("Origin", f"{bad}://test"),),
                          transport=transport)
        assert isinstance(refused.response, Response) and refused.response.status_code == 403


def test_an_upgrade_websockets_refuses_after_h11_took_it_is_400_not_500(service):
    door = door_for(service, ManualClock())
    many = b"".join(b"X-H%d: v\r\n" % n for n in range(200))
    door.receive_data(b"GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n" + many + b"\r\n")
    answer = out(door)
    assert status_of(answer) == 400 and b"Connection: close" in answer
    assert door.close_expected()


def test_content_length_with_transfer_encoding_is_400_and_a_close(service):
    door = door_for(service, ManualClock())
    door.receive_data(b"POST /hello HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\n\r\n")
    answer = out(door)
    assert status_of(answer) == 400 and answer.count(b"HTTP/1.1") == 1
    assert door.close_expected()


def test_a_declared_body_over_the_limit_is_413_at_once_not_408_later(service):
    door = door_for(service, ManualClock())
    door.receive_data(b"GET /hello HTTP/1.1\r\nHost: test\r\nContent-Length: 999999999\r\n\r\n")
    assert status_of(out(door)) == 413 and door.close_expected()
    door = door_for(service, ManualClock())
    door.receive_data(b"GET /hello HTTP/1.1\r\nHost: test\r\nContent-Length: "
                      + b"9" * 5000 + b"\r\n\r\n")
    assert status_of(out(door)) in (400, 413) and door.close_expected()  # h11: 400


def test_a_failing_closing_notice_still_closes_and_raises_nothing(service, monkeypatch):
    browser = Browser(service, ManualClock())

    def broken(self: WebDoor, code: int, reason: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(WebDoor, "_ws_close", broken)
    browser.door.closing_notice("server shutting down")
    assert browser.door.close_expected()


def test_pipelined_requests_are_answered_a_batch_per_turn_in_order(service):
    clock = ManualClock()
    door = door_for(service, clock)
    requests = b"".join(b"GET /hello?%d HTTP/1.1\r\nHost: test\r\n\r\n" % n for n in range(20))
    door.receive_data(requests)
    first = out(door)
    assert first.count(b"HTTP/1.1 200 ") == 8  # the rest on 0-second timers
    clock.advance(0)  # (the manual clock runs the timers each turn sets, too)
    rest = out(door)
    assert rest.count(b"HTTP/1.1 200 ") == 12
    numbers = [int(n) for n in re.findall(rb"/hello\?(\d+)", requests)]
    assert numbers == list(range(20)) and not door.close_expected()


def test_pipelined_requests_wait_while_the_output_does_not_drain(service):
    clock = ManualClock()
    door = door_for(service, clock)
    door.receive_data(HELLO * 12)
    assert out(door).count(b"HTTP/1.1 200 ") == 8
    door.pause_writing()  # the engine: the client is not reading
    clock.advance(0)
    assert out(door) == b""
    door.resume_writing()
    assert out(door).count(b"HTTP/1.1 200 ") == 4


@pytest.mark.parametrize("chunk", [70_000, 2_000])
def test_a_client_far_ahead_of_the_answers_gets_429_and_a_close(service, chunk):
    door = door_for(service, ManualClock())
    door.pause_writing()
    data = b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n" * 2000
    for start in range(0, len(data), chunk):
        door.receive_data(data[start:start + chunk])
        if door.close_expected():
            break
    answer = out(door)
    assert door.close_expected() and b"HTTP/1.1 429 " in answer
    assert answer.count(b"HTTP/1.1 ") <= 1 + 8
