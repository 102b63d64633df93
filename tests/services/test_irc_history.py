"""History over IRC: replay on JOIN with server-time, and IRCv3 CHATHISTORY paging."""

from __future__ import annotations

import pytest

from irc_support import Network, commands, find
from sockhub.codec.irc import format_time
from sockhub.doors.line import LineDoor
from sockhub.protocols.base import ConnectionInfo

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
