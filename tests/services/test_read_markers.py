"""History that follows the person (issue 14): read markers shared by the IRC and line
doors (IRCv3 draft/read-marker), and private conversations kept per account, read back
from any door. Real sockets, raw lines."""

from __future__ import annotations

import asyncio
import re
import sqlite3

import pytest

from net import LineClient, chat_client, irc_client, open_client, registered, sasl_client
from sockhub.store.history import SCHEMA_VERSION, ChatStore

TIME = re.compile(r"@(?:\S*;)?time=([^; ]+)")


@pytest.fixture
async def hub(serve, tmp_path):
    async def start(**options):
        settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0,
                    "account_delay": 0.05, "account_delay_max": 0.2, **options}
        line, irc = await serve("chat", options=settings)
        return line.ports[0], irc.ports[0]

    return start




async def identified_line(port: int, account: str, password: str) -> LineClient:
    """A line-door client that logs in at the nick prompt (and so joins #lobby)."""
    client = LineClient(*await open_client(port))
    await client.expect("enter a nick")
    await client.send(f"/identify {account} {password}")
    await client.expect(f"logged in as {account}")
    return client


async def history_until_end(client: LineClient, room: str) -> list[str]:
    """The ``[history]`` lines of a join's replay, up to its end line (or the prompt)."""
    lines = []
    while True:
        line = await client.expect("")
        if line.startswith("[history]"):
            lines.append(line)
        if f"end of history of {room}" in line:
            return lines


async def said(talker: LineClient, watcher: LineClient, *texts: str) -> list[str]:
    """The talker says each text in #lobby; the server-time of each, as the watcher saw it.

    Markers are times in milliseconds (IRCv3 read-marker), so each message is
    said in a millisecond of its own, as irctest does: the pause waits for the
    clock to move, not for anything to happen.
    """
    times = []
    for text in texts:
        await asyncio.sleep(0.002)
        await talker.send(text)
        line = await watcher.expect(f"PRIVMSG #lobby :{text}")
        match = TIME.match(line)
        assert match, line
        times.append(match.group(1))
    return times


async def test_read_on_irc_then_the_line_door_shows_only_the_rest(hub):
    line_port, irc_port = await hub()
    await registered(line_port, "alice", "hunter22")
    talker = await chat_client(line_port, "talker")
    watcher = await irc_client(irc_port, "watcher")
    await watcher.send(b"CAP REQ server-time\r\nJOIN #lobby\r\n")
    await watcher.expect(" 366 watcher #lobby ")
    times = await said(talker, watcher, "one", "two", "three", "four")

    alice = await sasl_client(irc_port, "alice", "hunter22",
                              "draft/read-marker draft/chathistory server-time batch")
    await alice.send(b"JOIN #lobby\r\n")
    # The marker comes before the end of NAMES; registering on the line door and
    # leaving it had moved it to the newest message then (there was none: '*').
    marker = await alice.expect("MARKREAD #lobby")
    assert marker.endswith("MARKREAD #lobby *")
    assert " 366 " not in "".join(alice.seen)
    await alice.expect(" 366 alice #lobby ")
    await alice.send(f"MARKREAD #lobby timestamp={times[1]}\r\n".encode())
    assert (await alice.expect("MARKREAD")).endswith(f"MARKREAD #lobby timestamp={times[1]}")
    # An older time does not move it back ("MUST only ever increase").
    await alice.send(f"MARKREAD #lobby timestamp={times[0]}\r\n".encode())
    assert (await alice.expect("MARKREAD")).endswith(f"MARKREAD #lobby timestamp={times[1]}")
    await alice.send(b"QUIT\r\n")
    await alice.expect_eof()

    again = await identified_line(line_port, "alice", "hunter22")
    shown = await history_until_end(again, "#lobby")
    assert [line.rsplit(" ", 1)[1] for line in shown] == ["three", "four"]
    for client in (talker, watcher, again):
        client.close()


async def test_read_on_the_line_door_then_irc_starts_after_it(hub):
    line_port, irc_port = await hub()
    await registered(line_port, "alice", "hunter22")
    talker = await chat_client(line_port, "talker")
    watcher = await irc_client(irc_port, "watcher")
    await watcher.send(b"CAP REQ server-time\r\nJOIN #lobby\r\n")
    await watcher.expect(" 366 watcher #lobby ")
    await said(talker, watcher, "one", "two")

    alice = await identified_line(line_port, "alice", "hunter22")
    shown = await history_until_end(alice, "#lobby")
    assert [line.rsplit(" ", 1)[1] for line in shown] == ["one", "two"]
    (three,) = await said(talker, watcher, "three")
    await alice.expect("<talker> three")  # read live
    await alice.send("/quit")
    await alice.expect_eof()
    await said(talker, watcher, "four")

    # IRC: the marker is where the line door left it; a client without
    # chathistory gets only what comes after it.
    irc = await sasl_client(irc_port, "alice", "hunter22", "draft/read-marker batch")
    await irc.send(b"JOIN #lobby\r\n")
    assert (await irc.expect("MARKREAD #lobby")).endswith(f"MARKREAD #lobby timestamp={three}")
    await irc.expect(" 366 alice #lobby ")
    line = await irc.expect("PRIVMSG #lobby")
    assert line.endswith(":[" + line.split(":[", 1)[1].split("]")[0] + "] four")
    await irc.expect("BATCH -")
    assert not any("PRIVMSG #lobby :" in seen and ("three" in seen or "two" in seen)
                   for seen in irc.seen)
    for client in (talker, watcher, irc):
        client.close()


