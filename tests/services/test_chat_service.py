"""The chat hub's line door over real loopback sockets."""

from __future__ import annotations

import asyncio
import signal

import pytest

from net import STEP, LineClient, chat_client, open_client, reset, server_side
from proc import start_sockhub
from sockhub.passwords import hash_password

OPER_HASH = hash_password("s3cret", log_n=10)  # cheap cost: tests only


@pytest.fixture
async def chat(serve, tmp_path):
    async def start(**options):
        limits = {k: options.pop(k) for k in list(options) if k.startswith(("max_", "write_"))}
        settings = {"data_dir": str(tmp_path), "flood_rate": None, **options}
        return await serve("chat", options=settings, **limits)

    return start


async def test_clients_see_each_others_messages_with_nicks(chat):
    server = await chat()
    port = server.ports[0]
    alice = await chat_client(port, "alice")
    bob = await chat_client(port, "bob")
    await alice.expect("#lobby * bob joined")
    carol = await chat_client(port, "carol")
    await alice.send("hello everyone")
    for client in (alice, bob, carol):
        line = await client.expect("<alice>")
        assert line.endswith("#lobby <alice> hello everyone")
    await bob.send("/me waves")
    assert (await carol.expect("** bob waves")).endswith("#lobby ** bob waves")
    for client in (alice, bob, carol):
        client.close()


async def test_private_messages_reach_only_their_target(chat):
    server = await chat()
    port = server.ports[0]
    alice, bob, carol = [await chat_client(port, n) for n in ("alice", "bob", "carol")]
    await alice.send("/msg BOB just for you")
    assert (await bob.expect("[pm]")).endswith("[pm] <alice> just for you")
    assert (await alice.expect("[pm to")).endswith("[pm to bob] <alice> just for you")
    await alice.send("public now")  # carol's next message line must be this one
    line = await carol.expect("<alice>")
    assert line.endswith("public now")
    assert not any("just for you" in seen for seen in carol.seen)
    await alice.send("/msg nobody hi")
    assert await alice.expect("error:") == "error: no such nick: nobody"
    for client in (alice, bob, carol):
        client.close()


async def test_a_dropped_client_is_removed_and_announced(chat):
    server = await chat()
    port = server.ports[0]
    alice = await chat_client(port, "alice")
    bob = await chat_client(port, "bob")
    connection = server_side(server, bob.writer)
    reset(bob.writer)
    assert (await alice.expect("bob quit")).endswith("* bob quit (connection lost)")
    await asyncio.wait_for(connection.closed.wait(), STEP)
    # The nick is free again.
    bob2 = await chat_client(port, "bob")
    bob2.close()
    alice.close()


async def test_nick_collisions_and_invalid_nicks_are_refused(chat):
    server = await chat()
    port = server.ports[0]
    alice = await chat_client(port, "alice")
    other = LineClient(*await open_client(port))
    await other.expect("enter a nick")
    await other.send("ALICE")
    assert await other.expect("error:") == "error: nick ALICE is already in use"
    await other.send("9bad")
    assert (await other.expect("error:")).startswith("error: invalid nick '9bad'")
    await other.send("/nick alicia")
    await other.expect("-- you are alicia")
    await other.send("/nick alice")
    assert await other.expect("error:") == "error: nick alice is already in use"
    await other.send("/nick Alicia2")
    assert (await alice.expect("known as")).endswith("* alicia is now known as Alicia2")
    alice.close()
    other.close()


async def test_guest_nick_from_an_empty_line(chat):
    server = await chat()
    client = LineClient(*await open_client(server.ports[0]))
    await client.expect("enter a nick")
    await client.send("")
    line = await client.expect("-- you are guest-")
    assert line.startswith("-- you are guest-")
    client.close()


async def test_rooms_topics_who_and_part(chat):
    server = await chat()
    port = server.ports[0]
    alice = await chat_client(port, "alice")
    bob = await chat_client(port, "bob")
    await alice.send("/join #dev")
    await alice.expect("#dev * alice joined")
    await alice.send("/topic ship it")
    await alice.expect("set the topic: ship it")
    await bob.send("/join #DEV")
    await bob.expect("#dev * bob joined")
    assert await bob.expect("-- topic of") == "-- topic of #dev: ship it"
    await bob.send("/who")
    assert await bob.expect("-- in #dev (") == "-- in #dev (2): @alice bob"
    await bob.send("/rooms")
    await bob.expect("2 room(s)")
    assert await bob.expect("#dev") == "--   #dev (2): ship it"
    await bob.send("in dev")
    await alice.expect("#dev <bob> in dev")
    await bob.send("/part #dev later")
    assert (await alice.expect("left")).endswith("#dev * bob left (later)")
    await bob.send("back in the lobby")  # current room fell back to #lobby
    await alice.expect("#lobby <bob> back in the lobby")
    alice.close()
    bob.close()


