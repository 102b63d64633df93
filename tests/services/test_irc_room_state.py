"""Room state kept across empty rooms and restarts: topic (with its setter), modes, bans.

Driven by raw IRC lines: through doors on a manual clock, and through a real
``sockhub serve`` process that is stopped and started again on the same data
directory.
"""

from __future__ import annotations

import asyncio

from irc_support import Network, commands, find
from net import read_until
from proc import start_sockhub
from sockhub.passwords import hash_password


def names_of(replies, room):
    return find(replies, "353").params[3].split() if any(
        m.command == "353" and m.params[2] == room for m in replies) else []


def test_new_rooms_are_plus_nt_and_their_creator_is_operator(tmp_path):
    net = Network(tmp_path)
    try:
        alice = net.register("alice")
        replies = alice.ask("JOIN #new")
        assert names_of(replies, "#new") == ["@alice"]
        assert find(alice.ask("MODE #new"), "324").params == ("alice", "#new", "+nt")
    finally:
        net.close()


def test_an_emptied_room_keeps_topic_modes_and_bans_but_no_operators(tmp_path):
    net = Network(tmp_path, operators={"admin": hash_password("pw", log_n=10)})
    try:
        alice = net.register("alice")
        alice.ask("JOIN #keep", "TOPIC #keep :kept topic", "MODE #keep +mk-t sesame",
                  "MODE #keep +b troll!*@*", "PART #keep")
        assert net.service.find_room("#keep") is None  # empty: gone from the live rooms
        bob = net.register("bob")
        assert find(bob.ask("JOIN #keep"), "475").params[1] == "#keep"  # the key is kept
        replies = bob.ask("JOIN #KEEP sesame")
        assert commands(replies) == ["JOIN", "332", "333", "353", "366"]
        assert replies[0].params == ("#keep",)  # the kept spelling of its name
        assert replies[1].params == ("bob", "#keep", "kept topic")
        assert replies[2].params[2] == "alice!alice@127.0.0.1"  # the setter, gone, in full
        assert names_of(replies, "#keep") == ["bob"]  # no operator status for the first back
        assert find(bob.ask("MODE #keep"), "324").params == ("bob", "#keep", "+mnk", "sesame")
        assert find(bob.ask("MODE #keep -m"), "482").params[1] == "#keep"
        assert [m.params[2] for m in bob.ask("MODE #keep +b") if m.command == "367"] == [
            "troll!*@*"]
        # A server operator may still run it, and give operator status back.
        admin = net.register("admin")
        assert find(admin.ask("OPER admin pw"), "381")
        bob.take()
        admin.ask("MODE #keep +o bob")
        assert find(bob.take(), "MODE").params == ("#keep", "+o", "bob")
    finally:
        net.close()


def test_a_room_back_to_a_new_rooms_state_is_forgotten(tmp_path):
    net = Network(tmp_path)
    try:
        alice = net.register("alice")
        alice.ask("JOIN #tmp", "MODE #tmp +m", "TOPIC #tmp :x")
        assert "#tmp" in net.service.hub.saved
        alice.ask("MODE #tmp -m", "TOPIC #tmp :")  # +nt and no topic: nothing to keep
        assert "#tmp" not in net.service.hub.saved
        assert net.service.store.rooms() == {}
        alice.ask("PART #tmp")
        bob = net.register("bob")
        assert names_of(bob.ask("JOIN #tmp"), "#tmp") == ["@bob"]  # as a new room
    finally:
        net.close()


def test_room_state_survives_a_restart_of_the_service(tmp_path):
    net = Network(tmp_path)
    alice = net.register("alice")
    alice.ask("JOIN #r", "TOPIC #r :before the restart", "MODE #r +kl key 5")
    created = net.service.find_room("#r").created
    net.close()
    net = Network(tmp_path)
    try:
        room_state = net.service.hub.saved["#r"]
        assert (room_state.topic, room_state.password, room_state.limit) == (
            "before the restart", "key", 5)
        bob = net.register("bob")
        assert find(bob.ask("JOIN #r"), "475").params[1] == "#r"  # +k kept
        replies = bob.ask("JOIN #r key")
        assert find(replies, "332").params[2] == "before the restart"
        assert find(replies, "333").params[2] == "alice!alice@127.0.0.1"
        modes = bob.ask("MODE #r")
        assert find(modes, "324").params == ("bob", "#r", "+ntkl", "key", "5")
        assert find(modes, "329").params[2] == str(int(created))  # when it was first made
    finally:
        net.close()


def test_secret_private_and_no_ctcp_survive_a_restart(tmp_path):
    net = Network(tmp_path)
    net.register("alice").ask("JOIN #hidden", "MODE #hidden +spC")
    net.close()
    net = Network(tmp_path)
    try:
        bob = net.register("bob")
        assert not [m for m in bob.ask("LIST") if m.command == "322"]  # +s kept: not listed
        bob.ask("JOIN #hidden")
        letters = find(bob.ask("MODE #hidden"), "324").params[2]
        assert set("ntspC") <= set(letters.lstrip("+"))
    finally:
        net.close()


async def irc_session(port: int, nick: str, *caps: str):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if caps:
        writer.write(f"CAP REQ :{' '.join(caps)}\r\n".encode())
    writer.write(f"NICK {nick}\r\nUSER {nick}u 0 * :{nick}\r\n".encode())
    if caps:
        writer.write(b"CAP END\r\n")
    await read_until(reader, b" 422 ")  # no MOTD: the end of registration
    return reader, writer


async def test_topic_modes_and_history_prefixes_survive_a_restart_of_the_process(tmp_path):
    args = ("chat", "--port", "0", "--irc-port", "0", "--data-dir", str(tmp_path),
            "--server-name", "irc.test", "--flood-rate", "none", "--history", "10")
    served = await start_sockhub(*args, listeners=2)
    try:
        reader, writer = await irc_session(served.ports["irc"], "lbob")
        writer.write(b"JOIN #persist\r\nTOPIC #persist :kept across restarts\r\n"
                     b"MODE #persist +m\r\nMODE #persist +b spam!*@*\r\n"
                     b"PRIVMSG #persist :said before the restart\r\n")
        await read_until(reader, b"MODE #persist +b spam!*@*")
        writer.write(b"QUIT :see you\r\n")
        await read_until(reader, b"ERROR")
        writer.close()
    finally:
        assert await served.stop() == 0
    served = await start_sockhub(*args, listeners=2)
    try:
        reader, writer = await irc_session(served.ports["irc"], "carol", "batch", "server-time")
        writer.write(b"JOIN #persist\r\n")
        lines = await read_until(reader, b"BATCH -")
        text = b"".join(lines).decode()
        assert " 332 carol #persist :kept across restarts\r\n" in text
        assert " 333 carol #persist lbob!lbobu@127.0.0.1 " in text
        assert " 353 carol = #persist :carol\r\n" in text  # no operator status taken
        assert ":lbob!lbobu@127.0.0.1 PRIVMSG #persist :said before the restart\r\n" in text
        writer.write(b"MODE #persist\r\nMODE #persist b\r\n")
        text = b"".join(await read_until(reader, b" 368 ")).decode()
        assert " 324 carol #persist :+mnt\r\n" in text
        assert " 367 carol #persist :spam!*@*\r\n" in text
        writer.close()
    finally:
        assert await served.stop() == 0
