"""Runs of room messages (issue 16): a group commit fanned out a run at a time.

Messages of one commit that follow each other in one room reach each member
as one :class:`MessageRun`, which the doors render once per kind of viewer and
queue as one piece. Each scenario here runs twice on a fresh chat service —
fanned out in runs, and one message at a time (the bus without its batch
form) — and every client of every door (IRC with several capability
profiles, a line client, a browser) must receive exactly the same, in the
same order. The loop turn is played by hand: ``say`` waits for ``commit``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from irc_support import Client, Network
from sockhub.doors import line as line_door
from sockhub.doors.line import LineDoor
from sockhub.doors.web import WebDoor
from sockhub.hub import state as hub_state
from sockhub.hub.events import HubEvent, Message, MessageRun
from sockhub.hub.hub import Hub
from sockhub.hub.sessions import Sessions
from sockhub.protocols.base import ConnectionInfo
from sockhub.services import chat as chat_module
from sockhub.services.chat import ChatService

_TIME = re.compile(rb"time=[0-9T:.\-]+Z")
_LINE_STAMP = re.compile(rb"^[0-9]{2}:[0-9]{2}:[0-9]{2} ", re.MULTILINE)


class _Turn:
    """A loop that never runs what it is given: the test commits when the turn ends."""

    def call_soon(self, callback: Callable[[], None]) -> None:
        pass


@contextmanager
def one_turn(service: ChatService) -> Iterator[None]:
    """Everything said inside is one loop turn's batch, committed at the end."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chat_module.asyncio, "get_running_loop", lambda: _Turn())
        yield
    service.commit()


class Line:
    def __init__(self, net: Network, nick: str) -> None:
        self.door = LineDoor(net.service)
        self.door.clock = net.clock
        self.door.connection_made(ConnectionInfo(peer="127.0.0.1:41000", service="chat"))
        self.send(nick)

    def send(self, *lines: str) -> None:
        self.door.receive_data("".join(f"{line}\n" for line in lines).encode())

    def take(self) -> bytes:
        # The wall clock's HH:MM:SS: the two runs may straddle a second.
        return _LINE_STAMP.sub(b"HH:MM:SS ", b"".join(self.door.data_to_send()))


class Browser:
    """A WebDoor read by websockets' client protocol, as a browser's library reads it."""

    def __init__(self, net: Network, nick: str) -> None:
        self.door = WebDoor(net.service)
        self.door.clock = net.clock
        self.door.wake = lambda: None
        self.door.connection_made(ConnectionInfo(peer="127.0.0.1:5555", local="test",
                                                 transport="tcp"))
        self.client = ClientProtocol(parse_uri("ws://test/ws"))
        self.client.send_request(self.client.connect())
        self.door.receive_data(b"".join(self.client.data_to_send()))
        self.take()  # the handshake's answer
        self.send({"type": "hello", "version": 1, "nick": nick})

    def send(self, obj: object) -> None:
        self.client.send_text(json.dumps(obj).encode())
        self.door.receive_data(b"".join(self.client.data_to_send()))

    def take(self) -> list[dict[str, object]]:
        self.client.receive_data(b"".join(self.door.data_to_send()))
        texts = [json.loads(event.data) for event in self.client.events_received()
                 if isinstance(event, Frame) and event.opcode is Opcode.TEXT]
        for obj in texts:
            obj.pop("ts", None)  # the wall clock's: differs between the two runs
        return texts


Clients = dict[str, Client | Line | Browser]


def _output(client: Client | Line | Browser) -> object:
    if isinstance(client, Client):
        return _TIME.sub(b"time=T", client.take_raw())
    return client.take()


def play(data_dir: Path, runs: bool, scenario: Callable[[Network, Clients], None]
         ) -> tuple[dict[str, object], list[int]]:
    """Every client's output after ``scenario``, and the sizes of the runs made."""
    net = Network(data_dir)
    made: list[int] = []

    class CountedRun(MessageRun):
        __slots__ = ()

        def __init__(self, messages: list[Message]) -> None:
            super().__init__(messages)
            made.append(len(messages))

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(hub_state, "MessageRun", CountedRun)
            if not runs:
                patch.setattr(net.service.bus, "_batch", None)
            clients: Clients = {
                "alice": net.register("alice", "echo-message", "labeled-response", "batch",
                                      "message-tags", "server-time", "account-tag"),
                "bob": net.register("bob"),
                "carol": net.register("carol", "server-time", "message-tags"),
                "dave": net.register("dave", "echo-message"),
                "lee": Line(net, "lee"),
                "wes": Browser(net, "wes"),
            }
            for client in clients.values():
                if isinstance(client, Client):
                    client.send("JOIN #room")
                elif isinstance(client, Line):
                    client.send("/join #room")
                else:
                    client.send({"type": "join", "room": "#room"})
            clients["carol"].send("JOIN #other")  # type: ignore[arg-type]
            clients["lee"].send("/join #other", "/join #room")  # type: ignore[arg-type]
            for client in clients.values():
                _output(client)
            scenario(net, clients)
            return {name: _output(client) for name, client in clients.items()}, made
    finally:
        net.close()


def _irc(clients: Clients, name: str, *lines: str) -> None:
    client = clients[name]
    assert isinstance(client, Client)
    client.send(*lines)


