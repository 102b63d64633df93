"""Scale-out over Redis (--bus, issue 15): real nodes, a real redis-server.

Each node is a real ``sockhub serve`` process; the Redis is a real
redis-server on a free loopback port (tests/redis_support.py: no skipping,
a missing redis-server fails saying how to install it).
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from net import LineClient, chat_client, irc_client, open_client
from proc import Served, run_sockhub, start_sockhub
from redis_support import RedisServer

TTL = "1.5"  # --bus-node-ttl: a dead node's users are gone within about 2 s


@pytest.fixture
async def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def cluster(tmp_path, redis_server):
    """``await cluster("a", *options)`` starts a node; every node stops after the test."""
    started: list[Served] = []

    async def start(name: str, *extra: str) -> Served:
        served = await node(tmp_path, redis_server, name, *extra)
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            await served.stop()


async def node(tmp_path, redis_server: RedisServer, name: str, *extra: str) -> Served:
    data = tmp_path / name
    return await start_sockhub(
        "chat", "--port", "0", "--irc-port", "0", "--data-dir", str(data), "--flood-rate",
        "none", "--bus", redis_server.url, "--bus-node-ttl", TTL, "--log-level", "info",
        *extra, listeners=2)


async def expect_each(client: LineClient, *needles: str) -> None:
    """Read until every needle has been in a line, in whatever order they come."""
    def missing() -> list[str]:
        return [n for n in needles if not any(n in line for line in client.seen)]

    while todo := missing():
        await client.expect(todo[0])


async def test_messages_reach_every_node_once_in_order_with_the_same_ids(cluster):
    nodes = [await cluster(f"n{i}") for i in range(3)]
    alice = await chat_client(nodes[0].ports["chat"], "alice")
    bob = await irc_client(nodes[1].ports["irc"], "bob", "#lobby")
    carol = await chat_client(nodes[2].ports["chat"], "carol")
    await alice.expect("* carol joined")  # a remote join reaches alice's node
    for i in range(30):
        await alice.send(f"from alice {i}")
        await carol.send(f"from carol {i}")
    # Alice and carol talk at once on two nodes: which of the two writers
    # reaches the stream first is a race (all of carol's 30 may precede
    # alice's first), so wait for both last lines in either order.
    for client in (alice, bob, carol):
        await expect_each(client, "from alice 29", "from carol 29")
    orders = []
    for client in (alice, bob, carol):
        for who in ("alice", "carol"):
            got = [int(line.rsplit(f"from {who} ", 1)[1]) for line in client.seen
                   if f"from {who} " in line]
            assert got == list(range(30)), (who, got)  # each once, in order
        orders.append([line.rsplit(" ", 2)[-2:] for line in client.seen
                       if "from alice " in line or "from carol " in line])
    # One stream, one order: every member on every node saw the same interleaving.
    assert orders[0] == orders[1] == orders[2]
    # Every node stored the same messages under the same ids, in the same order.
    histories = []
    for served in nodes:
        dave = LineClient(*await open_client(served.ports["chat"]))
        await dave.expect("enter a nick")
        await dave.send(f"dave{served.ports['chat']}")
        await dave.expect(" joined")
        await dave.send("/history 60")
        lines = [await dave.expect("[history]") for _ in range(60)]
        histories.append([line.split(" ", 3)[-1] for line in lines])
        dave.close()
    assert histories[0] == histories[1] == histories[2]
    assert len(set(histories[0])) == 60
    for client in (alice, bob, carol):
        client.close()


async def test_a_nick_taken_on_one_node_is_refused_on_another(cluster):
    a = await cluster("a")
    b = await cluster("b")
    alice = await chat_client(a.ports["chat"], "alice")
    bob = await chat_client(b.ports["chat"], "bob")
    other = LineClient(*await open_client(b.ports["chat"]))
    await other.expect("enter a nick")
    await other.send("ALICE")
    await other.expect("already in use")
    irc = LineClient(*await open_client(b.ports["irc"]))
    await irc.send(b"NICK alice\r\nUSER x 0 * :x\r\n")
    await irc.expect(" 433 ")  # ERR_NICKNAMEINUSE
    # Released when alice quits: the nick is free on the other node.
    await alice.send("/quit")
    await bob.expect("* alice quit")
    await other.send("alice")
    await other.expect("-- you are alice")
    for client in (alice, bob, other, irc):
        client.close()


async def test_a_nick_race_across_two_nodes_has_exactly_one_winner(cluster):
    a = await cluster("a")
    b = await cluster("b")
    for round_ in range(5):
        nick = f"racer{round_}"
        clients = [LineClient(*await open_client(s.ports["chat"])) for s in (a, b)]
        for client in clients:
            await client.expect("enter a nick")
        await asyncio.gather(*(client.send(nick) for client in clients))

        async def outcome(client: LineClient) -> bool:
            line = await client.expect(" ")
            while "you are" not in line and "in use" not in line:
                line = await client.expect(" ")
            return "you are" in line

        results = await asyncio.gather(*(outcome(c) for c in clients))
        assert sorted(results) == [False, True], results
        for client in clients:
            client.close()


async def test_users_of_a_killed_node_are_announced_gone_within_the_bound(cluster):
    a = await cluster("a")
    b = await cluster("b")
    alice = await chat_client(a.ports["chat"], "alice")
    bob = await chat_client(b.ports["chat"], "bob")
    await alice.expect("* bob joined")
    await bob.send("before the crash")
    await alice.expect("<bob> before the crash")
    loop = asyncio.get_running_loop()
    killed = loop.time()
    await b.stop(signal.SIGKILL)
    await alice.expect("* bob quit", timeout=float(TTL) * 4)
    assert loop.time() - killed < float(TTL) * 2 + 1.0
    # bob comes back on the surviving node, with his nick and the history.
    again = LineClient(*await open_client(a.ports["chat"]))
    await again.expect("enter a nick")
    await again.send("bob")
    await again.expect("-- you are bob")
    await again.expect("<bob> before the crash")
    alice.close()
    again.close()
    bob.close()


async def test_redis_lost_refuses_messages_then_recovers(redis_server, cluster):
    a = await cluster("a")
    b = await cluster("b")
    alice = await chat_client(a.ports["chat"], "alice")
    bob = await chat_client(b.ports["chat"], "bob")
    await alice.expect("* bob joined")
    ircy = await irc_client(a.ports["irc"], "ircy", "#lobby")
    await bob.expect("* ircy joined")
    await redis_server.stop()
    await a.expect_log("lost Redis")
    await alice.send("while it is down")
    await alice.expect("error: the chat cluster's bus (Redis) is unreachable")
    await ircy.send(b"PRIVMSG #lobby :also while down\r\n")
    await ircy.expect(" 400 ircy PRIVMSG :the chat cluster's bus (Redis) is unreachable")
    await redis_server.start()
    await a.expect_log("Redis is back")
    await b.expect_log("Redis is back")
    await alice.send("after the restart")
    await bob.expect("<alice> after the restart")
    assert not any("while it is down" in line for line in bob.seen)
    # The restarted Redis had lost the nicks: node a claimed alice's again.
    await a.expect_log("claimed its users' nicks again")
    other = LineClient(*await open_client(b.ports["chat"]))
    await other.expect("enter a nick")
    await other.send("alice")
    await other.expect("already in use")
    for client in (alice, bob, other, ircy):
        client.close()


async def test_redis_unreachable_at_start_exits_1(tmp_path, redis_server):
    await redis_server.stop()
    code, _, err = await run_sockhub(
        "serve", "chat", "--port", "0", "--data-dir", str(tmp_path), "--bus", redis_server.url,
        timeout=30)
    assert code == 1
    assert b"cannot reach Redis at redis://127.0.0.1:" in err


async def test_bus_url_with_a_password_is_refused(tmp_path):
    code, _, err = await run_sockhub(
        "serve", "chat", "--port", "0", "--data-dir", str(tmp_path), "--bus",
        "redis://:hunter2@127.0.0.1:1/0")
    assert code == 2
    assert b"--bus-password-file" in err
    assert b"hunter2" not in err


async def test_workers_without_a_bus_are_refused_with_a_hint(tmp_path):
    code, _, err = await run_sockhub(
        "serve", "chat", "--port", "0", "--data-dir", str(tmp_path), "--workers", "2")
    assert code == 2
    assert b"add --bus redis://HOST:PORT/DB" in err


async def test_two_workers_share_rooms_over_redis(tmp_path, redis_server):
    served = await start_sockhub(
        "chat", "--port", "0", "--data-dir", str(tmp_path), "--flood-rate", "none",
        "--bus", redis_server.url, "--workers", "2")
    try:
        port = served.ports["chat, 2 workers"]
        clients = [await chat_client(port, f"user{i}") for i in range(6)]
        await clients[0].send("hello workers")
        for client in clients:
            await client.expect("<user0> hello workers")
        for client in clients:
            client.close()
    finally:
        await served.stop()


async def _get(port: int, path: str) -> tuple[bytes, bytes]:
    """One HTTP/1.1 GET over a real socket: (head, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 "Connection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


async def test_healthz_and_metrics_follow_the_bus(tmp_path, redis_server):
    served = await start_sockhub(
        "chat", "--port", "0", "--web-port", "0", "--data-dir", str(tmp_path),
        "--bus", redis_server.url, "--log-level", "info", listeners=2)
    try:
        web = served.ports["web"]
        head, body = await _get(web, "/healthz")
        assert head.startswith(b"HTTP/1.1 200")
        await redis_server.stop()
        await served.expect_log("lost Redis")
        head, body = await _get(web, "/healthz")
        assert head.startswith(b"HTTP/1.1 503") and b"Redis" in body
        _, text = await _get(web, "/metrics")
        assert b"sockhub_chat_bus_ready 0.0" in text
        assert b"sockhub_chat_bus_reconnects_total 1.0" in text
        assert b"sockhub_chat_bus_lag_seconds_count" in text
        await redis_server.start()
        await served.expect_log("Redis is back")
        head, _ = await _get(web, "/healthz")
        assert head.startswith(b"HTTP/1.1 200")  # (/metrics is cached for a second)
    finally:
        await served.stop()


async def test_the_redis_password_comes_from_a_file(tmp_path, redis_server, cluster):
    await redis_server.stop()
    await redis_server.start("--requirepass", "s3cret-word")
    secret = tmp_path / "redis.pass"
    secret.write_text("s3cret-word\n")
    secret.chmod(0o600)
    code, _, err = await run_sockhub(
        "serve", "chat", "--port", "0", "--data-dir", str(tmp_path / "x"), "--bus",
        redis_server.url, timeout=30)
    assert code == 1 and b"Redis" in err  # no password: refused, exit 1
    a = await cluster("a", "--bus-password-file", str(secret))
    b = await cluster("b", "--bus-password-file", str(secret))
    alice = await chat_client(a.ports["chat"], "alice")
    bob = await chat_client(b.ports["chat"], "bob")
    await alice.send("hello through a password")
    await bob.expect("<alice> hello through a password")
    assert not any("s3cret" in line for line in a.log + b.log)
    alice.close()
    bob.close()


async def test_private_messages_renames_and_rooms_across_nodes(cluster):
    a = await cluster("a")
    b = await cluster("b")
    alice = await chat_client(a.ports["chat"], "alice")
    bob = await chat_client(b.ports["chat"], "bob")
    await alice.expect("* bob joined")
    await alice.send("/msg bob psst")
    await bob.expect("[pm] <alice> psst")
    await alice.expect("[pm to bob] <alice> psst")
    # A nick held on the other node cannot be taken by a rename either.
    await bob.send("/nick alice")
    await bob.expect("already in use")
    await bob.send("/nick robert")
    await alice.expect("* bob is now known as robert")
    await alice.send("/msg bob still there?")
    await alice.expect("error:")
    # The old nick is free again, cluster-wide.
    carol = await chat_client(a.ports["chat"], "bob")
    await bob.expect("#lobby * bob joined")  # robert sees the new bob arrive
    await bob.send("/join #side")
    await alice.send("/join #side")
    await bob.expect("#side * alice joined")
    await alice.send("on the side")  # to her current room, #side
    await bob.expect("#side <alice> on the side")
    for client in (alice, bob, carol):
        client.close()


async def test_a_node_started_later_learns_who_is_where(cluster):
    a = await cluster("a")
    alice = await chat_client(a.ports["chat"], "alice")
    await alice.send("/join #side")
    await alice.expect("#side * alice joined")
    await alice.send("/topic the side room")
    await alice.expect("set the topic: the side room")
    b = await cluster("b")
    bob = await chat_client(b.ports["chat"], "bob")
    names = await bob.expect("-- in #lobby:")
    assert "alice" in names, names
    await bob.send("/join #side")
    await bob.expect("the side room")
    names = await bob.expect("-- in #side:")
    assert "alice" in names and "bob" in names, names
    await alice.expect("#side * bob joined")
    alice.close()
    bob.close()


async def test_a_node_stopped_cleanly_tells_the_others_at_once(cluster):
    a = await cluster("a")
    b = await cluster("b", "--bus-node-ttl", "60")
    alice = await chat_client(a.ports["chat"], "alice")
    bob = await chat_client(b.ports["chat"], "bob")
    await alice.expect("* bob joined")
    assert await b.stop() == 0
    # Not after the 60 s TTL: the stopping node sent its users' quits.
    line = await alice.expect("* bob quit", timeout=5)
    assert "node lost" not in line
    again = await chat_client(a.ports["chat"], "bob")  # the nick was freed at once
    for client in (alice, bob, again):
        client.close()
