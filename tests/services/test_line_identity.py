"""Line-door identity beside the IRC door: a stable user name, hostmask bans, CTCP, QUIT.

Issue 13, item 4: a line user's user name is the nick they arrived with for
the whole connection, so ``*!name@host`` bans survive ``/nick``; bans are
full hostmasks whichever door sets them; CTCP reaches a terminal as words,
never raw ``\\x01`` bytes, and VERSION/PING/TIME are answered for it; an
empty QUIT reason is ``Client Quit``, never ``Quit: ``.
"""

from __future__ import annotations

import pytest

from net import LineClient, chat_client, irc_client
from sockhub.hub.modes import full_mask


@pytest.fixture
def hub(serve, tmp_path):
    """The chat service with its line and IRC doors; returns (line port, irc port)."""

    async def start():
        settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0,
                    "server_name": "irc.test", "history": 0}
        line, irc = await serve("chat", options=settings)
        return line.ports[0], irc.ports[0]

    return start


async def _ping(client: LineClient, token: str) -> list[str]:
    """Everything the IRC client gets until the server's answer to PING ``token``."""
    start = len(client.seen)
    await client.send(f"PING {token}\r\n".encode())
    await client.expect(f" PONG irc.test :{token}")
    return client.seen[start:-1]


@pytest.mark.parametrize(("mask", "full"), [
    ("lbob", "lbob!*@*"),
    ("127.0.0.1", "*!*@127.0.0.1"),
    ("::1", "*!*@::1"),
    ("lbob@10.*", "*!lbob@10.*"),
    ("lbob!x", "lbob!x@*"),
    ("!@", "*!*@*"),
    ("a!b@c", "a!b@c"),
])
def test_bare_and_partial_masks_are_expanded_as_irc_servers_do(mask, full):
    assert full_mask(mask) == full


async def test_the_user_name_is_stable_across_nick_changes_and_a_ban_on_it_holds(hub):
    line_port, irc_port = await hub()
    op = await irc_client(irc_port, "op", "#den")  # first in: the room's operator
    lbob = await chat_client(line_port, "lbob")
    await lbob.send("/join #den")
    await op.expect(":lbob!lbob@127.0.0.1 JOIN #den")
    await lbob.send("/nick lbob2")
    await op.expect(":lbob!lbob@127.0.0.1 NICK lbob2")
    await op.send(b"WHOIS lbob2\r\n")
    assert (await op.expect(" 311 ")).startswith(":irc.test 311 op lbob2 lbob 127.0.0.1 * ")
    # A ban on the user name, set while the nick is lbob2, still holds after /nick.
    await op.send(b"MODE #den +b *!lbob@*\r\nKICK #den lbob2 :out\r\n")
    await lbob.expect("#den * lbob2 was kicked by op (out)")
    await lbob.send("/nick lbob3")
    await lbob.expect("lbob2 is now known as lbob3")
    await lbob.send("/join #den")
    assert await lbob.expect("error:") == "error: you are banned from #den"


async def test_a_bare_nick_ban_is_a_hostmask_at_every_door(hub):
    line_port, irc_port = await hub()
    op = await irc_client(irc_port, "op", "#den")
    await op.send(b"MODE #den +b carol\r\n")
    await op.expect(":op!op@127.0.0.1 MODE #den +b carol!*@*")
    # The line door's operator is a line user who made the room.
    lop = await chat_client(line_port, "lop")
    await lop.send("/join #yard")
    await lop.expect("-- in #yard: lop")
    await lop.send("/ban #yard dave")
    await lop.send("/ban #yard 10.0.0.7")
    await lop.send("/bans #yard")
    assert await lop.expect("-- bans of") == "-- bans of #yard: dave!*@* *!*@10.0.0.7"
    await lop.send("/unban #yard dave")  # lifted by the same short form
    await lop.send("/bans #yard")
    assert await lop.expect("-- bans of") == "-- bans of #yard: *!*@10.0.0.7"
    # A ban by address alone: 127.0.0.1 keeps every local user out.
    await lop.send("/ban #yard 127.0.0.1")
    await lop.expect("banned *!*@127.0.0.1")
    await op.send(b"JOIN #yard\r\n")
    assert " 474 op #yard " in await op.expect(" 474 ")


