"""Scale-out over Redis (--bus, issue 15): real nodes, a real redis-server.

Each node is a real ``sockhub serve`` process; the Redis is a real
redis-server on a free loopback port (tests/redis_support.py: no skipping,
a missing redis-server fails saying how to install it).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import signal

import pytest
import redis
import trustme
from websockets.asyncio.client import connect

from net import LineClient, chat_client, irc_client, open_client, registered, sasl_client
from proc import Served, run_sockhub, start_sockhub
from redis_support import RedisServer
from sockhub.hub.model import Registration
from sockhub.passwords import hash_password
from sockhub.store.bus_redis import RedisTarget
from sockhub.store.bus_rooms import RedisRoomStore

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

    async def start(name: str, *extra: str, listeners: int = 2) -> Served:
        served = await node(tmp_path, redis_server, name, *extra, listeners=listeners)
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            await served.stop()


async def node(tmp_path, redis_server: RedisServer, name: str, *extra: str,
               listeners: int = 2) -> Served:
    data = tmp_path / name
    return await start_sockhub(
        "chat", "--port", "0", "--irc-port", "0", "--data-dir", str(data), "--flood-rate",
        "none", "--bus", redis_server.url, "--bus-node-ttl", TTL, "--log-level", "info",
        *extra, listeners=listeners)


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


async def test_messages_read_back_from_the_stream_count_as_stored_once_in_the_file(
        tmp_path, redis_server):
    served = await start_sockhub(
        "chat", "--port", "0", "--web-port", "0", "--data-dir", str(tmp_path),
        "--flood-rate", "none", "--bus", redis_server.url, "--log-level", "info", listeners=2)
    try:
        alice = await chat_client(served.ports["chat"], "alice")
        bob = await chat_client(served.ports["chat"], "bob")
        await alice.expect("* bob joined")
        for i in range(3):
            await alice.send(f"counted {i}")
        await bob.expect("counted 2")  # delivered: read back from the stream and stored
        _, text = await _get(served.ports["web"], "/metrics")
        values = {name: float(value) for name, value in re.findall(
            rb"^(sockhub_chat_history_\w+) (\S+)$", text, re.MULTILINE)}
        assert values[b"sockhub_chat_history_rows_stored_total"] == 3
        assert 1 <= values[b"sockhub_chat_history_commits_total"] <= 3
        alice.close()
        bob.close()
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


# Accounts, operators and room state cluster-wide; departures; TLS; the web door.

def _auth(payload: bytes) -> bytes:
    return b"AUTHENTICATE " + base64.b64encode(payload) + b"\r\n"


async def _sasl_plain(port: int, nick: str, password: str) -> LineClient:
    """An IRC client that logs in with SASL PLAIN (IRCv3 sasl-3.1) and registers."""
    client = LineClient(*await open_client(port))
    await client.send(f"CAP LS 302\r\nNICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n"
                      "CAP REQ :sasl\r\n".encode())
    await client.expect(" ACK ")
    await client.send(b"AUTHENTICATE PLAIN\r\n")
    await client.expect("AUTHENTICATE +")
    await client.send(_auth(f"{nick}\0{nick}\0{password}".encode()))
    return client


async def test_an_account_registered_on_one_node_identifies_on_another(cluster):
    oper = f"root={hash_password('s3cret', log_n=10)}"
    a = await cluster("a", "--oper", oper)
    b = await cluster("b", "--oper", oper)
    alice = await chat_client(a.ports["chat"], "alice")
    await alice.send("/register hunter22")
    await alice.expect("account alice registered; you are logged in")
    await alice.send("/quit")
    await alice.expect_eof()
    # SASL on the other node's IRC door: the account is there at once.
    irc = await _sasl_plain(b.ports["irc"], "alice", "hunter22")
    assert (await irc.expect(" 900 ")).endswith(":You are now logged in as alice")
    await irc.expect(" 903 ")
    # The nick is owned on every node: taking it elsewhere asks to identify.
    await irc.send(b"CAP END\r\nQUIT :bye\r\n")
    await irc.expect_eof()
    mallory = await chat_client(a.ports["chat"], "alice")
    await expect_each(mallory, "nick alice belongs to account alice")
    # A password changed on one node holds on the other; so does a drop.
    await mallory.send("/identify hunter22")
    await mallory.expect("you are logged in as alice")
    await mallory.send("/password hunter22 changed-pw")
    await mallory.expect("the password of alice is changed")
    other = await chat_client(b.ports["chat"], "other")
    await other.send("/identify alice hunter22")
    await other.expect("wrong account name or password")
    await other.send("/identify alice changed-pw")
    await other.expect("you are logged in as alice")
    await other.send("/drop changed-pw")
    await other.expect("account alice is dropped")
    await mallory.send("/identify changed-pw")
    await mallory.expect("wrong account name or password")
    # One name, two nodes, registered at the same instant: exactly one account.
    racers = [await chat_client(s.ports["chat"], f"racer{i}") for i, s in enumerate((a, b))]
    for racer in racers:  # operators name the account they register
        await racer.send("/oper root s3cret")
        await racer.expect("you are now a server operator")
    await asyncio.gather(*(c.send("/register samename hunter22") for c in racers))
    answers = [await c.expect("samename") for c in racers]
    assert sorted("already exists" in line for line in answers) == [False, True], answers
    for client in (mallory, other, *racers):
        client.close()


async def test_the_account_store_down_is_said_not_taken_for_a_wrong_password(
        redis_server, cluster):
    a = await cluster("a")
    alice = await chat_client(a.ports["chat"], "alice")
    await redis_server.stop()
    await a.expect_log("lost Redis")
    await alice.send("/identify alice hunter22")
    await alice.expect("error: the chat cluster's account store (Redis) is unreachable")
    await alice.send("/register hunter22")
    await alice.expect("error: the chat cluster's account store (Redis) is unreachable")
    alice.close()


async def test_a_node_started_later_learns_operators_invitations_bans_and_room_state(
        cluster):
    oper = f"root={hash_password('s3cret', log_n=10)}"
    a = await cluster("a", "--oper", oper)
    alice = await irc_client(a.ports["irc"], "alice", "#side")
    await alice.send(b"OPER root s3cret\r\n")
    await alice.expect(" 381 alice ")  # RPL_YOUREOPER
    bob = await irc_client(a.ports["irc"], "bob")
    await alice.send(b"MODE #side +i\r\nTOPIC #side :the side room\r\n"
                     b"MODE #side +b mallory!*@*\r\nINVITE bob #side\r\n")
    await bob.expect(" INVITE bob #side")
    await alice.send(b"JOIN #kept\r\nTOPIC #kept :kept while empty\r\nPART #kept\r\n")
    await alice.expect(" PART #kept")
    await bob.send(b"QUIT\r\n")
    await bob.expect_eof()

    b = await cluster("b", "--oper", oper)
    carol = await irc_client(b.ports["irc"], "carol")
    await carol.send(b"WHOIS alice\r\n")
    await carol.expect(" 313 carol alice :is an IRC operator")
    await carol.send(b"JOIN #side\r\n")
    await carol.expect(" 473 carol #side ")  # ERR_INVITEONLYCHAN: the mode is known here
    await carol.send(b"MODE #side b\r\n")
    await carol.expect(" 367 carol #side :mallory!*@*")  # RPL_BANLIST
    await carol.send(b"JOIN #kept\r\n")
    await carol.expect(" 332 carol #kept :kept while empty")
    bob = await irc_client(b.ports["irc"], "bob")
    await bob.send(b"JOIN #side\r\n")  # invited on node a before b started
    await bob.expect(" 332 bob #side :the side room")
    await alice.expect(":bob!bob@127.0.0.1 JOIN #side")
    # An operator made while both run is known on both at once.
    dave = await irc_client(a.ports["irc"], "dave")
    await dave.send(b"OPER root s3cret\r\n")
    await dave.expect(" 381 dave ")
    await dave.send(b"PRIVMSG carol :opered\r\n")  # after the news, in stream order
    await carol.expect("PRIVMSG carol :opered")
    await carol.send(b"WHOIS dave\r\n")
    await carol.expect(" 313 carol dave :is an IRC operator")
    for client in (alice, bob, carol, dave):
        client.close()


async def test_a_remote_quit_keeps_whowas_and_the_seen_mark_for_replays(cluster):
    a = await cluster("a")
    b = await cluster("b")
    alice = await chat_client(a.ports["chat"], "alice")
    bob = await irc_client(b.ports["irc"], "bob", "#lobby")
    await alice.expect("* bob joined")
    await alice.send("seen before leaving")
    await bob.expect("PRIVMSG #lobby :seen before leaving")
    await bob.send(b"QUIT :later\r\n")
    await bob.expect_eof()
    await alice.expect("* bob quit")
    await alice.send("missed while away")
    await alice.expect("<alice> missed while away")
    # Node a ran its departure bookkeeping for b's user: WHOWAS, and where
    # bob stopped reading, so his replay on node a starts after it.
    watcher = await irc_client(a.ports["irc"], "watcher")
    await watcher.send(b"WHOWAS bob\r\n")
    await watcher.expect(" 314 watcher bob bob 127.0.0.1 ")  # RPL_WHOWASUSER
    back = await irc_client(a.ports["irc"], "bob")
    await back.send(b"JOIN #lobby\r\n")
    await back.expect(" 366 bob #lobby ")  # the replay follows the names
    await back.send(b"PING :replayed\r\n")
    await back.expect("PONG ")
    replayed = [line for line in back.seen if "PRIVMSG #lobby" in line]
    assert len(replayed) == 1 and replayed[0].endswith("missed while away"), replayed
    for client in (alice, watcher, back):
        client.close()


async def test_rediss_with_a_ca_file_and_a_wrong_ca_exits_1(tmp_path, redis_server, cluster):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "redis.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.private_key_and_cert_chain_pem.write_to_path(str(files["cert"]))
    await redis_server.stop()
    await redis_server.start("--port", "0", "--tls-port", str(redis_server.port),
                             "--tls-cert-file", str(files["cert"]),
                             "--tls-key-file", str(files["cert"]),
                             "--tls-ca-cert-file", str(files["ca"]), "--tls-auth-clients", "no")
    url = redis_server.url.replace("redis://", "rediss://")
    a = await cluster("a", "--bus", url, "--bus-ca-file", str(files["ca"]))
    b = await cluster("b", "--bus", url, "--bus-ca-file", str(files["ca"]))
    alice = await chat_client(a.ports["chat"], "alice")
    bob = await chat_client(b.ports["chat"], "bob")
    await alice.send("over TLS")
    await bob.expect("<alice> over TLS")
    # Another CA's certificate is refused at start: a clear error, exit 1.
    wrong = tmp_path / "wrong.pem"
    trustme.CA().cert_pem.write_to_path(str(wrong))
    code, _, err = await run_sockhub(
        "serve", "chat", "--port", "0", "--data-dir", str(tmp_path / "x"), "--bus", url,
        "--bus-ca-file", str(wrong), timeout=30)
    assert code == 1
    assert b"TLS certificate is not signed by a trusted CA (--bus-ca-file" in err, err
    # Plain redis:// to a TLS-only port does not pass for a working bus either.
    code, _, err = await run_sockhub(
        "serve", "chat", "--port", "0", "--data-dir", str(tmp_path / "y"), "--bus",
        redis_server.url, timeout=30)
    assert code == 1 and b"Redis" in err
    alice.close()
    bob.close()


async def test_a_web_client_sees_line_and_irc_users_of_other_nodes_once_in_order(cluster):
    a = await cluster("a")
    b = await cluster("b")
    c = await cluster("c", "--web-port", "0", listeners=3)
    async with connect(f"ws://127.0.0.1:{c.ports['web']}/ws", open_timeout=5) as ws:

        async def receive(**fields: object) -> dict[str, object]:
            while True:
                obj = json.loads(await asyncio.wait_for(ws.recv(), 10))
                seen.append(obj)
                if fields.items() <= obj.items():
                    return obj

        seen: list[dict[str, object]] = []
        await ws.send(json.dumps({"type": "hello", "version": 1, "nick": "webby"}))
        await receive(type="welcome")
        await ws.send(json.dumps({"type": "join", "room": "#lobby"}))
        await receive(type="history")
        lina = await chat_client(a.ports["chat"], "lina")
        ircy = await irc_client(b.ports["irc"], "ircy", "#lobby")
        await receive(type="joined", nick="ircy")
        for i in range(20):
            await lina.send(f"line {i}")
            await ircy.send(f"PRIVMSG #lobby :irc {i}\r\n".encode())
        await ws.send(json.dumps({"type": "say", "room": "#lobby", "text": "from the web"}))
        got = {"lina": 0, "ircy": 0}
        while got != {"lina": 20, "ircy": 20}:
            obj = await receive(type="message")
            nick = str(obj["nick"])
            if nick in got:
                assert obj["text"] == f"{'line' if nick == 'lina' else 'irc'} {got[nick]}", obj
                got[nick] += 1
        await lina.expect("<webby> from the web")
        await ircy.expect(":webby!webby@127.0.0.1 PRIVMSG #lobby :from the web")
        # Nothing twice: after the last one, nothing of theirs but a marker.
        await lina.send("marker")
        after = len(seen)
        await receive(type="message", text="marker")
        again = [o for o in seen[after:] if o.get("type") == "message"
                 and o.get("nick") in got and o.get("text") != "marker"]
        assert again == [], again
        lina.close()
        ircy.close()


@pytest.mark.parametrize(("bus", "ca", "said"), [
    ("redis://127.0.0.1:1/0", "ca.pem", b"--bus-ca-file is for a TLS bus: give --bus rediss://"),
    ("rediss://127.0.0.1:1/0", "missing.pem", b"missing.pem: no such file"),
])
async def test_a_ca_file_without_tls_or_missing_is_refused(tmp_path, bus, ca, said):
    (tmp_path / "ca.pem").write_text("not used\n")
    code, _, err = await run_sockhub(
        "serve", "chat", "--port", "0", "--data-dir", str(tmp_path / "d"), "--bus", bus,
        "--bus-ca-file", str(tmp_path / ca), timeout=30)
    assert code == 2, err
    assert said in err, err


async def test_malformed_stream_entries_are_skipped_and_the_node_goes_on(
        redis_server, cluster):
    a = await cluster("a")
    b = await cluster("b")
    alice = await chat_client(a.ports["chat"], "alice")
    bob = await chat_client(b.ports["chat"], "bob")
    await alice.expect("* bob joined")
    writer = redis.Redis.from_url(redis_server.url)
    try:
        for seq, kind, body in [(1, "s", "[1]"), (2, "e", "not json"), (3, "e", '{"t":"Nope"}'),
                                (4, "s", '{"for":"x","user":5}'), (5, "o", '{"nick":7}'),
                                (6, "u", '{"nick":"bad nick!"}')]:
            writer.xadd("sockhub:events", {"n": "intruder", "s": seq, "k": kind, "e": body})
    finally:
        writer.close()
    await a.expect_log("skipped a malformed entry")
    await alice.send("still here")
    await bob.expect("<alice> still here")
    alice.close()
    bob.close()


# Registered rooms (issue 14) and server operators, cluster-wide.

CHANSERV = ":ChanServ!ChanServ@services. NOTICE"
_askers = itertools.count()


async def _irc_account(port: int, nick: str, *rooms: str) -> LineClient:
    """An IRC client that registers its nick as an account (NickServ), then joins ``rooms``."""
    client = await irc_client(port, nick)
    await client.send(f"PRIVMSG NickServ :REGISTER pw-{nick}-123\r\n".encode())
    await client.expect(f" 900 {nick} ")
    for room in rooms:
        await client.send(f"JOIN {room}\r\n".encode())
        await client.expect(f" 366 {nick} {room} ")
    return client


async def _cs(client: LineClient, text: str) -> str:
    """Send ChanServ a command; its first answer, after the NOTICE's colon."""
    await client.send(f"PRIVMSG ChanServ :{text}\r\n".encode())
    return (await client.expect(CHANSERV)).split(" :", 1)[1]


