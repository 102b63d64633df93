"""A WebSocket keeps nothing of its HTTP handshake (issue 16: idle memory per client).

h11's parser and request and the headers websockets parsed were ~4 KiB a
connection for its whole life; once upgraded the door drops them, and must
still serve the WebSocket (and a refused handshake still gets its answer).
"""

from __future__ import annotations

import gc
import json

from test_web_door_pure import Browser, door_for, out
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.server import ServerProtocol

from irc_support import ManualClock
from sockhub.doors.web.frames import ClientFrames


def _reachable(root: object, depth: int = 3) -> list[object]:
    """What ``root`` holds, a few references deep."""
    seen, level = [], [root]
    for _ in range(depth):
        level = [ref for obj in level for ref in gc.get_referents(obj)]
        seen.extend(level)
    return seen


def test_an_upgraded_connection_keeps_neither_h11_nor_websockets_and_still_chats(service):
    browser = Browser(service, ManualClock())
    assert isinstance(browser.response, Response) and browser.response.status_code == 101
    door = browser.door
    assert door.http is None and door._request is None
    # websockets judged the handshake; its ServerProtocol (parser, buffers, the parsed
    # request) is gone with it: the door reads frames itself (frames.py).
    assert type(door.ws) is ClientFrames
    assert not any(isinstance(obj, ServerProtocol) for obj in _reachable(door))
    browser.send({"type": "hello", "version": 1, "nick": "ann"})
    [welcome] = browser.objects()
    assert welcome["type"] == "welcome" and welcome["nick"] == "ann"
    browser.send({"type": "join", "room": "#a"})
    browser.send({"type": "say", "room": "#a", "text": "still here"})
    service.commit()
    assert any(o.get("text") == "still here" for o in browser.objects())


def test_fragments_pings_and_the_close_work_without_websockets(service):
    browser = Browser(service, ManualClock())
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
    assert closes and Close.parse(closes[0].data) == Close(CloseCode.NORMAL_CLOSURE, "bye")
    assert browser.door.close_expected()


def test_plain_http_keeps_its_parser_between_requests(service):
    door = door_for(service, ManualClock())
    for _ in range(2):
        door.receive_data(b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        assert out(door).startswith(b"HTTP/1.1 200 OK\r\n")
        assert door.http is not None


def test_a_refused_handshake_gets_its_answer_and_keeps_no_websocket(service):
    refused = Browser(service, ManualClock(),
                      headers=(("Origin", "https://elsewhere.example"),))
    assert isinstance(refused.response, Response) and refused.response.status_code == 403
    assert refused.door.ws is None and refused.door.close_expected()


def test_the_registration_deadline_goes_with_the_welcome(service):
    # Not kept, cancelled, until it fires for nothing: its bound method and wheel entry
    # were ~120 B of every idle client (issue 16).
    browser = Browser(service, ManualClock())
    assert browser.door._timer is not None  # registration_timeout: waiting for hello
    browser.send({"type": "nick", "nick": "early"})  # not a hello: still waiting
    assert browser.door._timer is not None
    browser.send({"type": "hello", "version": 1, "nick": "ann"})
    assert browser.objects()[-1]["type"] == "welcome"
    assert browser.door._timer is None
