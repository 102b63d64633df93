"""The web door's fan-out and keep-alive, driven with bytes and a manual clock.

A room message is rendered and framed once and the same bytes go to every
browser; the WebSocket's own state (a close handshake, a protocol error)
still stops them. A client shown to read a backlog (its output paused, or
drained since the ping) is not closed because its pong waits behind our
output (issue 16: 102 clients at N=2000 were); output merely queued to a
client is no such evidence. websockets'
``ClientProtocol`` reads every answer, so the frames are checked as a
browser's library would parse them.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from irc_support import ManualClock
from sockhub.doors.web import WebDoor
from sockhub.doors.web.chat_json import dumps, event_object, message_json
from sockhub.doors.web.frames import frame as _frame
from sockhub.hub import Message
from sockhub.protocols.base import ConnectionInfo
from sockhub.services.chat import ChatService


class Browser:
    """One WebDoor and the websockets client protocol that reads it; counts its wake-ups."""

    def __init__(self, service: ChatService, clock: ManualClock, nick: str | None = None,
                 *rooms: str, subprotocol: str | None = None, deflate: bool = False) -> None:
        self.door = door = WebDoor(service)
        door.clock = clock
        self.wakes = 0
        door.wake = self._woken
        door.connection_made(ConnectionInfo(peer="127.0.0.1:5555", local="test",
                                            transport="tcp"))
        self.client = ClientProtocol(
            parse_uri("ws://test/ws"), subprotocols=[subprotocol] if subprotocol else None,
            extensions=[ClientPerMessageDeflateFactory()] if deflate else None)
        self.client.send_request(self.client.connect())
        self.feed()
        self.frames()  # the handshake's answer
        if nick is not None:
            self.send({"type": "hello", "version": 1, "nick": nick})
            for room in rooms:
                self.send({"type": "join", "room": room})
            self.frames()

    def _woken(self) -> None:
        self.wakes += 1

    def feed(self) -> None:
        """What the client queued (frames, pongs, a close) to the door."""
        data = b"".join(self.client.data_to_send())
        if data:
            self.door.receive_data(data)

    def send(self, obj: object) -> None:
        self.client.send_text(json.dumps(obj).encode())
        self.feed()

    def raw(self) -> list[bytes]:
        return self.door.data_to_send()

    def frames(self, raw: list[bytes] | None = None) -> list[Frame]:
        self.client.receive_data(b"".join(self.raw() if raw is None else raw))
        return [e for e in self.client.events_received() if isinstance(e, Frame)]

    def objects(self) -> list[dict]:
        return [json.loads(f.data) for f in self.frames() if f.opcode is Opcode.TEXT]


# The frame and the JSON, built by hand: the same bytes as the libraries' -------------

@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_a_frame_is_the_bytes_websockets_would_serialize(size, opcode):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert _frame(opcode, data) == Frame(opcode, data).serialize(mask=False)


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    ['"', "\\", "\x00\x1f\x7f", "</script><img src=x onerror=alert(1)>", "\u2028\u2029",
     "é中😀", "\\u0022"])


@given(room=_text, nick=_text, text=_text, username=_text, address=_text,
       ts=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
       | st.integers(-10**6, 10**6),
       ident=st.none() | st.integers(0, 2**63 - 1), action=st.booleans(), notice=st.booleans())
def test_message_json_is_exactly_what_dumps_renders(room, nick, text, username, address, ts,
                                                   ident, action, notice):
    message = Message(room=room, nick=nick, text=text, ts=ts, id=ident, action=action,
                      notice=notice, username=username, address=address)
    rendered = message_json(message)
    assert rendered == dumps(event_object(message) or {})
    # Markup stays text: the page inserts it as a text node, never as HTML.
    assert json.loads(rendered)["text"] == text


def test_message_json_refuses_a_timestamp_json_cannot_carry():
    with pytest.raises(ValueError):
        message_json(Message(room="#r", nick="a", text="x", ts=math.inf))


# The fan-out ------------------------------------------------------------------------

def test_a_room_message_is_framed_once_and_the_same_bytes_reach_every_browser(service):
    clock = ManualClock()
    alice, bob, carol = (Browser(service, clock, n, "#r") for n in ("alice", "bob", "carol"))
    for browser in (alice, bob, carol):
        browser.frames()
        browser.wakes = 0
    alice.send({"type": "say", "room": "#r", "text": "<b>hi</b> \x01"})
    alice.send({"type": "say", "room": "#r", "text": "second"})
    bob_raw, carol_raw = bob.raw(), carol.raw()
    assert len(bob_raw) == len(carol_raw) == 2
    assert all(b is c for b, c in zip(bob_raw, carol_raw, strict=True))  # the same bytes object
    # The engine is woken by the first output of a turn only (its flush takes the rest).
    assert (bob.wakes, carol.wakes) == (1, 1)  # nothing flushed between the two
    seen = [json.loads(f.data) for f in bob.frames(bob_raw)]
    assert [(m["type"], m["nick"], m["text"]) for m in seen] == [
        ("message", "alice", "<b>hi</b> \x01"), ("message", "alice", "second")]
    assert [m["text"] for m in alice.objects() if m["type"] == "message"] == [
        "<b>hi</b> \x01", "second"]


def test_permessage_deflate_is_not_negotiated_so_frames_can_be_shared(service):
    # A compressed frame would depend on each connection's compression context.
    clock = ManualClock()
    alice = Browser(service, clock, "alice", "#r", deflate=True)
    bob = Browser(service, clock, "bob", "#r", deflate=True)
    assert alice.client.extensions == [] and bob.client.extensions == []
    alice.frames()
    bob.frames()
    alice.send({"type": "say", "room": "#r", "text": "plain"})
    [mine], [theirs] = alice.raw(), bob.raw()
    assert mine is theirs and mine[0] & 0x70 == 0  # no RSV1: not compressed
    assert json.loads(bob.frames([theirs])[0].data)["text"] == "plain"


def test_one_wake_a_turn_however_many_messages_it_brings(service):
    clock = ManualClock()
    _alice, bob = (Browser(service, clock, n, "#r") for n in ("alice", "bob"))
    bob.frames()
    bob.wakes = 0
    user = service.find_user("alice")
    assert user is not None
    messages = [Message(room="#r", nick="alice", text=f"m{i}", ts=1.0 + i, id=100 + i)
                for i in range(5)]
    for message in messages:  # as a group commit's batch arrives: one turn, no flush between
        bob.door.json.deliver(message)  # type: ignore[union-attr]
    assert bob.wakes == 1
    assert [m["text"] for m in bob.objects()] == [f"m{i}" for i in range(5)]


def test_after_the_clients_close_frame_nothing_follows_the_close_reply(service):
    clock = ManualClock()
    alice, bob = (Browser(service, clock, n, "#r") for n in ("alice", "bob"))
    bob.frames()
    bob.client.send_close(1000, "bye")
    bob.feed()
    alice.send({"type": "say", "room": "#r", "text": "after the close"})
    frames = bob.frames()
    # The close handshake is intact (RFC 6455 §5.5.1): its reply is the last frame.
    assert [f.opcode for f in frames] == [Opcode.CLOSE]
    assert bob.door.close_expected()


def test_a_protocol_error_stops_the_fan_out_to_that_browser(service):
    clock = ManualClock()
    alice, bob = (Browser(service, clock, n, "#r") for n in ("alice", "bob"))
    bob.frames()
    bob.door.receive_data(b"\x81\x05hello")  # an unmasked client frame: 1002
    alice.send({"type": "say", "room": "#r", "text": "not for bob"})
    raw = b"".join(bob.raw())
    assert raw.startswith(b"\x88") and b"not for bob" not in raw
    assert bob.door.close_expected()


def test_irc_over_websocket_clients_share_the_framed_line(service):
    clock = ManualClock()
    clients = []
    for nick in ("ircone", "irctwo"):
        browser = Browser(service, clock, subprotocol="text.ircv3.net")
        for line in (f"NICK {nick}", f"USER {nick} 0 * :{nick}", "JOIN #r"):
            browser.client.send_text(line.encode())
            browser.feed()
        browser.frames()
        clients.append(browser)
    alice = Browser(service, clock, "alice", "#r")
    for browser in clients:
        browser.raw()  # the joins
    alice.send({"type": "say", "room": "#r", "text": "to irc"})
    one, two = (c.raw() for c in clients)
    assert len(one) == len(two) == 1 and one[0] is two[0]
    [frame] = clients[0].frames(one)
    assert frame.opcode is Opcode.TEXT and frame.data.endswith(b"PRIVMSG #r :to irc")


def test_the_one_frame_cache_keeps_texts_lines_and_opcodes_apart(service):
    # One cache for the door (review): a JSON text, a line for text IRC clients and
    # the same line for binary ones follow each other through it, each framed right.
    clock = ManualClock()
    irc = {}
    for nick, subprotocol in (("irctext", "text.ircv3.net"), ("ircbin", "binary.ircv3.net")):
        browser = Browser(service, clock, subprotocol=subprotocol)
        for line in (f"NICK {nick}", f"USER {nick} 0 * :{nick}", "JOIN #r"):
            browser.client.send_text(line.encode())
            browser.feed()
        browser.frames()
        irc[nick] = browser
    alice, bob = (Browser(service, clock, n, "#r") for n in ("alice", "bob"))
    for browser in (*irc.values(), bob):
        browser.frames()
    for text in ("first", "second"):
        alice.send({"type": "say", "room": "#r", "text": text})
        [shown] = bob.objects()
        assert shown["type"] == "message" and shown["text"] == text
        for nick, opcode in (("irctext", Opcode.TEXT), ("ircbin", Opcode.BINARY)):
            [frame] = irc[nick].frames()
            assert frame.opcode is opcode and frame.data.endswith(f"PRIVMSG #r :{text}".encode())
        bob.send({"type": "ping", "id": text})  # an answer in between, framed alone
        [pong] = bob.objects()
        assert pong == {"type": "pong", "re": text}


# Keep-alive -----------------------------------------------------------------------

def _pinged(browser: Browser, clock: ManualClock, seconds: float = 30) -> None:
    """Let the interval pass: the door pings; the client's answer is dropped (not fed)."""
    clock.advance(seconds)
    [ping] = browser.frames()
    assert ping.opcode is Opcode.PING
    browser.client.data_to_send()  # its pong is lost on the way (or far behind)


