"""A WebSocket keeps nothing of its HTTP handshake (issue 16: idle memory per client).

h11's parser and request and the headers websockets parsed were ~4 KiB a
connection for its whole life; once upgraded the door drops them, and must
still serve the WebSocket (and a refused handshake still gets its answer).
"""

from __future__ import annotations

import json

import pytest
from test_web_door_pure import Browser, door_for, out, service  # noqa: F401 (fixture)
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import Protocol as WsProtocol

from irc_support import ManualClock
from sockhub.doors.web.door import _NO_HEADERS


def test_an_upgraded_connection_drops_its_http_parser_and_still_chats(service):  # noqa: F811
    browser = Browser(service, ManualClock())
    assert isinstance(browser.response, Response) and browser.response.status_code == 101
    door = browser.door
    assert door.http is None and door._request is None
    # What only the handshake read is gone too: the Origin list, the subprotocols,
    # the chooser bound to the protocol.
    assert door.ws.origins is None and door.ws.available_subprotocols is None
    assert "select_subprotocol" not in vars(door.ws)
    assert door.ws.origin is None  # checked at the handshake, not kept
    browser.send({"type": "hello", "version": 1, "nick": "ann"})
    [welcome] = browser.objects()
    assert welcome["type"] == "welcome" and welcome["nick"] == "ann"
    browser.send({"type": "join", "room": "#a"})
    browser.send({"type": "say", "room": "#a", "text": "still here"})
    service.commit()
    assert any(o.get("text") == "still here" for o in browser.objects())


def test_an_upgraded_connection_parses_frames_without_the_handshake_parser(service):  # noqa: F811
    # The handshake parser's suspended frame (and the Request it held) is gone: the
    # frame parser runs on its own, and fragments, pings and the close still work.
    browser = Browser(service, ManualClock())
    ws = browser.door.ws
    assert ws.parser.gi_code is WsProtocol.parse.__code__
    assert ws.extensions == () and ws.id.int == 0  # shared by every connection
    browser.send({"type": "hello", "version": 1, "nick": "ann"})
    assert browser.objects()[0]["type"] == "welcome"
    client = browser.client
    client.send_text(b'{"type": "join", ', fin=False)
    client.send_continuation(b'"room": "#a"}', fin=True)
    client.send_ping(b"are you there")
    browser.door.receive_data(b"".join(client.data_to_send()))
    service.commit()
    events = browser.pump()
    assert any(isinstance(e, Frame) and e.opcode is Opcode.PONG and e.data == b"are you there"
               for e in events)
    texts = [json.loads(e.data) for e in events
             if isinstance(e, Frame) and e.opcode is Opcode.TEXT]
    assert any(o.get("room") == "#a" for o in texts), texts  # the fragmented join, taken
    client.send_close(CloseCode.NORMAL_CLOSURE, "bye")
    browser.door.receive_data(b"".join(client.data_to_send()))
    events = browser.pump()
    closes = [e for e in events if isinstance(e, Frame) and e.opcode is Opcode.CLOSE]
    assert closes and Close.parse(closes[0].data).code == CloseCode.NORMAL_CLOSURE
    assert browser.door.close_expected()


def test_plain_http_keeps_its_parser_between_requests(service):  # noqa: F811
    door = door_for(service, ManualClock())
    for _ in range(2):
        door.receive_data(b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        assert out(door).startswith(b"HTTP/1.1 200 OK\r\n")
        assert door.http is not None


def test_the_empty_headers_every_connection_shares_stay_empty(service):  # noqa: F811
    # One Headers object is every upgraded connection's parsed handshake headers
    # (review): nothing may write to it, or one client's headers reach them all.
    clock = ManualClock()
    ann = Browser(service, clock, headers=(("X-Mine", "ann's"),))
    bob = Browser(service, clock, headers=(("Cookie", "sockhub_session=bob"),))
    for browser, nick in ((ann, "ann"), (bob, "bob")):
        browser.send({"type": "hello", "version": 1, "nick": nick})
        browser.send({"type": "join", "room": "#a"})
    ann.send({"type": "say", "room": "#a", "text": "hi"})
    service.commit()
    clock.advance(60)  # pings, unanswered: closed for ping timeout
    bob.door.closing_notice("server shutting down")
    for browser in (ann, bob):
        browser.pump()
        browser.door.connection_lost()
    refused = Browser(service, clock, headers=(("Origin", "https://elsewhere.example"),))
    assert isinstance(refused.response, Response) and refused.response.status_code == 403
    assert len(_NO_HEADERS) == 0 and list(_NO_HEADERS.raw_items()) == []
    # And it refuses writes, by us or by the library.
    for write in (lambda: _NO_HEADERS.__setitem__("X-Leak", "1"),
                  lambda: _NO_HEADERS.update({"X-Leak": "1"}),
                  lambda: _NO_HEADERS.setdefault("X-Leak", "1")):
        with pytest.raises(TypeError):
            write()
    assert len(_NO_HEADERS) == 0 and str(_NO_HEADERS) == "\r\n"
