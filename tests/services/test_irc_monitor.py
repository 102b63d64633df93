"""IRCv3 MONITOR and extended-monitor on the IRC door: real sockets, raw lines.

Watchers and watched users share no room, so every notification here comes
through the chat service's watchlist (hub/watch.py), not a room's fan-out.
"""

from __future__ import annotations

import pytest

from irc_support import Network
from net import LineClient, irc_client, open_client


@pytest.fixture
async def irc(serve, tmp_path):
    async def start() -> int:
        settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0,
                    "account_delay": 0.05, "account_delay_max": 0.2}
        _, irc_door = await serve("chat", options=settings)
        return irc_door.ports[0]

    return start


async def between(client: LineClient, *lines: str) -> list[str]:
    """Send ``lines``, then a PING: the lines that came before its PONG."""
    for line in lines:
        await client.send(line.encode() + b"\r\n")
    await client.send(b"PING :sync\r\n")
    start = len(client.seen)
    await client.expect("PONG")
    return client.seen[start:-1]


def numerics(lines: list[str], numeric: str) -> list[str]:
    """The last parameter of each ``numeric`` reply."""
    return [_last(line) for line in lines if line.split(" ")[1:2] == [numeric]]


def _last(line: str) -> str:
    head, colon, trailing = line[1:].partition(" :")
    return trailing if colon else head.rsplit(" ", 1)[1]


async def test_isupport_advertises_the_limit(irc):
    port = await irc()
    client = LineClient(*await open_client(port))
    await client.send(b"NICK w\r\nUSER w 0 * :w\r\n")
    line = await client.expect(" MONITOR=")
    assert " MONITOR=100 " in line
    client.close()


async def test_add_list_status_remove_clear(irc):
    port = await irc()
    bob = await irc_client(port, "bob")
    watcher = await irc_client(port, "watcher")
    got = await between(watcher, "MONITOR + Bob,carol")
    assert numerics(got, "730") == ["bob!bob@127.0.0.1"]  # as the server spells it
    assert numerics(got, "731") == ["carol"]
    got = await between(watcher, "MONITOR L")
    assert numerics(got, "732") == ["Bob,carol"]
    assert numerics(got, "733") == ["End of MONITOR list"]
    got = await between(watcher, "MONITOR S")
    assert numerics(got, "730") == ["bob!bob@127.0.0.1"] and numerics(got, "731") == ["carol"]
    assert await between(watcher, "MONITOR - CAROL") == []  # no reply to a removal
    assert numerics(await between(watcher, "MONITOR L"), "732") == ["Bob"]
    assert await between(watcher, "MONITOR C") == []
    got = await between(watcher, "MONITOR L")
    assert numerics(got, "732") == [] and numerics(got, "733")
    # Cleared: bob leaving is no longer news.
    bob.close()
    assert numerics(await between(watcher, "MONITOR S"), "731") == []


async def test_online_offline_on_connect_quit_and_nick_change(irc):
    port = await irc()
    watcher = await irc_client(port, "watcher")
    await between(watcher, "MONITOR + alice,NEWNAME")
    alice = await irc_client(port, "Alice")
    line = await watcher.expect(" 730 ")
    assert line.endswith(":Alice!Alice@127.0.0.1") or line.endswith(" Alice!Alice@127.0.0.1")
    await alice.send(b"NICK newname\r\n")
    assert (await watcher.expect(" 731 ")).endswith("Alice")  # the old nick goes offline
    assert "newname!Alice@127.0.0.1" in await watcher.expect(" 730 ")  # the new comes online
    await alice.send(b"QUIT :bye\r\n")
    assert (await watcher.expect(" 731 ")).endswith("newname")


async def test_a_dropped_connection_is_offline(irc):
    port = await irc()
    watcher = await irc_client(port, "watcher")
    await between(watcher, "MONITOR + bob")
    bob = await irc_client(port, "bob")
    await watcher.expect(" 730 ")
    bob.close()  # no QUIT: the connection just ends
    assert (await watcher.expect(" 731 ")).endswith("bob")


def test_a_watcher_s_entries_leave_the_index_with_it(tmp_path):
    net = Network(tmp_path)
    try:
        one, two = net.register("one"), net.register("two")
        one.ask("MONITOR + a,b,c")
        two.ask("MONITOR + A,d")
        watchlist = net.service.watchlist
        assert len(watchlist) == 4  # a, b, c, d: one key a nick, however many watch it
        one.door.connection_lost()
        assert len(watchlist) == 2
        two.ask("MONITOR C")
        assert len(watchlist) == 0
        two.ask("MONITOR + a")
        two.door.connection_lost()
        assert len(watchlist) == 0
        # Gone watchers are not called: a newcomer named a is news to no one.
        net.register("a")
    finally:
        net.close()


