"""Group commit: the room messages of one loop turn share one SQLite transaction.

What must hold, whatever the batching: a message is delivered (its sender's
echo included) only once it is committed, so a server killed mid-batch has
lost nothing that anyone saw; and every member sees events in the order the
hub accepted them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path

import pytest

from helpers import NoScan
from irc_support import Network
from net import STEP, chat_client
from proc import start_sockhub
from sockhub import metrics
from sockhub.doors.line import LineDoor
from sockhub.doors.web.chat_json import JsonChat
from sockhub.hub import User
from sockhub.hub.events import HubEvent, Message, Parted, Private
from sockhub.limits import Limits
from sockhub.protocols.base import ConnectionInfo
from sockhub.services.chat import ChatService
from sockhub.services.chat_settings import ChatSettings


def stored_texts(path: Path) -> list[str]:
    """The texts in a history file, read through a connection of our own."""
    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute("SELECT text FROM messages ORDER BY id")]
    finally:
        db.close()


class Recorder:
    """A hub Member that notes each event and whether its message was committed then."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[HubEvent] = []
        self.committed: list[bool] = []
        self.arrived = asyncio.Event()

    def deliver(self, event: HubEvent) -> None:
        self.events.append(event)
        if isinstance(event, Message):
            self.committed.append(event.text in stored_texts(self.path))
        self.arrived.set()

    def texts(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, Message | Private)]


@pytest.fixture
def service(tmp_path):
    chat = ChatService(ChatSettings(data_dir=tmp_path, flood_rate=None), Limits())
    yield chat
    chat.close()


def enter(service: ChatService, nick: str) -> tuple[Recorder, User]:
    member = Recorder(service.store.path)
    user = service.register(nick, member, address="127.0.0.1")
    service.join(user, "#g")
    member.events.clear()
    return member, user


async def test_one_turn_shares_one_commit_and_delivery_follows_it(service, monkeypatch):
    member, alice = enter(service, "alice")
    batches: list[int] = []
    append_many = service.store.append_many

    def counting(messages: list[Message]) -> list[Message]:
        batches.append(len(messages))
        return append_many(messages)

    monkeypatch.setattr(service.store, "append_many", counting)
    stored, commits = metrics.chat.history_stored, metrics.chat.history_commits
    for i in range(5):
        service.say(alice, "#g", f"m{i}")
    assert member.events == [] and stored_texts(service.store.path) == []
    await asyncio.wait_for(member.arrived.wait(), STEP)
    assert batches == [5]
    assert (metrics.chat.history_stored - stored, metrics.chat.history_commits - commits) == (5, 1)
    assert member.texts() == [f"m{i}" for i in range(5)]
    assert member.committed == [True] * 5  # each was in the file before it was delivered
    ids = [e.id for e in member.events if isinstance(e, Message)]
    assert ids == sorted(ids) and None not in ids


async def test_other_events_wait_for_the_messages_said_before_them(service):
    member, alice = enter(service, "alice")
    other, _ = enter(service, "bob")
    member.events.clear()  # bob's arrival
    service.say(alice, "#g", "first")
    service.private(alice, "bob", "second")
    service.say(alice, "#g", "third")
    service.part(alice, "#g", "bye")
    # The private message and the part committed what came before them; the
    # order each member sees is the order the hub accepted.
    assert other.texts() == ["first", "second", "third"]
    assert isinstance(other.events[-1], Parted)
    assert [type(e) for e in member.events] == [Message, Private, Message, Parted]
    assert other.committed == [True, True]


async def test_history_reads_include_the_pending_messages(service):
    _, alice = enter(service, "alice")
    service.say(alice, "#g", "just said")
    assert [m.text for m in service.history("#g", 10)] == ["just said"]


