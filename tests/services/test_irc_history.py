"""History over IRC: replay on JOIN with server-time, and IRCv3 CHATHISTORY paging."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from irc_support import Network, commands, find
from sockhub.codec.irc import format_time
from sockhub.doors.line import LineDoor
from sockhub.protocols.base import ConnectionInfo
from sockhub.store.history import SCHEMA_VERSION, ChatStore

HISTORY_CAPS = ("batch", "server-time", "message-tags", "draft/chathistory", "echo-message")


@pytest.fixture
def net(tmp_path):
    network = Network(tmp_path, history=5)
    yield network
    network.close()


def say_many(net: Network, nick: str, room: str, count: int, start_ts: float = 1_700_000_000.0):
    """Store ``count`` messages with known, distinct times (one second apart)."""
    user = net.service.hub.find_user(nick)
    stored = []
    for i in range(count):
        message = net.service.hub.say(user, room, f"message {i}", start_ts + i)
        message = net.service.store.append(message)
        net.service.bus.publish(message)
        stored.append(message)
    return stored


def test_join_replays_history_with_original_times(net):
    alice = net.register("alice")
    alice.ask("JOIN #h")
    stored = say_many(net, "alice", "#h", 7)
    modern = net.register("modern", "server-time", "batch", "message-tags")
    replies = modern.ask("JOIN #h")
    assert commands(replies)[:3] == ["JOIN", "353", "366"]
    start, *messages, end = replies[3:]
    assert start.command == "BATCH" and start.params[1:] == ("chathistory", "#h")
    ref = start.params[0][1:]
    assert [m.params[1] for m in messages] == [f"message {i}" for i in range(2, 7)]
    assert [m.tags["time"] for m in messages] == [format_time(m.ts) for m in stored[2:]]
    assert [m.tags["msgid"] for m in messages] == [str(m.id) for m in stored[2:]]
    assert all(m.tags["batch"] == ref for m in messages)
    assert end.params == ("-" + ref,)
    old_school = net.register("oldschool")
    replayed = [m for m in old_school.ask("JOIN #h") if m.command == "PRIVMSG"]
    assert replayed[0].params[1] == "[2023-11-14 22:13:22] message 2"
    assert replayed[0].tags == {}
    pager = net.register("pager", *HISTORY_CAPS)
    assert commands(pager.ask("JOIN #h")) == ["JOIN", "353", "366"]  # it pages by itself


def chathistory(client, line):
    replies = client.ask(line)
    start, *inner, end = replies
    assert start.command == "BATCH" and end.command == "BATCH"
    assert start.params[1] == "chathistory"
    return [m.params[1] for m in inner if m.command == "PRIVMSG"], inner


def test_chathistory_subcommands(net):
    alice = net.register("alice", *HISTORY_CAPS)
    alice.ask("JOIN #c")
    stored = say_many(net, "alice", "#c", 10)
    alice.take()
    ids = [m.id for m in stored]
    ts = [format_time(m.ts) for m in stored]
    text = [f"message {i}" for i in range(10)]
    assert chathistory(alice, "CHATHISTORY LATEST #c * 3")[0] == text[7:]
    assert chathistory(alice, f"CHATHISTORY LATEST #c msgid={ids[6]} 10")[0] == text[7:]
    assert chathistory(alice, f"CHATHISTORY BEFORE #c msgid={ids[5]} 2")[0] == text[3:5]
    assert chathistory(alice, f"CHATHISTORY BEFORE #c timestamp={ts[5]} 2")[0] == text[3:5]
    assert chathistory(alice, f"CHATHISTORY AFTER #c msgid={ids[5]} 2")[0] == text[6:8]
    assert chathistory(alice, f"CHATHISTORY AFTER #c timestamp={ts[5]} 2")[0] == text[6:8]
    assert chathistory(alice, f"CHATHISTORY AROUND #c msgid={ids[5]} 3")[0] == text[4:7]
    assert chathistory(alice, f"CHATHISTORY BETWEEN #c msgid={ids[2]} msgid={ids[6]} 10")[0] == (
        text[3:6])
    backwards = chathistory(alice, f"CHATHISTORY BETWEEN #c timestamp={ts[8]} msgid={ids[2]} 2")
    assert backwards[0] == text[6:8]  # nearest the first reference, oldest first
    _, inner = chathistory(alice, "CHATHISTORY LATEST #c * 1")
    assert inner[0].tags["time"] == ts[9] and inner[0].tags["msgid"] == str(ids[9])
    assert chathistory(alice, "CHATHISTORY LATEST somebody * 10")[0] == []  # no private history


@pytest.mark.parametrize(
    ("line", "params"),
    [
        ("CHATHISTORY", ("CHATHISTORY", "NEED_MORE_PARAMS", "*", "Missing parameters")),
        ("CHATHISTORY LATEST #c *", ("CHATHISTORY", "NEED_MORE_PARAMS", "LATEST",
                                     "Missing parameters")),
        ("CHATHISTORY SIDEWAYS #c * 1", ("CHATHISTORY", "INVALID_PARAMS", "SIDEWAYS",
                                         "Unknown subcommand")),
        ("CHATHISTORY BEFORE #c * 1", ("CHATHISTORY", "INVALID_PARAMS", "BEFORE",
                                       "Invalid reference or limit")),
        ("CHATHISTORY LATEST #c * many", ("CHATHISTORY", "INVALID_PARAMS", "LATEST",
                                          "Invalid reference or limit")),
        ("CHATHISTORY LATEST #other * 5", ("CHATHISTORY", "INVALID_TARGET", "LATEST", "#other",
                                           "Messages could not be retrieved")),
        ("CHATHISTORY LATEST #nowhere * 5", ("CHATHISTORY", "INVALID_TARGET", "LATEST",
                                             "#nowhere", "Messages could not be retrieved")),
    ],
)
def test_chathistory_errors(net, line, params):
    other = net.register("other")
    other.ask("JOIN #other")
    alice = net.register("alice", *HISTORY_CAPS)
    alice.ask("JOIN #c")
    alice.take()
    replies = alice.ask(line)
    assert len(replies) == 1 and replies[0].command == "FAIL"
    assert replies[0].params == params


def test_line_and_irc_users_share_rooms_both_ways(net):
    irc = net.register("ircuser", "echo-message")
    line = LineDoor(net.service)
    line.connection_made(ConnectionInfo(peer="127.0.0.1:6000"))
    line.receive_data(b"lineuser\n")
    line.data_to_send()
    irc.ask("JOIN #lobby")
    line.receive_data(b"hello from nc\n")
    got = find(irc.take(), "PRIVMSG")
    assert got.source == "lineuser!lineuser@127.0.0.1"
    assert got.params == ("#lobby", "hello from nc")
    irc.ask("PRIVMSG #lobby :hello from irc", "PRIVMSG lineuser :psst",
            "NOTICE #lobby :a notice", "MODE #lobby")
    text = b"".join(line.data_to_send()).decode()
    assert "#lobby <ircuser> hello from irc" in text
    assert "[pm] <ircuser> psst" in text
    assert "#lobby -ircuser- a notice" in text
    line.receive_data(b"/msg ircuser back at you\n")
    private = find(irc.take(), "PRIVMSG")
    assert private.params == ("ircuser", "back at you")
    irc.ask("AWAY :out")
    assert "* ircuser is away: out" in b"".join(line.data_to_send()).decode()


# What a reconnecting client is replayed, and who it says sent it -----------------

def privmsgs(replies):
    return [m for m in replies if m.command == "PRIVMSG"]


def test_a_reconnecting_client_is_replayed_only_what_it_missed(net):
    alice = net.register("alice")
    alice.ask("JOIN #h")
    say_many(net, "alice", "#h", 3)
    bob = net.register("bob", "batch", "server-time")
    assert [m.params[1] for m in privmsgs(bob.ask("JOIN #h"))] == [
        "message 0", "message 1", "message 2"]  # never seen: the latest (at most --history)
    say_many(net, "alice", "#h", 1, start_ts=1_700_000_100.0)  # bob sees it live
    bob.ask("QUIT :bye")
    say_many(net, "alice", "#h", 2, start_ts=1_700_000_200.0)  # while bob is away
    again = net.register("bob", "batch", "server-time")  # same nick, user name and address
    replies = again.ask("JOIN #h")
    assert [m.params[1] for m in privmsgs(replies)] == ["message 0", "message 1"]
    assert [m.tags["time"] for m in privmsgs(replies)] == [
        format_time(1_700_000_200.0), format_time(1_700_000_201.0)]
    assert commands(replies)[-4:] == ["BATCH", "PRIVMSG", "PRIVMSG", "BATCH"]
    # Leaving a room (PART) counts too; nothing new: nothing replayed, no empty batch.
    again.ask("PART #h")
    assert commands(again.ask("JOIN #h")) == ["JOIN", "353", "366"]
    # Someone else from the same address (another nick) is a new client.
    carol = net.register("carol", "batch", "server-time")
    assert len(privmsgs(carol.ask("JOIN #h"))) == 5  # --history=5


def test_what_was_seen_is_remembered_across_a_restart(tmp_path):
    first = Network(tmp_path, history=5)
    alice = first.register("alice")
    alice.ask("JOIN #h")
    say_many(first, "alice", "#h", 4)
    bob = first.register("bob")
    bob.ask("JOIN #h")
    first.service.begin_shutdown()  # a graceful stop: every client goes at once
    bob.door.connection_lost()
    alice.door.connection_lost()
    first.close()
    second = Network(tmp_path, history=5)
    try:
        alice = second.register("alice")
        alice.ask("JOIN #h")
        say_many(second, "alice", "#h", 1, start_ts=1_700_000_500.0)
        bob = second.register("bob")
        replayed = privmsgs(bob.ask("JOIN #h"))
        assert [m.params[1] for m in replayed] == ["[2023-11-14 22:21:40] message 0"]
        assert replayed[0].source == "alice!alice@127.0.0.1"
    finally:
        second.close()


def test_replayed_messages_name_their_sender_in_full_after_they_left(net):
    lbob = net.register("lbob")
    lbob.ask("JOIN #h", "PRIVMSG #h :remember me", "QUIT :gone")
    plain = net.register("plain")
    replayed = privmsgs(plain.ask("JOIN #h"))
    assert len(replayed) == 1 and replayed[0].source == "lbob!lbob@127.0.0.1"  # not bare "lbob"
    assert replayed[0].params[1].endswith("] remember me")  # no server-time: the time in text
    pager = net.register("pager", *HISTORY_CAPS)
    pager.ask("JOIN #h")
    _, inner = chathistory(pager, "CHATHISTORY LATEST #h * 10")
    assert [m.source for m in inner] == ["lbob!lbob@127.0.0.1"]


def test_live_messages_carry_the_full_prefix(net):
    alice = net.register("alice")
    bob = net.register("bob")
    alice.ask("JOIN #h")
    bob.ask("JOIN #h")
    alice.take()
    bob.ask("PRIVMSG #h :hi")
    assert find(alice.take(), "PRIVMSG").source == "bob!bob@127.0.0.1"


#: The schema of the first release (before user names, addresses and room state were kept).
SCHEMA_V0 = """
CREATE TABLE messages (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    room_key TEXT NOT NULL,
    room     TEXT NOT NULL,
    nick     TEXT NOT NULL,
    text     TEXT NOT NULL,
    action   INTEGER NOT NULL DEFAULT 0,
    ts       REAL NOT NULL
);
CREATE INDEX messages_room ON messages (room_key, id);
CREATE TABLE bans (
    room_key TEXT NOT NULL,
    mask     TEXT NOT NULL,
    set_by   TEXT NOT NULL,
    ts       REAL NOT NULL,
    PRIMARY KEY (room_key, mask)
);
"""


def write_v0_data_dir(path):
    """A data directory as the previous version left it: two messages and a ban."""
    path.mkdir(mode=0o700, exist_ok=True)
    db = sqlite3.connect(path / "chat.sqlite3")
    db.executescript(SCHEMA_V0)
    db.executemany(
        "INSERT INTO messages (room_key, room, nick, text, action, ts) VALUES (?,?,?,?,?,?)",
        [("#old", "#Old", "lbob", "from the old days", 0, 1_600_000_000.0),
         ("#old", "#Old", "lbob", "waves", 1, 1_600_000_001.0)],
    )
    db.execute("INSERT INTO bans VALUES ('#old', 'troll!*@*', 'lbob', 1600000002.0)")
    db.commit()
    db.close()
    (path / "chat.sqlite3").chmod(0o600)


def test_a_data_dir_of_the_previous_version_opens_and_keeps_its_history(tmp_path):
    write_v0_data_dir(tmp_path)
    store = ChatStore(tmp_path / "chat.sqlite3")
    try:
        old = store.recent("#old", 10)
        assert [(m.nick, m.text, m.action) for m in old] == [
            ("lbob", "from the old days", False), ("lbob", "waves", True)]
        assert (old[0].username, old[0].address) == ("", "unknown")
        assert store.bans() == {"#old": ["troll!*@*"]}
        assert store.rooms() == {}
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        store.close()
    net = Network(tmp_path, history=5)  # and the service runs on it
    try:
        viewer = net.register("viewer", "batch", "server-time")
        replies = viewer.ask("JOIN #old")
        assert [(m.source, m.params[1]) for m in privmsgs(replies)] == [
            ("lbob!lbob@unknown", "from the old days"),
            ("lbob!lbob@unknown", "\x01ACTION waves\x01"),
        ]
        viewer.ask("PRIVMSG #old :new")
        assert net.service.store.recent("#old", 1)[0].address == "127.0.0.1"
    finally:
        net.close()


def test_stores_opening_an_old_data_dir_at_once_migrate_it_once(tmp_path):
    """``--workers``: every worker opens the file at start; one migrates, none fails."""
    write_v0_data_dir(tmp_path)
    path = tmp_path / "chat.sqlite3"
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def open_store() -> None:
        start.wait(timeout=30)
        try:
            ChatStore(path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    store = ChatStore(path)
    try:
        assert [m.text for m in store.recent("#old", 10)] == ["from the old days", "waves"]
    finally:
        store.close()


def test_a_data_dir_of_a_newer_version_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "chat.sqlite3")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="newer than this sockhub"):
        ChatStore(tmp_path / "chat.sqlite3")


def test_a_quit_from_several_rooms_is_noted_for_each(net):
    alice = net.register("alice")
    alice.ask("JOIN #a,#b")
    say_many(net, "alice", "#a", 2)
    say_many(net, "alice", "#b", 2)
    bob = net.register("bob", "batch")
    bob.ask("JOIN #a,#b", "QUIT")
    say_many(net, "alice", "#b", 1, start_ts=1_700_000_300.0)
    again = net.register("bob", "batch")
    replayed = privmsgs(again.ask("JOIN #a,#b"))
    assert [(m.params[0], m.params[1].split("] ")[1]) for m in replayed] == [("#b", "message 0")]