def test_a_client_draining_a_backlog_the_whole_time_is_not_closed_for_a_late_pong(service):
    clock = ManualClock()
    alice, bob = (Browser(service, clock, n, "#r") for n in ("alice", "bob"))
    bob.frames()
    _pinged(bob, clock)
    for second in range(60):  # a message a second for a minute: three ping timeouts
        alice.send({"type": "say", "room": "#r", "text": f"tick {second}"})
        alice.frames()
        if second % 10 == 0:  # its output backs up past the high water mark ...
            bob.door.pause_writing()
        elif second % 10 == 5:  # ... and drains: evidence it reads
            bob.door.resume_writing()
        clock.advance(1)
        assert not bob.door.close_expected(), second
        assert all(f.opcode is not Opcode.CLOSE for f in bob.frames())
    # The evidence stops (output still flows): closed within two timeouts.
    for second in range(40):
        alice.send({"type": "say", "room": "#r", "text": f"tock {second}"})
        clock.advance(1)
        if bob.door.close_expected():
            break
    [close] = [f for f in bob.frames() if f.opcode is Opcode.CLOSE]
    assert close.data[2:] == b"ping timeout"


def test_a_vanished_peer_in_a_busy_room_is_closed_on_time(service):
    # Review of issue 16's fix: output queued to a peer is no sign it reads.
    # Steady room traffic, too little to pause its output, must not keep a
    # peer that stopped answering alive (and a member of its rooms).
    clock = ManualClock()
    alice, bob = (Browser(service, clock, n, "#r") for n in ("alice", "bob"))
    bob.frames()
    start = clock.time()  # bob's last frame (its join)
    pings, closed_at = 0, None
    for second in range(120):
        alice.send({"type": "say", "room": "#r", "text": f"tick {second}"})
        alice.frames()
        clock.advance(1)
        for frame in bob.frames():
            pings += frame.opcode is Opcode.PING
            if frame.opcode is Opcode.CLOSE:
                assert frame.data[2:] == b"ping timeout"
                closed_at = clock.time()
        bob.client.data_to_send()  # its pongs never arrive
        if closed_at is not None:
            break
    assert pings == 1 and closed_at is not None
    assert start + 30 + 20 <= closed_at <= start + 30 + 2 * 20  # pinged at 30 s
    bob.door.connection_lost()  # as the engine, once the close is written
    assert any(o.get("type") == "quit" and o.get("nick") == "bob" for o in alice.objects())