async def test_a_failed_commit_delivers_nothing_and_the_next_one_works(service, monkeypatch,
                                                                        caplog):
    member, alice = enter(service, "alice")

    def broken(messages: list[Message]) -> list[Message]:
        raise sqlite3.OperationalError("disk I/O error")

    commits = metrics.chat.history_commits
    with monkeypatch.context() as patch:
        patch.setattr(service.store, "append_many", broken)
        service.say(alice, "#g", "lost")
        service.commit()
    assert member.events == []
    assert metrics.chat.history_commits == commits  # nothing was stored
    assert "could not store 1 messages" in caplog.text
    service.say(alice, "#g", "kept")
    await asyncio.wait_for(member.arrived.wait(), STEP)
    assert member.texts() == ["kept"]
    assert stored_texts(service.store.path) == ["kept"]


async def test_a_labeled_privmsg_gets_its_echo_inside_the_labeled_response(tmp_path):
    # With a running loop the service defers its commit; a labeled command
    # commits at its end, so the echo is the labeled reply (IRCv3 labeled-response).
    net = Network(tmp_path)
    try:
        alice = net.register("alice", "labeled-response", "batch", "echo-message")
        alice.ask("JOIN #lab")
        reply = alice.ask("@label=x PRIVMSG #lab :hello")
        assert [(m.command, m.tags.get("label")) for m in reply] == [("PRIVMSG", "x")]
    finally:
        net.close()


async def test_replies_keep_command_order_with_a_message_waiting_for_its_commit(tmp_path):
    # irctest synchronises with PING: the PONG must not overtake the echo of
    # a PRIVMSG sent before it, whose commit waits for the end of the turn.
    net = Network(tmp_path)
    try:
        alice = net.register("alice", "echo-message")
        alice.ask("JOIN #order")
        reply = alice.ask("PRIVMSG #order :first", "PING :sync", "NOTICE #order :second",
                          "BOGUS")
        assert [m.command for m in reply] == ["PRIVMSG", "PONG", "NOTICE", "421"]
    finally:
        net.close()


async def test_killed_mid_batch_loses_nothing_anyone_saw(tmp_path):
    served = await start_sockhub("chat", "--port", "0", "--data-dir", str(tmp_path),
                                 "--flood-rate", "none")
    port = served.ports["chat"]
    bob = await chat_client(port, "bob")
    alice = await chat_client(port, "alice")
    total = 5000
    alice.writer.write(b"".join(b"n%d\n" % i for i in range(total)))
    seen: list[str] = []
    try:
        while len(seen) < 200:  # the batches are flowing: kill the server now
            line = await bob.expect("<alice> ")
            seen.append(line.rsplit("<alice> ", 1)[1])
        assert await served.stop(signal.SIGKILL) == -9
        rest = await bob.expect_eof()  # what the kernel still held for bob was seen too
        seen += [line.rsplit("<alice> ", 1)[1] for line in rest if "<alice> " in line]
    finally:
        alice.close()
        bob.close()
        if served.process.returncode is None:
            served.process.kill()
            await served.process.wait()
    stored = stored_texts(tmp_path / "chat.sqlite3")
    assert seen == [f"n{i}" for i in range(len(seen))]  # in order, none missing
    assert stored == [f"n{i}" for i in range(len(stored))]
    assert len(seen) <= len(stored), "a message was delivered that was never stored"


async def test_every_line_of_a_paste_arrives_once_in_order(tmp_path):
    # Many messages in one read: batches of a turn, and more than one batch.
    served = await start_sockhub("chat", "--port", "0", "--data-dir", str(tmp_path),
                                 "--flood-rate", "none")
    port = served.ports["chat"]
    try:
        bob = await chat_client(port, "bob")
        alice = await chat_client(port, "alice")
        total = 3000
        await alice.send(b"".join(b"p%d\n" % i for i in range(total)))
        got = [(await bob.expect("<alice> ")).rsplit("<alice> ", 1)[1] for _ in range(total)]
        assert got == [f"p{i}" for i in range(total)]
        alice.close()
        bob.close()
    finally:
        await served.stop()
    assert stored_texts(tmp_path / "chat.sqlite3") == [f"p{i}" for i in range(total)]



# Quiet rooms at the doors (the hub's side: tests/hub/test_quiet_rooms.py) --------