async def _line_as(port: int, nick: str, account: str) -> LineClient:
    """A line-door client logged in to ``account`` under another nick."""
    client = await chat_client(port, nick)
    await client.send(f"/identify {account} pw-{account}-123")
    await client.expect(f"you are logged in as {account}")
    return client


async def _room_info(port: int, room: str) -> str:
    """``/room info`` on a node, by a passing line client."""
    client = await chat_client(port, f"asker{next(_askers)}")  # one nick each, cluster-wide
    await client.send(f"/room info {room}")
    line = await client.expect(room)
    await client.send("/quit")
    await client.expect_eof()
    return line


async def test_a_room_registered_on_one_node_gives_its_founder_ops_on_another(cluster):
    a = await cluster("a")
    b = await cluster("b")
    alice = await _irc_account(a.ports["irc"], "alice", "#den")
    assert await _cs(alice, "REGISTER #den") == "#den is registered to your account alice"
    # The founder, on the other node's line door under another nick: ChanServ
    # gives her operator status there, and node a's members see it too.
    phone = await _line_as(b.ports["chat"], "alicephone", "alice")
    await alice.send(b"JOIN #lobby\r\nPRIVMSG #lobby :join now\r\n")  # after the news,
    await phone.expect("#lobby <alice> join now")  # in stream order: node b has it
    await phone.send("/join #den")
    await phone.expect("ChanServ made alicephone an operator")
    await alice.expect(":ChanServ!ChanServ@services. MODE #den +o alicephone")
    # Someone else arriving first into the emptied room on b gets nothing.
    await alice.send(b"PART #den\r\n")
    await phone.expect("#den * alice left")
    await phone.send("/part #den")
    await phone.expect("talking in #lobby")
    carol = await irc_client(b.ports["irc"], "carol", "#den")
    await carol.send(b"NAMES #den\r\n")
    assert (await carol.expect(" 353 carol ")).endswith(":carol")  # no @: not an operator
    # Taken, so refused to anyone on any node (here on node b's line door).
    await phone.send("/room register #den")
    await phone.expect("error: #den is already registered, to alice")
    for client in (alice, phone, carol):
        client.close()