def test_a_pong_late_behind_output_before_the_ping_is_waited_for(service):
    clock = ManualClock()
    alice, bob = (Browser(service, clock, n, "#r") for n in ("alice", "bob"))
    bob.frames()
    clock.advance(29)
    alice.send({"type": "say", "room": "#r", "text": "a burst just before the ping"})
    bob.door.pause_writing()  # the burst backed up past the high water mark
    bob.frames()
    _pinged(bob, clock, 1)  # pinged at 30 s, behind that backlog
    clock.advance(15)
    bob.door.resume_writing()  # the backlog drained after the ping: it reads
    clock.advance(10)  # past the timeout: the ping may wait behind the rest
    assert not bob.door.close_expected()
    bob.client.send_pong(b"sockhub")
    bob.feed()  # the answer, late
    clock.advance(49)  # the next ping, 30 s after the answer, and nearly its whole timeout
    assert not bob.door.close_expected()
    assert [f.opcode for f in bob.frames()] == [Opcode.PING]


def test_a_drain_before_the_ping_earns_no_extension(service):
    clock = ManualClock()
    bob = Browser(service, clock, "bob", "#r")
    bob.frames()
    clock.advance(20)
    bob.door.pause_writing()
    bob.door.resume_writing()  # drained 10 s before the ping: says nothing of the ping
    _pinged(bob, clock, 10)
    clock.advance(20)
    [close] = bob.frames()
    assert close.opcode is Opcode.CLOSE and close.data[2:] == b"ping timeout"


def test_a_client_whose_output_is_paused_is_not_closed_while_we_do_not_read_it(service):
    clock = ManualClock()
    bob = Browser(service, clock, "bob", "#r")
    bob.frames()
    _pinged(bob, clock)
    bob.door.pause_writing()  # the engine stopped reading: its pong could not be read
    clock.advance(100)
    assert not bob.door.close_expected()
    bob.door.resume_writing()  # it read: its output drained
    clock.advance(20)  # that counts as receiving: one more timeout
    assert not bob.door.close_expected()
    clock.advance(20)  # quiet, not paused, no answer: closed
    [close] = bob.frames()
    assert close.opcode is Opcode.CLOSE and close.data[2:] == b"ping timeout"


def test_a_quiet_client_that_does_not_answer_is_still_closed_on_time(service):
    clock = ManualClock()
    bob = Browser(service, clock, "bob", "#r")
    bob.frames()
    _pinged(bob, clock)
    clock.advance(19.9)
    assert not bob.door.close_expected()
    clock.advance(0.1)
    [close] = bob.frames()
    assert close.opcode is Opcode.CLOSE and close.data[2:] == b"ping timeout"