async def test_the_list_is_capped_with_734(irc):
    port = await irc()
    watcher = await irc_client(port, "watcher")
    first = ",".join(f"n{i}" for i in range(98))
    await between(watcher, f"MONITOR + {first}")
    got = await between(watcher, "MONITOR + x1,x2,x3,x4")
    full = [line for line in got if " 734 " in line]
    assert len(full) == 1 and " 100 x3,x4 " in full[0]
    assert numerics(got, "731") == ["x1,x2"]  # the two that fit were added
    listed = ",".join(numerics(await between(watcher, "MONITOR L"), "732")).split(",")
    assert len(listed) == 100
    # Removing makes room again; adding a nick already listed costs nothing.
    got = await between(watcher, "MONITOR - n0", "MONITOR + N1,x3")
    assert not any(" 734 " in line for line in got)


async def test_bad_input_is_told_and_harms_no_one(irc):
    port = await irc()
    watcher = await irc_client(port, "watcher")
    got = await between(watcher, "MONITOR + *!u@host", "MONITOR +", "MONITOR X", "MONITOR")
    assert any(" 432 watcher *!u@host " in line for line in got)  # masks are not nicks
    assert sum(" 461 " in line for line in got) == 2
    assert any(" 421 " in line for line in got)
    assert numerics(await between(watcher, "MONITOR L"), "732") == []


async def extended(port: int, nick: str, caps: str) -> LineClient:
    client = LineClient(*await open_client(port))
    await client.send(f"CAP REQ :{caps}\r\nNICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n"
                      "CAP END\r\n".encode())
    await client.expect(f" 001 {nick} ")
    return client


async def test_extended_monitor_tells_away_and_account_to_who_asked(irc):
    port = await irc()
    watcher = await extended(port, "watcher", "extended-monitor away-notify")
    plain = await extended(port, "plain", "away-notify")  # no extended-monitor
    await between(watcher, "MONITOR + bob")
    await between(plain, "MONITOR + bob")
    bob = await irc_client(port, "bob")
    await watcher.expect(" 730 ")
    await bob.send(b"AWAY :lunch\r\n")
    assert (await watcher.expect(" AWAY ")).startswith(":bob!bob@127.0.0.1 AWAY")
    await bob.send(b"AWAY\r\n")
    assert (await watcher.expect(" AWAY")).endswith("AWAY")
    got = await between(plain, "MONITOR S")
    assert not any(" AWAY" in line for line in got)
    # Sharing a room, the watcher hears it once (away-notify), not twice.
    await between(watcher, "JOIN #r")
    await between(bob, "JOIN #r")
    await between(watcher)
    await bob.send(b"AWAY :again\r\n")
    await between(bob)
    got = await between(watcher)
    assert sum(" AWAY " in line for line in got) == 1


async def test_extended_monitor_tells_account_changes(irc):
    port = await irc()
    watcher = await extended(port, "watcher", "extended-monitor account-notify")
    await between(watcher, "MONITOR + bob")
    bob = await irc_client(port, "bob")
    await watcher.expect(" 730 ")
    await bob.send(b"PRIVMSG NickServ :REGISTER hunter22\r\n")
    assert (await watcher.expect(" ACCOUNT ")).endswith(":bob!bob@127.0.0.1 ACCOUNT bob")
    await bob.send(b"NS LOGOUT\r\n")
    assert (await watcher.expect(" ACCOUNT ")).endswith(" ACCOUNT *")


async def test_extended_monitor_tells_setname_to_watchers_with_the_cap(irc):
    port = await irc()
    watcher = await extended(port, "watcher", "extended-monitor setname")
    plain = await extended(port, "plain", "extended-monitor")  # no setname: nothing
    await between(watcher, "MONITOR + bob")
    await between(plain, "MONITOR + bob")
    bob = await extended(port, "bob", "setname")
    await watcher.expect(" 730 ")
    await bob.send(b"SETNAME :Bob Jones\r\n")
    assert (await watcher.expect(" SETNAME ")).endswith(":bob!bob@127.0.0.1 SETNAME :Bob Jones")
    got = await between(plain, "MONITOR S")
    assert not any(" SETNAME " in line for line in got)