async def test_two_nodes_registering_one_room_at_once_have_one_winner(cluster):
    a = await cluster("a")
    b = await cluster("b")
    alice = await _irc_account(a.ports["irc"], "alice", "#race")
    bob = await _irc_account(b.ports["irc"], "bob", "#race")
    await alice.expect(":bob!bob@127.0.0.1 JOIN #race")
    await alice.send(b"MODE #race +o bob\r\n")  # both are operators of the room
    await bob.expect("MODE #race +o bob")
    await asyncio.gather(*(c.send(b"PRIVMSG ChanServ :REGISTER #race\r\n")
                           for c in (alice, bob)))
    answers = sorted([(await c.expect(CHANSERV)).split(" :", 1)[1] for c in (alice, bob)])
    assert len([a for a in answers if "is registered to your account" in a]) == 1, answers
    assert len([a for a in answers if "is already registered, to" in a]) == 1, answers
    winner = answers[1].rsplit(" ", 1)[1]  # "#race is registered to your account X"
    for port in (a.ports["chat"], b.ports["chat"]):
        assert f"founder {winner}," in await _room_info(port, "#race")
    alice.close()
    bob.close()


async def test_room_operators_transfer_and_account_drops_hold_on_every_node(
        redis_server, cluster):
    a = await cluster("a")
    b = await cluster("b")
    alice = await _irc_account(a.ports["irc"], "alice", "#den")
    bob = await _irc_account(a.ports["irc"], "bob")
    assert await _cs(alice, "REGISTER #den") == "#den is registered to your account alice"
    assert await _cs(alice, "AMODE #den +o bob") == "bob is now an operator of #den"
    # A node started afterwards reads the registrations from Redis.
    c = await cluster("c")
    assert "founder alice," in (info := await _room_info(c.ports["chat"], "#den"))
    assert info.endswith("operator accounts: bob")
    # The founder transfers the room on node b; node a knows at once.
    phone = await _line_as(b.ports["chat"], "alicephone", "alice")
    await phone.send("/room transfer #den bob")
    await phone.expect("#den now belongs to bob")
    info = await _room_info(a.ports["chat"], "#den")
    assert "founder bob," in info and info.endswith("operator accounts: alice")
    # Dropping an account (on node b) takes it out of the room everywhere...
    await phone.send("/drop pw-alice-123")
    await phone.expect("account alice is dropped")
    assert (await _room_info(c.ports["chat"], "#den")).endswith("operator accounts: none")
    # ...and dropping the founder's (on node a) unregisters the room everywhere.
    await bob.send(b"PRIVMSG NickServ :DROP pw-bob-123\r\n")
    await bob.expect("NOTICE bob :")
    assert "#den is not registered" in await _room_info(b.ports["chat"], "#den")
    assert "#den is not registered" in await _room_info(c.ports["chat"], "#den")
    store = redis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        assert store.hgetall("sockhub:rooms") == {}
    finally:
        store.close()
    for client in (alice, bob, phone):
        client.close()


