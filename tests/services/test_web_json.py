"""The JSON chat protocol v1 (docs/web-protocol.md) without sockets: JsonChat and a real hub.

Each test drives :class:`JsonChat` with frame texts and reads the JSON it
answers through a fake peer; the chat service behind it is the real one
(hub and SQLite history in a temporary directory), so what is checked is
what a browser would get.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from irc_support import ManualClock
from sockhub.doors.flood import FloodGuard
from sockhub.doors.line import LineDoor
from sockhub.doors.web.chat_json import JsonChat, event_object
from sockhub.hub import Message
from sockhub.hub.events import Joined, Kicked, NickChanged, Private, Quit, Signal
from sockhub.limits import Limits
from sockhub.protocols.base import ConnectionInfo
from sockhub.services.chat import ChatService, ChatSettings


class Peer:
    """What a JsonChat sends, decoded, and how it closed."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.wakes = 0

    def send_text(self, text: str) -> None:
        text.encode()  # every frame must be UTF-8, as the door sends it
        self.sent.append(json.loads(text))

    def push_text(self, text: str) -> None:
        self.send_text(text)
        self.wake()

    def push_texts(self, texts: tuple[str, ...]) -> None:
        for text in texts:
            self.send_text(text)
        self.wake()

    def close_ws(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def wake(self) -> None:
        self.wakes += 1

    def take(self) -> list[dict[str, Any]]:
        out, self.sent = self.sent, []
        return out


class Browser:
    def __init__(self, service: ChatService, clock: ManualClock) -> None:
        self.peer = Peer()
        self.clock = clock
        self.chat = JsonChat(service, self.peer, address="127.0.0.1", now=clock.time())

    def send(self, obj: Any) -> list[dict[str, Any]]:
        text = obj if isinstance(obj, str) else json.dumps(obj)
        self.chat.receive_text(text, self.clock.time())
        return self.peer.take()


@pytest.fixture
def hub(tmp_path):
    service = ChatService(ChatSettings(data_dir=tmp_path, flood_rate=None), Limits())
    yield service
    service.close()


@pytest.fixture
def clock():
    return ManualClock()


def hello(service: ChatService, clock: ManualClock, nick: str) -> Browser:
    browser = Browser(service, clock)
    [welcome] = browser.send({"type": "hello", "version": 1, "nick": nick})
    assert welcome["type"] == "welcome" and welcome["nick"] == nick
    return browser


def test_hello_is_answered_by_welcome_with_the_id_as_re(hub, clock):
    browser = Browser(hub, clock)
    [welcome] = browser.send({"type": "hello", "version": 1, "nick": "alice", "id": 7})
    assert welcome == {"type": "welcome", "version": 1, "nick": "alice", "server": "sockhub",
                       "limits": {"text": 4000, "frame": 16384}, "rooms": [], "re": 7,
                       "account": None, "accounts": "open"}


def test_hello_without_a_nick_gets_a_guest_nick(hub, clock):
    [welcome] = Browser(hub, clock).send({"type": "hello", "version": 1, "nick": ""})
    assert welcome["nick"].startswith("guest-")


def test_a_taken_nick_is_an_error_and_another_hello_may_follow(hub, clock):
    hello(hub, clock, "alice")
    browser = Browser(hub, clock)
    [error] = browser.send({"type": "hello", "version": 1, "nick": "ALICE", "id": "h1"})
    assert error["type"] == "error" and error["code"] == "nick_in_use" and error["re"] == "h1"
    [error] = browser.send({"type": "hello", "version": 1, "nick": "bad nick"})
    assert error["code"] == "invalid_nick"
    [welcome] = browser.send({"type": "hello", "version": 1, "nick": "alice2"})
    assert welcome["nick"] == "alice2"
    [error] = browser.send({"type": "hello", "version": 1, "nick": "alice3"})
    assert error["code"] == "already_registered"


def test_a_version_this_server_does_not_speak_closes_with_1002(hub, clock):
    browser = Browser(hub, clock)
    [error] = browser.send({"type": "hello", "version": 2})
    assert error["code"] == "version"
    assert browser.peer.closed == (1002, "version 1 only")


@pytest.mark.parametrize("frame", ["nope", "[1, 2]", '"text"', "{", "null", "1"])
def test_a_frame_that_is_not_one_json_object_is_bad_json(hub, clock, frame):
    browser = hello(hub, clock, "alice")
    [error] = browser.send(frame)
    assert error["type"] == "error" and error["code"] == "bad_json" and "re" not in error
    assert browser.peer.closed is None  # the connection stays


@pytest.mark.parametrize("message", [
    {"type": "nosuch", "id": 1},
    {"id": 1},
    {"type": 5, "id": 1},
])
def test_an_unknown_type_is_named_in_the_error(hub, clock, message):
    [error] = hello(hub, clock, "alice").send(message)
    assert error["code"] == "unknown_type" and error["re"] == 1


@pytest.mark.parametrize(("message", "field"), [
    ({"type": "join"}, "room"),
    ({"type": "join", "room": 5}, "room"),
    ({"type": "say", "room": "#lobby"}, "text"),
    ({"type": "say", "room": "#lobby", "text": "hi", "action": "yes"}, "action"),
    ({"type": "private", "text": "hi"}, "to"),
    ({"type": "history", "room": "#lobby", "limit": 0}, "limit"),
    ({"type": "history", "room": "#lobby", "limit": 201}, "limit"),
    ({"type": "history", "room": "#lobby", "before": "x"}, "before"),
    ({"type": "history", "room": "#lobby", "limit": True}, "limit"),
    ({"type": "nick", "nick": ["a"]}, "nick"),
    ({"type": "ping", "id": "x" * 65}, "id"),
    ({"type": "ping", "id": {"a": 1}}, "id"),
])
def test_a_missing_or_mistyped_field_is_bad_field_naming_it(hub, clock, message, field):
    [error] = hello(hub, clock, "alice").send(message)
    assert error["code"] == "bad_field"
    assert error["message"].startswith(field)


def test_a_hello_with_a_bad_version_field_is_bad_field(hub, clock):
    [error] = Browser(hub, clock).send({"type": "hello", "version": "1"})
    assert error["code"] == "bad_field" and error["message"].startswith("version")


def test_anything_before_hello_is_not_registered(hub, clock):
    browser = Browser(hub, clock)
    [error] = browser.send({"type": "join", "room": "#lobby", "id": 3})
    assert error == {"type": "error", "code": "not_registered", "message": "send hello first",
                     "re": 3}


def test_unknown_fields_are_ignored(hub, clock):
    [pong] = hello(hub, clock, "alice").send({"type": "ping", "id": 1, "extra": [1, 2]})
    assert pong == {"type": "pong", "re": 1}


def test_join_answers_joined_topic_members_and_history(hub, clock):
    bob = hello(hub, clock, "bob")
    bob.send({"type": "join", "room": "#lobby"})
    for n in range(3):
        bob.send({"type": "say", "room": "#lobby", "text": f"old {n}"})
    alice = hello(hub, clock, "alice")
    answers = alice.send({"type": "join", "room": "#lobby", "id": "j"})
    assert [a["type"] for a in answers] == ["joined", "topic", "members", "history"]
    assert answers[0]["nick"] == "alice" and answers[0]["room"] == "#lobby"
    members = answers[2]
    assert members["re"] == "j"
    assert [m["nick"] for m in members["members"]] == ["alice", "bob"]
    history = answers[3]
    assert history["re"] == "j" and history["more"] is False
    assert [m["text"] for m in history["messages"]] == ["old 0", "old 1", "old 2"]
    assert set(history["messages"][0]) == {"id", "room", "nick", "source", "text", "action",
                                           "notice", "ts"}
    assert history["messages"][0]["source"].startswith("bob!")  # the sender in full
    # bob sees alice arrive
    assert [e["type"] for e in bob.peer.take()][-1] == "joined"


def test_say_comes_back_as_the_acknowledgement_and_reaches_the_room(hub, clock):
    alice, bob = hello(hub, clock, "alice"), hello(hub, clock, "bob")
    alice.send({"type": "join", "room": "#r"})
    bob.send({"type": "join", "room": "#r"})
    alice.peer.take()
    [ack] = alice.send({"type": "say", "room": "#r", "text": "<b>hi</b>", "action": True})
    assert ack["type"] == "message" and ack["nick"] == "alice"
    assert ack["text"] == "<b>hi</b>" and ack["action"] is True and isinstance(ack["id"], int)
    assert bob.peer.take()[-1] == ack


def test_say_to_a_room_one_is_not_in_is_the_hubs_error(hub, clock):
    alice = hello(hub, clock, "alice")
    [error] = alice.send({"type": "say", "room": "#nowhere", "text": "x", "id": 1})
    assert error["code"] in ("not_in_room", "no_such_room") and error["re"] == 1
    [error] = alice.send({"type": "join", "room": "nohash"})
    assert error["code"] == "invalid_room"
    [error] = alice.send({"type": "private", "to": "nobody", "text": "x"})
    assert error["code"] == "no_such_nick"


def test_private_messages_reach_both_ends(hub, clock):
    alice, bob = hello(hub, clock, "alice"), hello(hub, clock, "bob")
    [echo] = alice.send({"type": "private", "to": "bob", "text": "psst"})
    assert echo["type"] == "private" and echo["from"] == "alice" and echo["to"] == "bob"
    assert bob.peer.take() == [echo]


def test_history_pages_before_and_after(hub, clock):
    alice = hello(hub, clock, "alice")
    alice.send({"type": "join", "room": "#r"})
    for n in range(10):
        alice.send({"type": "say", "room": "#r", "text": str(n)})
    [page] = alice.send({"type": "history", "room": "#r", "limit": 3, "id": 1})
    assert [m["text"] for m in page["messages"]] == ["7", "8", "9"] and page["more"] is True
    first = page["messages"][0]["id"]
    [older] = alice.send({"type": "history", "room": "#r", "before": first, "limit": 5})
    assert [m["text"] for m in older["messages"]] == ["2", "3", "4", "5", "6"]
    assert older["more"] is True
    [rest] = alice.send({"type": "history", "room": "#r", "before": first, "limit": 50})
    assert len(rest["messages"]) == 7 and rest["more"] is False
    [missed] = alice.send({"type": "history", "room": "#r", "after": first, "limit": 1})
    assert [m["text"] for m in missed["messages"]] == ["8"] and missed["more"] is True
    [error] = hello(hub, clock, "bob").send({"type": "history", "room": "#r"})
    assert error["code"] == "not_in_room"


def test_rooms_members_nick_topic_part(hub, clock):
    alice, bob = hello(hub, clock, "alice"), hello(hub, clock, "bob")
    alice.send({"type": "join", "room": "#r"})
    bob.send({"type": "join", "room": "#r"})
    alice.peer.take()
    [rooms] = bob.send({"type": "rooms", "id": 2})
    assert {"name": "#r", "topic": "", "members": 2} in rooms["rooms"] and rooms["re"] == 2
    [members] = bob.send({"type": "members", "room": "#r"})
    assert members["members"][0] == {"nick": "alice", "op": True, "voice": False, "away": None}
    [topic] = alice.send({"type": "topic", "room": "#r", "topic": "news"})
    assert topic["type"] == "topic" and topic["by"] == "alice" and topic["topic"] == "news"
    assert bob.peer.take() == [topic]
    [nick] = bob.send({"type": "nick", "nick": "robert"})
    assert nick["type"] == "nick" and nick["old"] == "bob" and nick["new"] == "robert"
    [parted] = bob.send({"type": "part", "room": "#r", "reason": "bye"})
    assert parted["type"] == "parted" and parted["reason"] == "bye"
    assert [e["type"] for e in alice.peer.take()] == ["nick", "parted"]


def test_flood_drops_with_an_error_then_closes_with_1008(tmp_path, clock):
    service = ChatService(ChatSettings(data_dir=tmp_path, flood_rate=1.0, flood_burst=3),
                          Limits())
    try:
        browser = hello(service, clock, "alice")
        for _ in range(2):
            assert browser.send({"type": "ping"}) == [{"type": "pong"}]
        [error] = browser.send({"type": "ping", "id": 9})
        assert error["code"] == "flood"
        assert browser.send({"type": "ping"}) == []  # dropped silently now
        for _ in range(3):
            browser.send({"type": "ping"})
        assert browser.peer.closed == (1008, "flood")
        clock.advance(10)  # a closed session stays closed
        assert browser.send({"type": "ping"}) == []
    finally:
        service.close()


def test_no_hello_in_time_closes_with_1008(hub, clock):
    browser = Browser(hub, clock)
    browser.chat.registration_expired()
    assert browser.peer.closed == (1008, "no hello")
    registered = hello(hub, clock, "alice")
    registered.chat.registration_expired()
    assert registered.peer.closed is None


def test_leaving_quits_the_user(hub, clock):
    alice, bob = hello(hub, clock, "alice"), hello(hub, clock, "bob")
    alice.send({"type": "join", "room": "#r"})
    bob.send({"type": "join", "room": "#r"})
    alice.peer.take()
    bob.chat.lost()
    [quit_] = alice.peer.take()
    assert quit_["type"] == "quit" and quit_["nick"] == "bob"
    assert hub.find_user("bob") is None


def test_events_render_as_the_doc_says():
    assert event_object(Message("#r", "a", "t", 1.23456, id=4, username="u", address="::1")) == {
        "type": "message", "id": 4, "room": "#r", "nick": "a", "source": "a!u@::1", "text": "t",
        "action": False, "notice": False, "ts": 1.235}
    assert event_object(Private("a", "b", "t", 2.0, notice=True))["notice"] is True
    assert event_object(Joined("#r", "a", 1.0)) == {"type": "joined", "room": "#r",
                                                    "nick": "a", "ts": 1.0}
    assert event_object(Kicked("#r", "a", "op", "bye", 1.0))["by"] == "op"
    assert event_object(Quit("a", "gone", 1.0))["reason"] == "gone"
    assert event_object(NickChanged("a", "b", 1.0))["new"] == "b"
    assert event_object(Signal("a", "#r", None, (("+typing", "active"),), 1.0)) is None


def test_one_rendering_is_shared_by_every_browser(hub, clock):
    browsers = [hello(hub, clock, f"u{n}") for n in range(3)]
    for browser in browsers:
        browser.send({"type": "join", "room": "#r"})
    texts: list[str] = []
    for browser in browsers:
        browser.peer.send_text = texts.append  # type: ignore[method-assign]
    browsers[0].chat.chat.say(browsers[0].chat.user, "#r", "once")  # type: ignore[arg-type]
    assert len(texts) == 3 and texts[0] is texts[1] is texts[2]


LONE = '"\\ud800"'  # JSON for a lone surrogate, which json.loads accepts


@pytest.mark.parametrize("template", [
    '{"type":"say","room":"#r","text":%s}',
    '{"type":"topic","room":"#r","topic":%s}',
    '{"type":"private","to":"bob","text":%s}',
    '{"type":"part","room":"#r","reason":%s}',
    '{"type":"join","room":%s}',
    '{"type":"nick","nick":%s}',
])
def test_a_lone_surrogate_in_a_text_field_is_bad_field(hub, clock, template):
    alice, bob = hello(hub, clock, "alice"), hello(hub, clock, "bob")
    alice.send({"type": "join", "room": "#r"})
    bob.send({"type": "join", "room": "#r"})
    alice.peer.take()
    [error] = alice.send(template % LONE)
    assert error["type"] == "error" and error["code"] == "bad_field"
    # Nothing was poisoned: the room list and a message still work for everyone.
    [rooms] = bob.send({"type": "rooms"})
    assert {"name": "#r", "topic": "", "members": 2} in rooms["rooms"]
    [ack] = alice.send({"type": "say", "room": "#r", "text": "still fine"})
    assert ack["text"] == "still fine"


def test_a_lone_surrogate_in_the_id_is_bad_field_not_echoed(hub, clock):
    [error] = Browser(hub, clock).send('{"type":"ping","id":' + LONE + "}")
    assert error["code"] == "bad_field" and "re" not in error


def test_the_hub_replaces_a_lone_surrogate_whatever_door_sent_it(hub, clock):
    alice = hello(hub, clock, "alice")
    alice.send({"type": "join", "room": "#r"})
    alice.peer.take()
    user = alice.chat.user
    assert user is not None
    hub.set_topic(user, "#r", "bad \ud800 topic")
    hub.say(user, "#r", "bad \udfff text")
    sent = alice.peer.take()  # the strict Peer encodes each frame: no exception
    assert [e.get("topic", e.get("text")) for e in sent] == [
        "bad \ufffd topic", "bad \ufffd text"]
    [rooms] = alice.send({"type": "rooms"})
    assert rooms["rooms"][0]["topic"] == "bad \ufffd topic"
    [page] = alice.send({"type": "history", "room": "#r"})
    assert page["messages"][-1]["text"] == "bad \ufffd text"


def test_a_failing_delivery_costs_that_browser_not_the_others(hub, clock):
    alice, bob, carol = (hello(hub, clock, n) for n in ("alice", "bob", "carol"))
    for browser in (alice, bob, carol):
        browser.send({"type": "join", "room": "#r"})
    for browser in (alice, bob, carol):
        browser.peer.take()

    def broken(text: str) -> None:
        raise RuntimeError("boom")

    bob.peer.send_text = broken  # type: ignore[method-assign]
    [ack] = alice.send({"type": "say", "room": "#r", "text": "hi"})
    assert ack["text"] == "hi"
    assert [e["text"] for e in carol.peer.take()] == ["hi"]
    assert bob.peer.closed == (1011, "internal error")


def test_json_nested_too_deep_is_bad_json(hub, clock):
    [error] = Browser(hub, clock).send("[" * 100_000 + "]" * 100_000)
    assert error["code"] == "bad_json"
    [error] = Browser(hub, clock).send('{"type":"ping","x":' + "[" * 100_000 + "]" * 100_000 + "}")
    assert error["code"] == "bad_json"


@pytest.mark.parametrize("field", ["before", "after"])
def test_a_history_id_past_64_bits_is_bad_field(hub, clock, field):
    alice = hello(hub, clock, "alice")
    alice.send({"type": "join", "room": "#r"})
    [error] = alice.send({"type": "history", "room": "#r", field: 10**30})
    assert error["code"] == "bad_field" and error["message"].startswith(field)
    [page] = alice.send({"type": "history", "room": "#r", field: 2**63 - 1})
    assert page["type"] == "history"


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_an_id_that_is_not_a_finite_number_is_bad_field(hub, clock, number):
    browser = Browser(hub, clock)
    text = '{"type":"ping","id":' + number + "}"
    browser.chat.receive_text(text, clock.time())
    [error] = browser.peer.take()
    assert error["code"] == "bad_field" and "re" not in error


def test_the_flood_guard_counts_drops_per_flood_not_per_connection():
    guard = FloodGuard(rate=1.0, burst=2, now=0.0)
    assert [guard.check(0.0) for _ in range(5)] == ["pass", "pass", "warn", "drop", "disconnect"]
    guard = FloodGuard(rate=1.0, burst=2, now=0.0)
    first = [guard.check(0.0) for _ in range(4)]
    assert first == ["pass", "pass", "warn", "drop"]
    assert guard.check(1.0) == "pass"  # the flood is over
    assert [guard.check(1.0) for _ in range(3)] == ["warn", "drop", "disconnect"]


def test_a_second_flood_on_the_web_door_is_warned_again_not_cut_at_once(tmp_path, clock):
    service = ChatService(ChatSettings(data_dir=tmp_path, flood_rate=1.0, flood_burst=3),
                          Limits())
    try:
        browser = hello(service, clock, "alice")  # the hello took one token
        for _ in range(2):
            browser.send({"type": "ping"})
        for _ in range(2):  # a flood: told once, then dropped silently
            browser.send({"type": "ping"})
        clock.advance(1.0)
        assert browser.send({"type": "ping"}) == [{"type": "pong"}]  # over
        [error] = browser.send({"type": "ping"})  # a new flood, told again
        assert error["code"] == "flood"
        assert browser.send({"type": "ping"}) == [] and browser.peer.closed is None
    finally:
        service.close()


def test_a_second_flood_on_the_line_door_is_warned_again_not_cut_at_once(tmp_path, clock):
    service = ChatService(ChatSettings(data_dir=tmp_path, flood_rate=1.0, flood_burst=3),
                          Limits())
    try:
        door = LineDoor(service)
        door.clock = clock
        door.connection_made(ConnectionInfo(peer="127.0.0.1:5555"))
        door.receive_data(b"alice\n/rooms\n/rooms\n/rooms\n/rooms\n")  # 3 pass, then a flood
        clock.advance(1.0)
        door.receive_data(b"/rooms\n")  # passes: the flood is over
        door.data_to_send()
        door.receive_data(b"/rooms\n/rooms\n")  # a new flood: told, then dropped
        said = b"".join(door.data_to_send())
        assert said.count(b"flood control: you are sending too fast") == 1
        assert b"disconnected" not in said and not door.close_expected()
    finally:
        service.close()