async def test_unknown_commands_and_bad_arguments_get_one_line_errors(chat):
    server = await chat()
    alice = await chat_client(server.ports[0], "alice")
    for line, error in [
        ("/frobnicate", "error: unknown command /frobnicate; /help lists commands"),
        ("/join", "error: usage: /join #ROOM [PASSWORD]"),
        ("/join lobby", "error: invalid room 'lobby': a room name starts with #"),
        ("/history lots more", "error: usage: /history [N] or /history NICK [N]"),
        ("/history lots", "error: private messages are kept for accounts: "
                          "/identify PASSWORD first"),
        ("/history 0", "error: /history takes 1 to 1000 messages"),
        ("/kick", "error: usage: /kick [#ROOM] NICK [REASON]"),
        ("/topic #lobby mine", "error: only operators may set the topic of #lobby"),
    ]:
        await alice.send(line)
        assert await alice.expect("error:") == error
    await alice.send("still fine")
    await alice.expect("<alice> still fine")
    alice.close()


async def test_invalid_utf8_and_oversize_lines_leave_the_server_healthy(chat):
    server = await chat(max_line=100)
    port = server.ports[0]
    alice = await chat_client(port, "alice")
    bob = await chat_client(port, "bob")
    await bob.send(b"bad \xff\xfe bytes\n")
    assert (await bob.expect("error:")).startswith("error: invalid UTF-8 at byte 4")
    await bob.send("after the bad line")
    await alice.expect("<bob> after the bad line")
    await bob.send(b"x" * 500 + b"\n")
    assert await bob.expect("error:") == "error: line too long (max 100 bytes); closing"
    await bob.expect_eof()
    assert (await alice.expect("bob quit")).endswith("* bob quit (connection lost)")
    carol = await chat_client(port, "carol")
    await carol.send("healthy")
    await alice.expect("<carol> healthy")
    alice.close()
    carol.close()


async def test_flood_control_warns_then_disconnects(chat):
    server = await chat(flood_rate=1.0, flood_burst=5)
    port = server.ports[0]
    alice = await chat_client(port, "alice")
    flooder = await chat_client(port, "flooder")
    # Registration took one token; the burst allows four more lines at once.
    await flooder.send(b"".join(b"line %d\n" % i for i in range(30)))
    warning = await flooder.expect("error: flood control")
    assert warning == "error: flood control: you are sending too fast; line dropped, slow down"
    assert await flooder.expect("disconnected") == "error: flood control: disconnected for flooding"
    await flooder.expect_eof()
    received = [line for line in (await _lines_until(alice, "flooder quit")) if "<flooder>" in line]
    assert 1 <= len(received) <= 6  # the burst passed, the flood did not
    alice.close()


async def _lines_until(client: LineClient, needle: str) -> list[str]:
    start = len(client.seen)
    await client.expect(needle)
    return client.seen[start:]


async def test_five_hundred_clients_all_get_every_message_once(chat):
    server = await chat(max_conns_per_ip=None)
    port = server.ports[0]
    clients = await asyncio.gather(*(chat_client(port, f"u{i:03d}") for i in range(500)))
    senders = clients[:5]
    for sender in senders:
        await sender.send("/join #big")
    for client in clients[5:]:
        await client.send("/join #big")
    for client in clients:
        await client.expect("#big * u499 joined", timeout=60) if client is not clients[-1] else None
    await clients[-1].expect("-- in #big", timeout=60)
    for n in range(10):
        for sender in senders:
            await sender.send(f"msg {sender_name(sender)} {n}")

    async def collect(client: LineClient) -> list[str]:
        got = []
        while len(got) < 50:
            line = await client.expect("#big <", timeout=60)
            got.append(line.split(" ", 2)[2])
        return got

    results = await asyncio.gather(*(collect(c) for c in clients))
    for got in results:
        assert len(got) == len(set(got)) == 50
        for sender in senders:  # each sender's messages in its order
            name = sender_name(sender)
            mine = [line for line in got if line.startswith(f"<{name}>")]
            assert mine == [f"<{name}> msg {name} {n}" for n in range(10)]
    for client in clients:
        client.close()


def sender_name(client: LineClient) -> str:
    return next(line for line in client.seen if line.startswith("-- you are ")).split()[-1]


async def test_a_never_reading_client_is_dropped_others_keep_receiving(chat):
    server = await chat(write_high_water=8 * 1024, max_conns_per_ip=None)
    port = server.ports[0]
    alice = await chat_client(port, "alice")
    bob = await chat_client(port, "bob")
    slow = await chat_client(port, "slow")
    slow.writer.transport.pause_reading()  # from now on it never reads
    slow_side = server_side(server, slow.writer)
    bob_reads = asyncio.create_task(bob.expect("<alice> after the drop", timeout=60))
    payload = "z" * 3900
    # Up to 20 MB to every member: more than the kernel's socket buffers hold,
    # so the server's own buffer for the slow one must pass write_buffer_max.
    for i in range(5000):
        await alice.send(f"{i} {payload}")
        await alice.expect(f"<alice> {i} ")  # acknowledged: alice reads, bob reads
        if slow_side.closed.is_set():
            break
    await asyncio.wait_for(slow_side.closed.wait(), 30)
    await alice.expect("* slow quit (connection lost)")
    await alice.send("after the drop")
    await bob_reads
    assert any(line.endswith("* slow quit (connection lost)") for line in bob.seen)
    received = [line for line in bob.seen if "<alice> " in line]
    assert len(received) == i + 2  # every message, none lost while slow was dropped
    alice.close()
    bob.close()
    slow.writer.transport.abort()