async def test_dropping_server_operator_status_is_known_on_every_node(cluster):
    oper = f"root={hash_password('s3cret', log_n=10)}"
    a = await cluster("a", "--oper", oper)
    b = await cluster("b", "--oper", oper)
    dave = await irc_client(a.ports["irc"], "dave", "#ops")
    carol = await irc_client(b.ports["irc"], "carol", "#ops")
    await dave.expect(":carol!carol@127.0.0.1 JOIN #ops")
    await dave.send(b"OPER root s3cret\r\n")
    await dave.expect(" 381 dave ")
    await dave.send(b"PRIVMSG #ops :opered\r\n")  # after the news, in stream order
    await carol.expect("PRIVMSG #ops :opered")
    await carol.send(b"WHOIS dave\r\n")
    await carol.expect(" 313 carol dave :is an IRC operator")
    await dave.send(b"MODE dave -o\r\n")
    await dave.expect(" MODE dave ")
    await dave.send(b"PRIVMSG #ops :deopered\r\n")
    await carol.expect("PRIVMSG #ops :deopered")
    await carol.send(b"WHOIS dave\r\n")
    lines = [await carol.expect(" dave ")]
    while " 318 " not in lines[-1]:  # RPL_ENDOFWHOIS
        lines.append(await carol.expect(" dave "))
    assert not any(" 313 " in line for line in lines), lines
    dave.close()
    carol.close()