async def test_markread_errors_and_a_guest_s_own_markers(hub):
    _, irc_port = await hub()
    guest = await irc_client(irc_port, "guest")
    await guest.send(b"CAP REQ draft/read-marker\r\nMARKREAD\r\n")
    assert "FAIL MARKREAD NEED_MORE_PARAMS" in await guest.expect("FAIL")
    await guest.send(b"MARKREAD #x *\r\n")
    assert "FAIL MARKREAD INVALID_PARAMS #x" in await guest.expect("FAIL")
    await guest.send(b"MARKREAD #x timestamp=yesterday\r\n")
    assert "FAIL MARKREAD INVALID_PARAMS #x" in await guest.expect("FAIL")
    await guest.send(b"MARKREAD bob\r\n")
    assert (await guest.expect("MARKREAD")).endswith("MARKREAD bob *")
    await guest.send(b"MARKREAD Bob timestamp=2024-01-02T03:04:05.678Z\r\nMARKREAD bob\r\n")
    await guest.expect("MARKREAD")
    assert (await guest.expect("MARKREAD")).endswith(
        "MARKREAD bob timestamp=2024-01-02T03:04:05.678Z")
    # Another connection without an account does not share them.
    other = await irc_client(irc_port, "other")
    await other.send(b"CAP REQ draft/read-marker\r\nMARKREAD bob\r\n")
    assert (await other.expect("MARKREAD")).endswith("MARKREAD bob *")
    for client in (guest, other):
        client.close()


async def test_private_conversations_follow_the_account_across_doors(hub):
    line_port, irc_port = await hub()
    await registered(line_port, "alice", "hunter22")
    await registered(line_port, "bob", "swordfish9")
    alice = await sasl_client(irc_port, "alice", "hunter22",
                              "draft/chathistory batch server-time message-tags echo-message")
    bob = await identified_line(line_port, "bob", "swordfish9")
    await alice.send(b"PRIVMSG bob :hello bob\r\n")
    echo = await alice.expect("PRIVMSG bob :hello bob")
    msgid = re.search(r"msgid=(\d+)", echo)
    assert msgid, echo  # kept: its id is its history id
    await bob.expect("hello bob")
    await bob.send("/msg alice hi alice")
    await alice.expect("PRIVMSG alice :hi alice")
    carol = await chat_client(line_port, "carol")  # no account: nothing kept for her
    await carol.send("/msg alice psst")
    await alice.expect("PRIVMSG alice :psst")

    # From the line door, bob pages the conversation back ...
    await bob.send("/history alice")
    first = await bob.expect("[history]")
    second = await bob.expect("[history]")
    assert first.endswith("[pm] <alice> hello bob") and second.endswith(
        "[pm to alice] <bob> hi alice")
    await bob.expect("end of history with alice (2 messages)")
    # ... and from IRC, so does alice, by nick, whatever its case.
    await alice.send(b"CHATHISTORY LATEST BOB * 10\r\n")
    await alice.expect("chathistory BOB")
    got = [await alice.expect("PRIVMSG") for _ in range(2)]
    assert got[0].endswith("PRIVMSG bob :hello bob") and f"msgid={msgid.group(1)}" in got[0]
    assert got[1].endswith("PRIVMSG alice :hi alice")
    await alice.expect("BATCH -")
    # TARGETS lists bob and carol (alice's account keeps what carol sent her).
    await alice.send(b"CHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z "
                     b"timestamp=2200-01-01T00:00:00.000Z 10\r\n")
    await alice.expect("draft/chathistory-targets")
    targets = [(await alice.expect("CHATHISTORY TARGETS")).split()[-2] for _ in range(2)]
    assert targets == ["bob", "carol"]
    # Carol, without an account, has none.
    await carol.send("/history alice")
    assert "kept for accounts" in await carol.expect("error")
    for client in (alice, bob, carol):
        client.close()


def test_a_version_2_file_gains_the_account_tables(tmp_path):
    path = tmp_path / "chat.sqlite3"
    ChatStore(path).close()
    db = sqlite3.connect(path)
    for table in ("private_index", "read_markers", "web_sessions"):
        db.execute(f"DROP TABLE {table}")
    db.execute("PRAGMA user_version = 2")  # registered rooms (step 2) but not step 3
    db.commit()
    db.close()
    store = ChatStore(path)
    assert store.mark_read("alice", "#a", 5) == 5
    assert store.mark_read("alice", "#a", 3) == 5
    assert store.read_marker("alice", "#a") == 5
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_account_keeps_at_most_its_newest_sessions(tmp_path):
    store = ChatStore(tmp_path / "chat.sqlite3")
    for i in range(25):
        store.add_session(bytes([i]) * 32, "alice", float(i), 1e12)
    assert store.session(bytes([4]) * 32, 100.0) is None  # the oldest five ended
    assert store.session(bytes([5]) * 32, 100.0) == "alice"
    assert store.session(bytes([24]) * 32, 1e12) is None  # expired at its time
    store.close()