async def test_line_door_a_quiet_lobby_announces_no_arrivals_and_lists_no_one(serve, tmp_path):
    server = await serve("chat", options={"data_dir": str(tmp_path), "flood_rate": None,
                                          "quiet_above": 2})
    port = server.ports[0]
    alice = await chat_client(port, "alice")
    bob = await chat_client(port, "bob")
    await alice.expect("#lobby * bob joined")  # two members: still announced
    carol = await chat_client(port, "carol")  # three: #lobby is quiet now
    # #lobby is protected, so it has no operators to list.
    listed = await carol.expect("-- in #lobby")
    assert listed == "-- in #lobby: 3 members; operators: none (/who #lobby lists everyone)"
    await carol.send("hi")
    await alice.expect("<carol> hi")
    assert not any("carol joined" in line for line in alice.seen + bob.seen)
    for client in (alice, bob, carol):
        client.close()


async def test_irc_door_joining_a_quiet_channel_names_only_its_operators(tmp_path):
    net = Network(tmp_path, quiet_above=2)
    try:
        alice = net.register("alice")
        bob = net.register("bob")
        alice.ask("JOIN #big")
        bob.ask("JOIN #big")
        alice.take()
        carol = net.register("carol")
        joined = carol.ask("JOIN #big")
        names = [m.params[-1] for m in joined if m.command == "353"]
        assert names == ["@alice carol"]
        assert [m.command for m in alice.take()] == ["JOIN"]  # the operator hears of it
        assert bob.take() == []
        listed = [m.params[-1] for m in bob.ask("NAMES #big") if m.command == "353"]
        assert sorted(" ".join(listed).split()) == ["@alice", "bob", "carol"]
    finally:
        net.close()


class _Peer:
    """Where a JsonChat's frames go: kept as JSON objects."""

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def push_text(self, text: str) -> None:
        self.send_text(text)

    def push_texts(self, texts: tuple[str, ...]) -> None:
        for text in texts:
            self.send_text(text)

    def close_ws(self, code: int, reason: str) -> None:
        pass

    def wake(self) -> None:
        pass


def test_joining_a_big_quiet_room_goes_through_its_operators_not_its_members(tmp_path):
    """10,000 arrivals in one room must be linear on every door: a newcomer is shown the
    operators, found from the operators (a scan of the members raises here)."""
    net = Network(tmp_path, quiet_above=3)
    try:
        op = net.register("op")
        op.ask("JOIN #big")
        for i in range(6):
            net.register(f"u{i}").ask("JOIN #big")
        room = net.service.find_room("#big")
        assert room is not None
        room.members = NoScan(room.members)
        names = [m.params[-1] for m in net.register("late").ask("JOIN #big")
                 if m.command == "353"]
        assert names == ["@op late"]
        line = LineDoor(net.service)
        line.clock = net.clock
        line.connection_made(ConnectionInfo(peer="127.0.0.1:41000", service="chat"))
        line.receive_data(b"liner\n/join #big\n")
        shown = b"".join(line.data_to_send()).decode()
        assert "in #big: 9 members; operators: op" in shown
        peer = _Peer()
        page = JsonChat(net.service, peer, address="127.0.0.1", now=net.clock.time())
        page.receive_text(json.dumps({"type": "hello", "version": 1, "nick": "wes"}),
                          net.clock.time())
        page.receive_text(json.dumps({"type": "join", "room": "#big"}), net.clock.time())
        [members] = [m for m in peer.sent if m["type"] == "members"]
        assert members["count"] == 10
        assert [m["nick"] for m in members["members"]] == ["op", "wes"]  # type: ignore[union-attr]
    finally:
        net.close()


def test_a_seen_mark_the_store_refuses_does_not_keep_a_leaver_in_the_hub(service, monkeypatch):
    """Seen marks are a convenience: a locked or failing store (another worker holding the
    file) must not stop the PART or QUIT itself, which would leave a ghost holding its nick."""
    member, _ = enter(service, "alice")
    _, bob = enter(service, "bob")

    def refuse(*args: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(service.store, "mark_seen", refuse)
    service.part(bob, "#g", "bye")
    assert "bob" not in service.find_room("#g").members
    assert isinstance(member.events[-1], Parted)
    service.quit(bob, "gone")
    assert service.find_user("bob") is None
    assert service.nick_available("bob") is None