async def test_room_registry_writes_are_atomic_against_a_stale_read(redis_server):
    """The store's two primitives: add only if absent, replace only what was read."""
    rooms = RedisRoomStore(RedisTarget(redis_server.url), prefix="t")
    try:
        first = Registration("#Den", "alice", 1.0)
        assert rooms.add(first) == 1
        assert rooms.add(Registration("#den", "bob", 2.0)) == 0  # taken, folded
        read, found = rooms.get("#DEN")
        assert read is not None and found == first
        changed = Registration("#Den", "bob", 1.0, {"alice": "alice"})
        assert rooms.replace("#den", read, changed) == 2
        # Another writer that read before that change loses, and changes nothing.
        assert rooms.replace("#den", read, None) == 0
        assert rooms.load() == {"#den": (2, changed)}
        read, _ = rooms.get("#den")
        assert read is not None and rooms.replace("#den", read, None) == 3
        assert rooms.load() == {} and rooms.get("#den") == (None, None)
    finally:
        rooms.close()


async def test_the_room_registry_down_is_said(redis_server, cluster):
    a = await cluster("a")
    alice = await chat_client(a.ports["chat"], "alice")
    await redis_server.stop()
    await a.expect_log("lost Redis")
    await alice.send("/room info #lobby")
    await alice.expect("error: the chat cluster's room registry (Redis) is unreachable")
    alice.close()


