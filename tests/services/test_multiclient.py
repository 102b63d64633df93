"""Multiclient (Ergo's model, docs/accounts.md): one account, several connections, one presence.

Real sockets on loopback: an IRC connection logged in with SASL PLAIN and a
line-door connection logged in with a password on connect hold the nick
``alice`` together; others see one JOIN, one NAMES entry, one QUIT.
"""

from __future__ import annotations

import pytest

from net import LineClient, irc_client, open_client, registered, sasl_client


@pytest.fixture
async def hub(serve, tmp_path):
    async def start(**options):
        settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0,
                    "account_delay": 0.05, "account_delay_max": 0.2, "nick_grace": 0.3,
                    **options}
        line, irc = await serve("chat", options=settings)
        return line.ports[0], irc.ports[0]

    return start




async def line_login(port: int, name: str = "alice", password: str = "hunter22") -> LineClient:
    client = LineClient(*await open_client(port))
    await client.expect("enter a nick")
    await client.send(f"/identify {name} {password}")
    await client.expect(f"you are {name}, logged in as {name}")
    return client


async def names(client: LineClient, room: str = "#lobby") -> list[str]:
    await client.send(f"NAMES {room}\r\n".encode())
    line = await client.expect(" 353 ")
    return line.rsplit(":", 1)[1].split()


async def test_two_connections_share_one_presence(hub):
    line_port, irc_port = await hub()
    await registered(line_port)
    watcher = await irc_client(irc_port, "watcher", "#lobby")
    alice_irc = await sasl_client(irc_port)
    await alice_irc.send(b"JOIN #lobby\r\n")
    await alice_irc.expect(" 366 ")
    assert (await watcher.expect(" JOIN ")).startswith(":alice!")

    # The second connection, at the line door, joins the same user: no JOIN,
    # no second entry, and it is told it is in #lobby already.
    alice_line = await line_login(line_port)
    await alice_line.expect("also connected elsewhere (2 connections); in #lobby")
    assert sorted(await names(watcher)) == ["alice", "watcher"]
    await watcher.send(b"PING :after-attach\r\n")
    pong_or_join = await watcher.expect("after-attach")
    assert " JOIN " not in pong_or_join

    # A room message and a private message reach both connections.
    await watcher.send(b"PRIVMSG #lobby :hello room\r\nPRIVMSG alice :psst\r\n")
    await alice_irc.expect("PRIVMSG #lobby :hello room")
    await alice_irc.expect("PRIVMSG alice :psst")
    await alice_line.expect("<watcher> hello room")
    await alice_line.expect("[pm] <watcher> psst")

    # What one connection says, the other is shown as its own (no echo-message cap).
    await alice_irc.send(b"PRIVMSG #lobby :from irc\r\nPRIVMSG watcher :pm from irc\r\n")
    await alice_line.expect("<alice> from irc")
    await alice_line.expect("[pm to watcher] <alice> pm from irc")
    await alice_line.send("from line")
    assert (await alice_irc.expect("from line")).startswith(":alice!alice@")
    await alice_line.send("/msg watcher pm from line")
    assert (await alice_irc.expect("pm from line")).endswith("PRIVMSG watcher :pm from line")
    await watcher.expect(":from irc")
    await watcher.expect(":pm from irc")
    await watcher.expect(":from line")
    await watcher.expect(":pm from line")

    # A join by one connection is the user's: the other is told, with names.
    await alice_line.send("/join #side")
    await alice_irc.expect(" JOIN #side")
    await alice_irc.expect(" 366 alice #side ")
    await alice_irc.send(b"PART #side\r\n")
    await alice_line.expect("#side * alice left")

    # The line connection leaves: alice stays, nobody sees a QUIT.
    await alice_line.send("/quit")
    await alice_line.expect_eof()
    assert sorted(await names(watcher)) == ["alice", "watcher"]
    await watcher.send(b"PRIVMSG alice :still there\r\n")
    await alice_irc.expect(":still there")
    # The last one leaves: one QUIT.
    await alice_irc.send(b"QUIT :bye\r\n")
    assert (await watcher.expect(" QUIT ")).startswith(":alice!")
    assert await names(watcher) == ["watcher"]
    watcher.close()


async def test_unidentified_taker_refused_then_renamed_and_barred(hub):
    line_port, irc_port = await hub()
    await registered(line_port)
    alice = await sasl_client(irc_port)
    # While alice holds the nick, an unidentified connection cannot take it.
    squatter = LineClient(*await open_client(irc_port))
    await squatter.send(b"NICK alice\r\nUSER s 0 * :s\r\n")
    await squatter.expect(" 433 ")
    await squatter.send(b"NICK squat\r\n")
    await squatter.expect(" 001 squat ")
    alice.close()
    # The owner gone, it takes the nick; not identifying, it is renamed after the grace.
    async def until_free() -> None:
        while True:
            await squatter.send(b"NICK alice\r\n")
            line = await squatter.expect(" ")
            if " NICK " in line:
                return
    await until_free()
    await squatter.expect("belongs to account alice")
    renamed = await squatter.expect(" NICK ", timeout=3)
    assert renamed.startswith(":alice!") and " NICK guest-" in renamed
    # ...and may not take it straight back (no squatting loop).
    await squatter.expect("you did not identify for alice")
    await squatter.send(b"NICK alice\r\n")
    assert " 433 guest-" in await squatter.expect(" alice :")
    squatter.close()


async def test_multiclient_off_keeps_one_connection_per_nick(hub):
    line_port, irc_port = await hub(multiclient="off")
    await registered(line_port)
    alice = await sasl_client(irc_port)
    second = LineClient(*await open_client(line_port))
    await second.expect("enter a nick")
    await second.send("/identify alice hunter22")
    await second.expect("already in use")
    for client in (alice, second):
        client.close()


async def test_a_later_irc_connection_is_shown_the_rooms_and_follows_the_nick(hub):
    line_port, irc_port = await hub()
    await registered(line_port)
    watcher = await irc_client(irc_port, "watcher", "#lobby")
    first = await sasl_client(irc_port)
    await first.send(b"JOIN #lobby,#side\r\n")
    await first.expect(" 366 alice #side ")
    second = await sasl_client(irc_port, caps="echo-message")
    # As if it had joined them itself: JOIN, topic, names, for each room.
    assert (await second.expect(" JOIN ")).endswith(" JOIN #lobby")
    assert "alice" in (await second.expect(" 353 alice ")).split(":")[-1].split()
    await second.expect(" 366 alice #lobby ")
    assert (await second.expect(" JOIN ")).endswith(" JOIN #side")
    await second.expect(" 366 alice #side ")
    # What the first says, the second sees once; its own, with echo-message, once too.
    await first.send(b"PRIVMSG #lobby :one\r\n")
    assert (await second.expect("PRIVMSG")).endswith("PRIVMSG #lobby :one")
    await second.send(b"PRIVMSG #lobby :two\r\n")
    assert (await second.expect("PRIVMSG")).endswith("PRIVMSG #lobby :two")
    assert (await first.expect("PRIVMSG")).endswith("PRIVMSG #lobby :two")
    # A nick change is the person's: both connections follow, others see it once.
    await second.send(b"NICK alice_phone\r\n")
    for client in (first, second, watcher):
        assert (await client.expect(" NICK ")).endswith(" NICK alice_phone")
    mark = len(watcher.seen)
    await watcher.send(b"PING :sync\r\n")
    await watcher.expect(":sync")
    assert not [line for line in watcher.seen[mark:] if " NICK " in line]
    for client in (first, second, watcher):
        client.close()