def _busy_turn(net: Network, clients: Clients) -> None:
    with one_turn(net.service):
        _irc(clients, "alice", "PRIVMSG #room :a1", "PRIVMSG #room :a2")
        _irc(clients, "bob", "PRIVMSG #room :b1")
        clients["lee"].send("l1 <b>not markup</b>")  # type: ignore[arg-type]
        clients["wes"].send({"type": "say", "room": "#room", "text": "w1"})  # type: ignore[arg-type]
        _irc(clients, "carol", "PRIVMSG #other :c1")  # another room: a run ends
        _irc(clients, "bob", "PRIVMSG #room :b2")
        _irc(clients, "dave", "NOTICE #room :d1", "PRIVMSG #room :\x01ACTION waves\x01")


def test_a_busy_turn_reaches_every_door_exactly_as_one_message_at_a_time(tmp_path):
    in_runs, sizes = play(tmp_path / "runs", True, _busy_turn)
    one_by_one, none = play(tmp_path / "single", False, _busy_turn)
    assert sizes == [5, 3] and none == []  # #room: 5, #other: 1 (alone), #room: 3
    assert in_runs == one_by_one
    bob = in_runs["bob"]
    assert isinstance(bob, bytes)
    # Eight to #room, two of them his own: not echoed (no echo-message).
    assert bob.count(b"PRIVMSG #room :") + bob.count(b"NOTICE #room :") == 6
    assert b":b1" not in bob and b":b2" not in bob
    assert in_runs["lee"] == one_by_one["lee"] and b"<lee> l1" in in_runs["lee"]  # type: ignore[operator]


def _labeled_commit(net: Network, clients: Clients) -> None:
    # alice's labeled JOIN publishes an event, which commits the turn's messages
    # first, inside her labeled response: her door captures them one by one.
    with one_turn(net.service):
        _irc(clients, "bob", "PRIVMSG #room :x1", "PRIVMSG #room :x2")
        _irc(clients, "alice", "PRIVMSG #room :mine", "@label=L1 JOIN #new")


def test_a_run_committed_inside_a_labeled_response_is_captured_as_before(tmp_path):
    in_runs, sizes = play(tmp_path / "runs", True, _labeled_commit)
    one_by_one, _ = play(tmp_path / "single", False, _labeled_commit)
    assert sizes == [3]
    assert in_runs == one_by_one


def _one_bad_message(net: Network, clients: Clients) -> None:
    with one_turn(net.service):
        _irc(clients, "bob", "PRIVMSG #room :before", "PRIVMSG #room :boom", "PRIVMSG #room :after")


def test_a_message_no_door_can_render_costs_only_itself(tmp_path, monkeypatch, caplog):
    """A rendering that fails (a bug) loses that message, as one by one: not the run."""
    from sockhub.doors.irc import door as irc_door
    from sockhub.doors.web import chat_json

    def failing(render: Callable[..., object]) -> Callable[..., object]:
        def render_or_fail(message: Message, *args: object, **kwargs: object) -> object:
            if message.text == "boom":
                raise RuntimeError("renderer bug")
            return render(message, *args, **kwargs)
        return render_or_fail

    monkeypatch.setattr(irc_door, "render_message", failing(irc_door.render_message))
    monkeypatch.setattr(line_door, "render", failing(line_door.render))
    monkeypatch.setattr(chat_json, "message_json", failing(chat_json.message_json))
    with caplog.at_level(logging.ERROR):
        in_runs, sizes = play(tmp_path / "runs", True, _one_bad_message)
        one_by_one, _ = play(tmp_path / "single", False, _one_bad_message)
    assert sizes == [3]
    assert in_runs == one_by_one
    carol = in_runs["carol"]
    assert isinstance(carol, bytes) and b":before" in carol and b":after" in carol
    assert b"boom" not in carol
    assert b"<bob> after" in in_runs["lee"]  # type: ignore[operator]


# The hub's side: members without a run form, one that raises, several sessions ------------

class Recorder:
    """A member with ``deliver`` alone: a run reaches it one message at a time."""

    def __init__(self) -> None:
        self.got: list[HubEvent] = []

    def deliver(self, event: HubEvent) -> None:
        self.got.append(event)


class RunRecorder(Recorder):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.runs: list[MessageRun] = []
        self.fail = fail

    def deliver_run(self, run: MessageRun) -> None:
        if self.fail:
            raise RuntimeError("door bug")
        self.runs.append(run)
        self.got.extend(run.messages)


def test_runs_follow_rooms_in_order_and_every_kind_of_member_gets_each_message(caplog):
    hub = Hub()
    plain, runs, broken = Recorder(), RunRecorder(), RunRecorder(fail=True)
    both = Sessions([Recorder(), RunRecorder()])
    for nick, member in (("plain", plain), ("runs", runs), ("broken", broken),
                         ("both", both)):
        user = hub.register(nick, member, address="127.0.0.1")
        for room in ("#a", "#b"):
            hub.apply(hub.join(user, room, 1.0))
    for member in (plain, runs, *both.members):
        member.got.clear()  # type: ignore[attr-defined]
    said = [Message(room, "plain", f"{room}{i}", 2.0 + i)
            for i, room in enumerate(["#a", "#a", "#b", "#a", "#a", "#a"])]
    with caplog.at_level(logging.ERROR, logger="sockhub.hub"):
        hub.state.apply_messages(said)
    for member in (plain, runs, *both.members):
        assert member.got == said  # type: ignore[attr-defined]
    assert [len(run.messages) for run in runs.runs] == [2, 3]  # "#b" alone: deliver()
    assert runs.runs[1].senders == {"plain"} and runs.runs[1].room == "#a"
    assert "delivery of Message to RunRecorder failed" in caplog.text  # logged, not passed on
    assert hub.find_user("plain").active == 7.0  # type: ignore[union-attr]