HISTORY_CAPS = "draft/chathistory batch server-time message-tags echo-message draft/read-marker"




async def _conversation(client: LineClient, peer: str) -> list[tuple[str, str]]:
    """CHATHISTORY LATEST of ``peer``: (msgid, what after the tags) of each line, oldest first."""
    await client.send(f"CHATHISTORY LATEST {peer} * 10\r\n".encode())
    await client.expect(f"chathistory {peer}")
    got = []
    while "BATCH -" not in (line := await client.expect("")):
        if "PRIVMSG" in line:
            msgid = re.search(r"msgid=([^; ]+)", line)
            assert msgid, line
            got.append((msgid.group(1), line.split(" ", 1)[1]))
    return got


async def test_private_messages_kept_for_accounts_have_one_id_and_history_everywhere(cluster):
    a = await cluster("a")
    b = await cluster("b")
    await registered(a.ports["chat"], "alice", "hunter22")
    await registered(b.ports["chat"], "bob", "swordfish9")
    alice = await sasl_client(a.ports["irc"], "alice", "hunter22", HISTORY_CAPS)
    bob = await sasl_client(b.ports["irc"], "bob", "swordfish9", HISTORY_CAPS)
    await alice.send(b"JOIN #lobby\r\n")
    await alice.expect(" 366 alice #lobby ")
    await bob.send(b"JOIN #lobby\r\n")
    await alice.expect(":bob!")  # bob is known on node a
    await alice.send(b"PRIVMSG bob :hello bob\r\n")
    echo = await alice.expect("PRIVMSG bob :hello bob")
    got = await bob.expect("PRIVMSG bob :hello bob")
    first, there = (re.search(r"msgid=(\d+)", line) for line in (echo, got))
    assert first and there and first.group(1) == there.group(1), (echo, got)
    await bob.send(b"PRIVMSG alice :hi alice\r\n")
    await alice.expect("PRIVMSG alice :hi alice")
    await bob.expect("PRIVMSG alice :hi alice")  # its echo: node b has read (and kept) it
    # Bob pages it back on node b, then from node a: the same lines, the same ids.
    on_b = await _conversation(bob, "alice")
    assert [line.split(" :", 1)[1] for _, line in on_b] == ["hello bob", "hi alice"]
    assert on_b[0][0] == first.group(1)
    await bob.send(b"QUIT\r\n")
    await bob.expect_eof()
    bob = await sasl_client(a.ports["irc"], "bob", "swordfish9", HISTORY_CAPS)
    assert await _conversation(bob, "alice") == on_b
    # Alice's side, and the line door's /history, on node b.
    assert [m for m, _ in await _conversation(alice, "bob")] == [m for m, _ in on_b]
    line = await chat_client(b.ports["chat"], "alice2")
    await line.send("/identify alice hunter22")
    await line.expect("you are logged in as alice")
    await line.send("/history bob")
    assert (await line.expect("[history]")).endswith("[pm to bob] <alice> hello bob")
    assert (await line.expect("[history]")).endswith("[pm to alice] <bob> hi alice")
    await line.expect("end of history with bob (2 messages)")
    for client in (alice, bob, line):
        client.close()


