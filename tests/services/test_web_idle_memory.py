"""A WebSocket keeps nothing of its HTTP handshake (issue 16: idle memory per client).

h11's parser and request and the headers websockets parsed were ~4 KiB a
connection for its whole life; once upgraded the door drops them, and must
still serve the WebSocket (and a refused handshake still gets its answer).
"""

from __future__ import annotations

from test_web_door_pure import Browser, door_for, out, service  # noqa: F401 (fixture)
from websockets.http11 import Response

from irc_support import ManualClock


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