async def test_history_is_replayed_on_join_and_by_command(chat):
    server = await chat(history=3)
    port = server.ports[0]
    alice = await chat_client(port, "alice")
    for i in range(5):
        await alice.send(f"message {i}")
        await alice.expect(f"<alice> message {i}")
    bob = LineClient(*await open_client(port))
    await bob.send("bob")
    await bob.expect("#lobby * bob joined")
    replay = [await bob.expect("[history]") for _ in range(3)]
    assert [line.split("<alice> ")[1] for line in replay] == [f"message {i}" for i in (2, 3, 4)]
    assert await bob.expect("-- end of history") == "-- end of history of #lobby (3 messages)"
    await bob.send("/history 5")
    replay = [await bob.expect("[history]") for _ in range(5)]
    assert replay[0].endswith("<alice> message 0")
    await bob.expect("(5 messages)")
    alice.close()
    bob.close()


async def test_operators_kick_and_ban_and_bans_persist(chat, tmp_path):
    server = await chat(operators={"admin": OPER_HASH})
    port = server.ports[0]
    op = await chat_client(port, "op")
    bob = await chat_client(port, "bob")
    await op.send("/kick bob")
    assert await op.expect("error:") == "error: you are not an operator of #lobby"
    await op.send("/oper admin wrong")
    assert await op.expect("error:") == "error: wrong operator name or password"
    await op.send("/oper admin s3cret")
    await op.expect("-- you are now a server operator")
    await op.send("/topic #lobby moderated")
    await bob.expect("set the topic: moderated")
    await op.send("/kick bob behave")
    assert (await bob.expect("kicked")).endswith("#lobby * bob was kicked by op (behave)")
    await bob.send("anyone?")
    assert await bob.expect("error:") == "error: you are in no room; /join #ROOM first"
    await bob.send("/join #lobby")
    await op.expect("#lobby * bob joined")
    await op.send("/ban bob")
    await bob.expect("was kicked by op (banned)")
    await bob.send("/join #lobby")
    assert await bob.expect("error:") == "error: you are banned from #lobby"
    await op.send("/bans")
    assert await op.expect("-- bans of") == "-- bans of #lobby: bob!*@*"  # expanded, as IRC does
    op.close()
    bob.close()
    await server.shutdown()
    # A new server on the same data directory still knows the ban.
    server = await chat(operators={"admin": OPER_HASH})
    bob = LineClient(*await open_client(server.ports[0]))
    await bob.send("bob")
    await bob.expect("-- you are bob")
    assert await bob.expect("error:") == "error: you are banned from #lobby"
    bob.close()


async def test_three_failed_oper_attempts_close_the_connection(chat):
    server = await chat(operators={"admin": OPER_HASH})
    client = await chat_client(server.ports[0], "guess")
    for _ in range(3):
        await client.send("/oper admin nope")
    assert "error: too many failed attempts; closing" in await client.expect_eof()


async def test_shutdown_tells_every_client(chat):
    server = await chat()
    clients = [await chat_client(server.ports[0], f"c{i}") for i in range(3)]
    await server.shutdown()
    for client in clients:
        rest = await client.expect_eof()
        assert rest[-1] == "-- server shutting down"
        assert not any(" quit" in line for line in rest)  # no one is told of the others


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
async def test_history_survives_a_restart_and_kill_9(tmp_path, how):
    args = ("chat", "--port", "0", "--data-dir", str(tmp_path), "--flood-rate", "none")
    served = await start_sockhub(*args)
    port = served.ports["chat"]
    alice = await chat_client(port, "alice")
    for i in range(20):
        await alice.send(f"durable {i}")
    await alice.expect("<alice> durable 19")  # acknowledged: stored before the echo
    code = await served.stop(how)
    assert code == (-9 if how == signal.SIGKILL else 0)
    alice.close()
    served = await start_sockhub(
        "chat", "--port", str(port), "--data-dir", str(tmp_path), "--history", "20"
    )
    try:
        bob = LineClient(*await open_client(port))
        await bob.send("bob")
        replay = [await bob.expect("[history]") for _ in range(20)]
        assert [line.rsplit("<alice> ", 1)[1] for line in replay] == [
            f"durable {i}" for i in range(20)
        ]
        bob.close()
    finally:
        await served.stop()