async def test_read_markers_move_on_every_node_and_redis_down_is_said(redis_server, cluster):
    a = await cluster("a")
    b = await cluster("b")
    await registered(a.ports["chat"], "alice", "hunter22")
    talker = await chat_client(a.ports["chat"], "talker")
    laptop = await sasl_client(a.ports["irc"], "laptop", "hunter22", HISTORY_CAPS, account="alice")
    phone = await sasl_client(b.ports["irc"], "phone", "hunter22", HISTORY_CAPS, account="alice")
    for client, nick in ((laptop, "laptop"), (phone, "phone")):
        await client.send(b"JOIN #lobby\r\n")
        await client.expect(f" 366 {nick} #lobby ")
    times = []
    for text in ("one", "two", "three"):
        await asyncio.sleep(0.002)  # a millisecond of its own: markers are in ms
        await talker.send(text)
        seen = await laptop.expect(f"PRIVMSG #lobby :{text}")
        await phone.expect(f"PRIVMSG #lobby :{text}")
        stamp = re.search(r"time=([^; ]+)", seen)
        assert stamp, seen
        times.append(stamp.group(1))
    # Read up to "two" on node a: the phone on node b is told.
    await laptop.send(f"MARKREAD #lobby timestamp={times[1]}\r\n".encode())
    assert (await laptop.expect("MARKREAD")).endswith(f"MARKREAD #lobby timestamp={times[1]}")
    assert (await phone.expect("MARKREAD")).endswith(f"MARKREAD #lobby timestamp={times[1]}")
    # Never back, from either node.
    await phone.send(f"MARKREAD #lobby timestamp={times[0]}\r\n".encode())
    assert (await phone.expect("MARKREAD")).endswith(f"MARKREAD #lobby timestamp={times[1]}")
    # The line door on node b replays only what follows the marker.
    line = LineClient(*await open_client(b.ports["chat"]))
    await line.expect("enter a nick")
    await line.send("/identify alice hunter22")
    await line.expect("logged in as alice")
    shown = []
    while "end of history of #lobby" not in (got := await line.expect("")):
        if got.startswith("[history]"):
            shown.append(got.rsplit(" ", 1)[1])
    assert shown == ["three"]
    # ... and having shown it, moved the marker: the laptop on node a follows.
    assert (await laptop.expect("MARKREAD")).endswith(f"MARKREAD #lobby timestamp={times[2]}")
    # Redis away: a marker is refused at once, saying why; asking is too.
    await redis_server.stop()
    await a.expect_log("lost Redis")
    await laptop.send(f"MARKREAD #lobby timestamp={times[2]}\r\nMARKREAD #lobby\r\n".encode())
    for _ in range(2):
        assert "FAIL MARKREAD TEMPORARILY_UNAVAILABLE #lobby :the chat cluster's read markers" \
            in await laptop.expect("FAIL")
    for client in (talker, laptop, phone, line):
        client.close()


