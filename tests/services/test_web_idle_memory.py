"""A WebSocket keeps nothing of its HTTP handshake (issue 16: idle memory per client).

h11's parser and request and the headers websockets parsed were ~4 KiB a
connection for its whole life; once upgraded the door drops them, and must
still serve the WebSocket (and a refused handshake still gets its answer).
"""

from __future__ import annotations

import pytest
from test_web_door_pure import Browser, door_for, out, service  # noqa: F401 (fixture)
from websockets.http11 import Response

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
    browser.send({"type": "hello", "version": 1, "nick": "ann"})
    [welcome] = browser.objects()
    assert welcome["type"] == "welcome" and welcome["nick"] == "ann"
    browser.send({"type": "join", "room": "#a"})
    browser.send({"type": "say", "room": "#a", "text": "still here"})
    service.commit()
    assert any(o.get("text") == "still here" for o in browser.objects())


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