async def test_ctcp_reaches_a_line_user_as_words_and_is_answered_for_them(hub):
    line_port, irc_port = await hub()
    ircy = await irc_client(irc_port, "ircy", "#lobby")
    lbob = await chat_client(line_port, "lbob")
    await ircy.expect(":lbob!lbob@127.0.0.1 JOIN #lobby")

    await ircy.send(b"PRIVMSG lbob :\x01ACTION waves\x01\r\n")
    assert (await lbob.expect("waves")).endswith(" [pm] ** ircy waves")
    await ircy.send(b"PRIVMSG #lobby :\x01ACTION dances\x01\r\n")
    assert (await lbob.expect("dances")).endswith(" #lobby ** ircy dances")

    await ircy.send(b"PRIVMSG lbob :\x01VERSION\x01\r\n")
    assert (await lbob.expect("VERSION")).endswith(
        " [ctcp] ircy sent CTCP VERSION; the server answered for you")
    version = await ircy.expect(" NOTICE ircy :")
    assert version.startswith(":lbob!lbob@127.0.0.1 NOTICE ircy :\x01VERSION sockhub ")
    assert version.endswith("\x01")
    await ircy.send(b"PRIVMSG lbob :\x01PING 1700000000 123\x01\r\n")
    assert await ircy.expect(" NOTICE ircy :") == \
        ":lbob!lbob@127.0.0.1 NOTICE ircy :\x01PING 1700000000 123\x01"
    await ircy.send(b"PRIVMSG lbob :\x01TIME\x01\r\n")
    assert (await ircy.expect(" NOTICE ircy :")).endswith(" +0000\x01")

    await ircy.send(b"PRIVMSG lbob :\x01FINGER\x01\r\n")
    assert (await lbob.expect("FINGER")).endswith(" [ctcp] ircy sent CTCP FINGER; not answered")
    await ircy.send(b"NOTICE lbob :\x01VERSION irssi v1.4.3\x01\r\n")
    assert (await lbob.expect("reply")).endswith(" [ctcp reply] ircy: VERSION irssi v1.4.3")
    # A room's CTCP request is shown, and no line user answers it (that would
    # make one line into as many replies as the room has line users).
    await ircy.send(b"PRIVMSG #lobby :\x01VERSION\x01\r\n")
    assert (await lbob.expect("to the room")).endswith(
        " #lobby * ircy sent a CTCP VERSION request to the room")
    assert not any(" NOTICE " in line for line in await _ping(ircy, "after-room-ctcp"))
    # Not once did the terminal get a raw \x01, nor its ^A picture.
    assert not any("\x01" in line or "^A" in line for line in lbob.seen)


async def test_an_empty_quit_reason_is_client_quit_never_a_bare_quit_prefix(hub):
    line_port, irc_port = await hub()
    watcher = await irc_client(irc_port, "watcher", "#lobby")
    lbob = await chat_client(line_port, "lbob")
    await watcher.expect("lbob!lbob@127.0.0.1 JOIN #lobby")

    quitter = await irc_client(irc_port, "quitter", "#lobby")
    await watcher.expect("quitter!quitter@127.0.0.1 JOIN #lobby")
    await quitter.send(b"QUIT\r\n")
    assert await quitter.expect("ERROR") == "ERROR :Closing Link: 127.0.0.1 (Client Quit)"
    assert await watcher.expect(" QUIT ") == ":quitter!quitter@127.0.0.1 QUIT :Client Quit"
    assert (await lbob.expect("quitter quit")).endswith("* quitter quit")

    other = await irc_client(irc_port, "other", "#lobby")
    await other.send(b"QUIT :\r\n")
    assert await watcher.expect(" QUIT ") == ":other!other@127.0.0.1 QUIT :Client Quit"
    await lbob.send("/quit")
    assert await watcher.expect(" QUIT ") == ":lbob!lbob@127.0.0.1 QUIT :Client Quit"
    await lbob.send("x")  # nothing: the door has closed
    lbob.close()

    said = await irc_client(irc_port, "said", "#lobby")
    await said.send(b"QUIT :gone fishing\r\n")
    assert await watcher.expect(" QUIT ") == ":said!said@127.0.0.1 QUIT :Quit: gone fishing"