async def test_markers_unreadable_in_redis_still_replay_on_the_page_and_line_door(
        redis_server, cluster):
    """The markers' hash broken (a key of the wrong type: every marker command fails)
    while the stream works: the join replay is shown anyway, and the client is told."""
    from test_web_accounts import cookie_of, http

    a = await cluster("a", "--web-port", "0", listeners=3)
    await registered(a.ports["chat"], "alice", "hunter22")
    talker = await chat_client(a.ports["chat"], "talker")
    await talker.send("before the break")
    await talker.expect("<talker> before the break")
    writer = redis.Redis.from_url(redis_server.url)
    writer.delete("sockhub:markers")
    writer.set("sockhub:markers", "not a hash")
    writer.close()

    line = LineClient(*await open_client(a.ports["chat"]))
    await line.expect("enter a nick")
    await line.send("/identify alice hunter22")
    await line.expect("read marker not moved")
    await line.expect("before the break")
    await line.send("/quit")
    await line.expect_eof()
    await talker.send("while the page was closed")
    await talker.expect("<talker> while the page was closed")

    status, headers, _ = await http(a.ports["web"], "POST", "/login",
                                    {"account": "alice", "password": "hunter22"})
    assert status == 200
    async with connect(f"ws://127.0.0.1:{a.ports['web']}/ws", open_timeout=5,
                       additional_headers={"Cookie": cookie_of(headers)}) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1}))
        seen: list[dict[str, object]] = []
        while not any(o.get("type") == "history" for o in seen):
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            if seen[-1].get("type") == "welcome" and not seen[-1].get("rooms"):
                await ws.send(json.dumps({"type": "join", "room": "#lobby"}))
        notices = [str(o["text"]) for o in seen if o.get("type") == "notice"]
        assert any(text.startswith("read marker not moved") for text in notices), seen
        [history] = [o for o in seen if o.get("type") == "history"]
        assert "while the page was closed" in json.dumps(history)
    talker.close()


async def test_a_node_back_from_a_stop_takes_the_changes_it_missed(cluster):
    """Its own store says the old topic and ban; the running node's word wins."""
    a = await cluster("a", "--oper", f"root={hash_password('s3cret', log_n=10)}")
    alice = await irc_client(a.ports["irc"], "alice")
    await alice.send(b"OPER root s3cret\r\n")  # a kept room re-entered opens without ops
    await alice.expect(" 381 alice ")
    await alice.send(b"JOIN #kept\r\nTOPIC #kept :before\r\nMODE #kept +b old!*@*\r\n"
                     b"PART #kept\r\n")
    await alice.expect(" PART #kept")
    b = await cluster("b")
    carol = await irc_client(b.ports["irc"], "carol")
    await carol.send(b"JOIN #kept\r\n")
    await carol.expect(" 332 carol #kept :before")
    await carol.send(b"QUIT\r\n")
    await carol.expect_eof()
    await b.stop()
    await alice.send(b"JOIN #kept\r\nTOPIC #kept :after\r\nMODE #kept -b old!*@*\r\n"
                     b"MODE #kept +b new!*@*\r\nPART #kept\r\n")
    await alice.expect(" PART #kept")
    again = await cluster("b")  # the same data directory
    carol = await irc_client(again.ports["irc"], "carol")
    await carol.send(b"JOIN #kept\r\n")
    await carol.expect(" 332 carol #kept :after")
    await carol.send(b"MODE #kept b\r\n")
    await carol.expect(" 368 carol #kept ")  # RPL_ENDOFBANLIST
    bans = [line for line in carol.seen if " 367 carol #kept " in line]
    assert len(bans) == 1 and "new!*@*" in bans[0], bans
    for client in (alice, carol):
        client.close()


async def test_a_stopped_heartbeat_stays_stopped_even_if_its_cancellation_is_lost(redis_server):
    """A clean stop deletes the node's key; the heartbeat must not bring it back nor claim
    nicks again. Cancelling a task inside a Redis command under a timeout can be lost
    (the shutdown that hung in the suite): here the task is simply never cancelled."""
    from sockhub.store.presence import Presence

    orphaned: list[bool] = []
    presence = Presence(RedisTarget(redis_server.url), node="n1", prefix="t", ttl=0.3,
                        on_dead=lambda node: None, known_nodes=set,
                        on_orphaned=lambda: orphaned.append(True))
    presence.beat()
    presence.start()
    task = presence._task
    assert task is not None
    presence._task = None  # close() will not cancel it: as if the cancel were swallowed
    presence.close()
    await asyncio.wait_for(task, 5.0)  # it ends by itself, within a period
    probe = redis.Redis.from_url(redis_server.url)
    try:
        assert probe.exists(presence.node_key("n1")) == 0  # not brought back
    finally:
        probe.close()
    assert orphaned == []
