"""``sockhub bench chat``: the pure accounting alone, then real runs against real servers."""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import pytest
from websockets.frames import Opcode
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from proc import run_sockhub, start_sockhub
from sockhub.client.chatbench import bench_chat
from sockhub.client.chatbench import receiver as receiver_module
from sockhub.client.chatbench.parent import sent_alone
from sockhub.client.chatbench.plan import (
    Plan,
    cap_names,
    irc_author,
    message_text,
    parse_irc,
    parse_payload,
)
from sockhub.client.chatbench.receiver import Counts, Receiver, SharedStream, Tally
from sockhub.client.chatbench.result import ChatBenchResult
from sockhub.client.chatbench.worker import SETTLE, WorkerOptions, keeps_time, settle_seconds
from sockhub.doors.web.chat_json import dumps, event_object
from sockhub.hub import Message

# The pure part -----------------------------------------------------------------


def test_tally_accepts_a_perfect_stream():
    tally = Tally(senders=2, messages=3)
    for seq in range(3):
        for sender in range(2):
            assert tally.record(sender, seq)
    assert (tally.received, tally.lost, tally.duplicated, tally.reordered) == (6, 0, 0, 0)
    assert tally.complete and tally.counts == [3, 3]


def test_tally_catches_a_lost_a_duplicated_and_a_reordered_message():
    tally = Tally(senders=1, messages=5)
    for seq in (0, 2, 1, 1, 4):  # 3 never comes, 1 comes late and then again
        tally.record(0, seq)
    assert tally.lost == 1
    assert tally.duplicated == 1
    assert tally.reordered == 1
    assert not tally.complete


def test_tally_counts_each_problem_separately():
    lost = Tally(1, 3)
    for seq in (0, 2):
        lost.record(0, seq)
    assert (lost.lost, lost.duplicated, lost.reordered) == (1, 0, 0)  # a gap is no reorder
    duplicated = Tally(1, 2)
    for seq in (0, 0, 1):
        duplicated.record(0, seq)
    assert (duplicated.lost, duplicated.duplicated, duplicated.reordered) == (0, 1, 0)
    reordered = Tally(1, 2)
    for seq in (1, 0):
        reordered.record(0, seq)
    assert (reordered.lost, reordered.duplicated, reordered.reordered) == (0, 0, 1)


def test_tally_flags_what_no_one_sent():
    tally = Tally(senders=2, messages=2, skip=1)  # ncat: sender 1 gets no echo
    assert tally.expected == 2
    assert not tally.record(1, 0)  # its own message came back
    assert not tally.record(2, 0)  # no such sender
    assert not tally.record(0, 7)  # no such sequence number
    assert tally.unexpected == 3 and tally.received == 0


def test_sent_alone_counts_messages_with_no_neighbour_within_the_gap():
    # Sends at 0, 10, 11, 30 ms with a 5 ms gap: 10 and 11 went together.
    assert sent_alone([0, 10_000_000, 11_000_000, 30_000_000], 5e6) == 0.5
    assert sent_alone([], 5e6) == 0.0


def test_pace_held_needs_the_rate_the_messages_alone_and_the_schedule():
    def result(per_s: float, alone: float, late_ms: float) -> ChatBenchResult:
        return ChatBenchResult(
            target="t", mode="irc", room="#b", clients=500, senders=10, messages=500,
            rate=50.0, window=1, procs=2, setup_s=0, seconds=10, sent=5000,
            expected=2_500_000, deliveries=2_500_000, deliveries_per_s=per_s, p50_ms=1,
            p99_ms=2, max_ms=3, lost=0, duplicated=0, reordered=0, garbled=0, errors=0,
            first_error="", client_cpu_s=1, offered_per_s=250_000, sent_alone=alone,
            send_late_p99_ms=late_ms)

    assert result(249_000, 0.99, 0.5).pace_held
    assert "-> held" in result(249_000, 0.99, 0.5).report()
    assert not result(150_000, 0.99, 0.5).pace_held  # the load fell behind
    assert not result(249_000, 0.80, 0.5).pace_held  # messages in bunches
    assert not result(249_000, 0.99, 2.5).pace_held  # senders off their 2 ms slots
    assert "-> NOT held: under 95% of the deliveries/s offered" in result(
        150_000, 0.99, 0.5).report()
    assert result(249_000, 0.80, 2.5).pace_misses() == [
        "under 95% of messages sent alone", "sends late p99 over a slot (2.00 ms)"]


def test_plan_expected_deliveries():
    assert Plan(20, 3, 20).total_expected == 20 * 3 * 20  # line mode: senders get their echo
    assert Plan(20, 3, 20, mode="ncat").total_expected == 19 * 3 * 20  # ncat: no echo
    assert Plan(3, 1, 1).hello(0) == b"b0001\n/join #bench\n"
    assert Plan(3, 1, 1, mode="ncat").hello(0) == b""


def test_parse_payload():
    line = f"12:00:01 #bench <b0002> {message_text(1, 7, 123456)}\r".encode()
    assert parse_payload(line) == (b"12:00:01 #bench <b0002> ", 1, 7, 123456)
    assert parse_payload(b"12:00:01 #bench * b0002 joined\r") is None
    with pytest.raises(ValueError):
        parse_payload(b"<user5> bench~1~7")


def test_parse_irc():
    assert parse_irc(b":b0002!~b@127.0.0.1 PRIVMSG #bench :hi there\r") == (
        b"b0002!~b@127.0.0.1", b"PRIVMSG", [b"#bench", b"hi there"])
    assert parse_irc(b"@time=2026-01-01T00:00:00Z :srv 366 b0001 #bench :End\r\n") == (
        b"srv", b"366", [b"b0001", b"#bench", b"End"])
    assert parse_irc(b"PING :token") == (b"", b"PING", [b"token"])
    assert parse_irc(b"ping x y") == (b"", b"PING", [b"x", b"y"])
    assert parse_irc(b":srv CAP * LS * :a b=1") == (b"srv", b"CAP", [b"*", b"LS", b"*", b"a b=1"])
    assert parse_irc(b"") == (b"", b"", [])
    assert cap_names(b"echo-message sasl=PLAIN,EXTERNAL multi-prefix") == {
        b"echo-message", b"sasl", b"multi-prefix"}


def test_irc_author():
    assert irc_author(b":b0002!~b@127.0.0.1 PRIVMSG #bench :", b"#bench") == b"b0002"
    assert irc_author(b"@msgid=7 :b0002!b@h PRIVMSG #Bench :", b"#bench") == b"b0002"
    assert irc_author(b":b0002!b@h PRIVMSG #other :", b"#bench") is None
    assert irc_author(b":b0002!b@h NOTICE #bench :", b"#bench") is None
    assert irc_author(b":srv PRIVMSG #bench :", b"#bench") is None


def test_plan_irc_mode():
    plan = Plan(20, 3, 20, mode="irc", irc_echo=True)
    assert plan.total_expected == 20 * 3 * 20 and plan.echoes
    assert plan.wants_echo(2) and not plan.wants_echo(3)
    assert plan.greeting(0) == b"CAP LS 302\r\nNICK b0001\r\nUSER b 0 * :b\r\n"
    assert plan.hello(0) == b"JOIN #bench\r\n"
    assert plan.wrap("bench~0~1~2") == b"PRIVMSG #bench :bench~0~1~2\r\n"
    plain = Plan(20, 3, 20, mode="irc")  # no echo-message: like ncat
    assert plain.total_expected == 19 * 3 * 20 and not plain.wants_echo(0)


def _registration(nick: str) -> bytes:
    return (f":srv 001 {nick} :Welcome\r\n:srv 005 {nick} CHANTYPES=# :are supported\r\n"
            f":srv 375 {nick} :- srv\r\n:srv 372 {nick} :- hi\r\n"
            f":srv 376 {nick} :End of MOTD\r\n").encode()


def test_receiver_irc_with_echo_message():
    plan = Plan(clients=3, senders=2, messages=2, mode="irc", irc_echo=True)
    receiver = Receiver(plan, 0)  # a sender: asks for echo-message
    receiver.feed(b":srv CAP * LS * :multi-prefix sasl=PLAIN\r\n", 0)
    assert receiver.outbox == b""  # the list continues
    receiver.feed(b":srv CAP * LS :echo-message server-time\r\n", 0)
    assert receiver.outbox == b"CAP REQ :echo-message\r\n"
    receiver.outbox.clear()
    receiver.feed(b":srv CAP * ACK :echo-message\r\n", 0)
    assert receiver.echo_acked and receiver.outbox == b"CAP END\r\n"
    receiver.outbox.clear()
    receiver.feed(_registration("b0001"), 0)
    assert receiver.greeted and not receiver.ready
    receiver.feed(b":b0001!b@h JOIN #bench\r\n:srv 353 b0001 = #bench :b0001 b0002\r\n", 0)
    receiver.feed(b":srv 366 b0001 #other :End\r\n", 0)
    assert not receiver.ready
    receiver.feed(b":srv 366 b0001 #bench :End of /NAMES list.\r\n", 0)
    assert receiver.ready
    receiver.feed(b"PING :abc\r\n", 0)
    assert receiver.outbox == b"PONG :abc\r\n"
    data = b"".join(
        f"@msgid={s}{q} :{plan.nick(s)}!~b@127.0.0.1 PRIVMSG #bench :"
        f"{message_text(s, q, 100)}\r\n".encode() for q in range(2) for s in range(2))
    for start in range(0, len(data), 13):  # split anywhere
        receiver.feed(data[start : start + 13], 150)
    assert receiver.complete and receiver.garbled == 0 and not receiver.errors
    assert list(receiver.latencies) == [50] * 4


def test_receiver_irc_without_echo_and_problems():
    plan = Plan(clients=3, senders=2, messages=1, mode="irc")
    receiver = Receiver(plan, 1)  # sender 1: expects only sender 0's message
    receiver.feed(b":srv CAP * LS :multi-prefix\r\n", 0)
    assert receiver.outbox == b"CAP END\r\n"
    receiver.feed(b":srv 422 b0002 :MOTD File is missing\r\n", 0)
    assert receiver.greeted and not receiver.errors  # 422 is no error
    receiver.feed(b":b0001!b@h PRIVMSG #bench :bench~1~0~1\r\n", 0)  # b0001 as sender 1
    receiver.feed(b":b0001!b@h PRIVMSG #bench :bench~0~0\r\n", 0)  # truncated
    receiver.feed(b":b0001!b@h PRIVMSG #bench :bench~0~0~1\r\n", 0)
    assert receiver.complete and receiver.garbled == 2
    receiver.feed(b":srv 404 b0002 #bench :Cannot send to channel\r\nERROR :Closing\r\n", 0)
    assert len(receiver.errors) == 2 and receiver.errors[0].startswith(":srv 404")


def test_receiver_irc_server_without_cap():
    plan = Plan(clients=2, senders=1, messages=1, mode="irc", irc_echo=True)
    receiver = Receiver(plan, 0)
    receiver.feed(b":srv 421 * CAP :Unknown command\r\n", 0)
    assert receiver.outbox == b"CAP END\r\n"
    assert receiver.errors == ["the server does not offer echo-message"]


def _server_output(plan: Plan, order: list[tuple[int, int]]) -> bytes:
    """What the line door would send client 0: its joins, then the messages."""
    lines = ["-- welcome to sockhub chat; /help lists commands", "-- you are b0001",
             "12:00:00 #lobby * b0001 joined",
             "[history] 2026-01-01 11:00:00 #bench <b0002> bench~1~0~5",  # an older run
             "12:00:00 #bench * b0001 joined", "-- in #bench: b0001 b0002"]
    lines += [f"12:00:01 #bench <{plan.nick(s)}> {message_text(s, q, 1_000 + q)}"
              for s, q in order]
    return "".join(line + "\r\n" for line in lines).encode()


def test_receiver_counts_line_mode_output_however_it_is_split():
    plan = Plan(clients=3, senders=2, messages=3)
    data = _server_output(plan, [(s, q) for q in range(3) for s in range(2)])
    for step in (1, 7, 64, len(data)):
        receiver = Receiver(plan, 0)
        for start in range(0, len(data), step):
            receiver.feed(data[start : start + step], now_ns=2_000)
        assert receiver.ready and receiver.complete
        counts = Counts().add_receivers([receiver])
        assert (counts.deliveries, counts.lost, counts.garbled) == (6, 0, 0)
        assert sorted(set(receiver.latencies)) == [998, 999, 1000]


def test_receiver_waits_for_its_own_join_of_the_room():
    plan = Plan(clients=2, senders=1, messages=1, room="#Bench")
    receiver = Receiver(plan, 1)
    receiver.feed(b"-- you are b0002\r\n12:00:00 #lobby * b0002 joined\r\n", 0)
    receiver.feed(b"12:00:00 #bench * b0001 joined\r\n", 0)  # someone else's join
    assert not receiver.ready
    receiver.feed(b"12:00:00 #bench * b0002 joined\r\n", 0)  # the room's case may differ
    assert receiver.ready


def test_receiver_reports_problems():
    plan = Plan(clients=2, senders=2, messages=2)
    receiver = Receiver(plan, 0)
    receiver.feed(b"error: nick b0001 is already in use\r\n", 0)
    assert receiver.errors == ["error: nick b0001 is already in use"]
    receiver.feed(b"12:00:01 #bench <b0002> bench~0~0~1\r\n", 0)  # b0002 speaking as sender 0
    receiver.feed(b"12:00:01 #bench <b0001> bench~0~1\r\n", 0)  # truncated
    receiver.feed(b"12:00:01 #bench <b0001> bench~0~0~1\r\n" * 2, 0)  # twice
    counts = Counts().add_receivers([receiver])
    assert (counts.garbled, counts.duplicated, counts.deliveries) == (2, 1, 1)
    assert counts.lost == 3


class _WsServer:
    """The server's end of one bench client's WebSocket, in memory (websockets' sans-I/O)."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.ws = ServerProtocol(subprotocols=[Subprotocol("sockhub.v1")])
        self.ws.receive_data(receiver.opening())
        [request] = self.ws.events_received()
        self.ws.send_response(self.ws.accept(request))
        self.client_sent: list[dict[str, object]] = []
        self.pongs: list[bytes] = []

    def send(self, *events: dict[str, object], split: int = 0, now_ns: int = 0) -> None:
        for event in events:  # compact, as the web door writes: the receiver's fast path
            self.ws.send_text(json.dumps(event, separators=(",", ":")).encode())
        self.pump(split, now_ns)

    def pump(self, split: int = 0, now_ns: int = 0) -> None:
        data = b"".join(self.ws.data_to_send())
        step = split or len(data) or 1
        for start in range(0, len(data), step):
            self.receiver.feed(data[start : start + step], now_ns)
        self.take(bytes(self.receiver.outbox))
        self.receiver.outbox.clear()

    def take(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for frame in self.ws.events_received():
            if frame.opcode is Opcode.TEXT:
                self.client_sent.append(json.loads(frame.data))
            elif frame.opcode is Opcode.PONG:
                self.pongs.append(frame.data)


def test_receiver_websocket_mode_speaks_json_protocol_v1():
    plan = Plan(clients=3, senders=2, messages=2, mode="ws", url="ws://127.0.0.1:8080/ws")
    assert plan.echoes and plan.expected(0) == 4
    receiver = Receiver(plan, 0)
    server = _WsServer(receiver)
    server.pump()  # the handshake response: the client says hello at once
    assert server.client_sent == [{"type": "hello", "version": 1, "nick": "b0001"}]
    server.send({"type": "welcome", "version": 1, "nick": "b0001", "rooms": []})
    assert receiver.greeted and not receiver.ready
    server.take(receiver.frame(plan.hello(0)))
    assert server.client_sent[-1] == {"type": "join", "room": "#bench"}
    server.send({"type": "joined", "room": "#bench", "nick": "b0002", "ts": 1.0})
    assert not receiver.ready  # someone else's join
    server.send({"type": "joined", "room": "#BENCH", "nick": "b0001", "ts": 1.0},
                {"type": "history", "room": "#bench", "messages": [
                    {"id": 1, "room": "#bench", "nick": "b0002", "text": "bench~1~0~5"}],
                 "more": False})
    assert receiver.ready and receiver.tally.received == 0  # history is not a delivery
    server.take(receiver.frame(plan.wrap(message_text(0, 0, 1000))))
    assert server.client_sent[-1] == {"type": "say", "room": "#bench", "text": "bench~0~0~1000"}

    def message(sender: int, seq: int, nick: str | None = None) -> dict[str, object]:
        return {"type": "message", "id": 10 + seq, "room": "#bench",
                "nick": nick or plan.nick(sender), "text": message_text(sender, seq, 1000),
                "action": False, "notice": False, "ts": 2.0}

    server.send(message(0, 0), message(1, 0), split=5, now_ns=3000)  # any split of the bytes
    server.ws.send_ping(b"hb")
    server.pump(split=3)
    assert server.pongs == [b"hb"]
    server.send(message(1, 0), message(0, 1, nick="b0002"), now_ns=3000)  # a dup, a wrong author
    server.send({"type": "message", "room": "#other", "nick": "b0002",  # over 125 bytes
                 "text": "not a bench message " * 20}, message(1, 1), now_ns=3000)
    whole = json.dumps(message(0, 1)).encode()  # spaced, in two fragments: json.loads
    server.ws.send_text(whole[:20], fin=False)
    server.ws.send_continuation(whole[20:], fin=True)
    server.pump(split=7, now_ns=3000)
    counts = Counts().add_receivers([receiver])
    assert (counts.deliveries, counts.duplicated, counts.garbled, counts.lost) == (4, 1, 1, 0)
    assert receiver.complete and set(receiver.latencies) == {2000}
    server.send({"type": "error", "code": "flood", "message": "too fast"})
    assert receiver.errors == ["error flood: too fast"]


def test_receiver_websocket_reads_the_web_doors_own_rendering_without_json_loads(monkeypatch):
    # The web door's message object gained a field once (source) and every
    # delivery silently fell back to json.loads: the load client then read a
    # quarter as fast, and fell behind the server it measured (issue 16).
    plan = Plan(clients=2, senders=2, messages=2, mode="ws", url="ws://127.0.0.1:8080/ws")
    receiver = Receiver(plan, 0)
    server = _WsServer(receiver)
    server.pump()
    server.send({"type": "welcome", "version": 1, "nick": "b0001", "rooms": []},
                {"type": "joined", "room": "#bench", "nick": "b0001", "ts": 1.0})
    assert receiver.ready

    def no_json(_text: object) -> object:
        raise AssertionError("a bench message went to json.loads")

    monkeypatch.setattr(receiver_module.json, "loads", no_json)
    for sender, seq in ((0, 0), (1, 0), (0, 1), (1, 1)):
        event = Message(room="#bench", nick=plan.nick(sender), text=message_text(sender, seq, 7),
                        ts=1.5, id=seq + 1, username="b", address="127.0.0.1")
        server.ws.send_text(dumps(event_object(event) or {}).encode())
    server.pump(split=11, now_ns=10)
    assert receiver.complete and receiver.garbled == 0 and set(receiver.latencies) == {3}


def test_receiver_websocket_mode_reports_a_refused_handshake():
    plan = Plan(clients=2, senders=1, messages=1, mode="ws", url="ws://127.0.0.1:8080/ws")
    receiver = Receiver(plan, 1)
    ws = ServerProtocol()
    ws.receive_data(receiver.opening())
    [_request] = ws.events_received()
    ws.send_response(ws.reject(403, "wrong origin\n"))
    receiver.feed(b"".join(ws.data_to_send()), 0)
    assert receiver.errors and "handshake" in receiver.errors[0] and not receiver.greeted


def test_receiver_reads_ncat_chunks():
    plan = Plan(clients=3, senders=2, messages=2, mode="ncat")
    receiver = Receiver(plan, 1)  # sender 1: expects only sender 0's messages
    receiver.feed(b"<announce> 127.0.0.1 is connected as <user6>.\n", 0)
    assert receiver.ready
    # ncat prefixes each chunk it relays, not each line.
    receiver.feed(b"<user5> bench~0~0~1\nbench~0~1~1\n", 10)
    receiver.feed(b"<announce> <user7> is disconnected.\n", 10)
    assert receiver.complete and receiver.garbled == 0
    receiver.feed(b"<user6> bench~1~0~1\n", 10)  # an echo ncat should not send
    assert receiver.tally.unexpected == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"clients": 0}, {"senders": 5, "clients": 4}, {"messages": -1}, {"rate": 0.0},
     {"timeout": 0}, {"mode": "xmpp"}, {"room": "bench"}, {"mode": "ncat", "clients": 1},
     {"procs": 0}, {"window": 0}, {"realtime": True}],
)
def test_bench_chat_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        bench_chat("127.0.0.1", 9, **kwargs)


# Real runs -------------------------------------------------------------------


async def test_bench_chat_against_the_chat_server(tmp_path):
    server = await start_sockhub("chat", "--port", "0", "--data-dir", str(tmp_path),
                                 "--flood-rate", "none")
    try:
        port = server.ports["chat"]
        code, out, err = await run_sockhub(
            "bench", "chat", f"127.0.0.1:{port}", "--clients", "20", "--senders", "3",
            "--messages", "20", "--timeout", "20", "--json", timeout=30)
        assert code == 0, err
        result = json.loads(out)
        assert result["ok"] is True
        assert result["deliveries"] == result["expected"] == 20 * 3 * 20
        assert result["sent"] == 3 * 20
        assert result["lost"] == result["duplicated"] == result["reordered"] == 0
        assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
        # Several processes, paced by a rate, in another room of the same server.
        run = await _python(
            "from sockhub.client.chatbench import bench_chat\n"
            f"r = bench_chat('127.0.0.1', {port}, clients=12, senders=4, messages=10,"
            " rate=400, room='#paced', procs=2, timeout=20)\n"
            "print(r.to_json())\n")
        assert run["ok"] and run["procs"] == 3  # the senders in a process of their own
        assert run["deliveries"] == 12 * 4 * 10
        assert run["offered_per_s"] == 12 * 4 * 400  # every client gets 4 x 400 a second
        assert 0 < run["sent_alone"] <= 1 and isinstance(run["pace_held"], bool)
    finally:
        assert await server.stop() == 0


async def test_bench_chat_text_report_and_failure(tmp_path):
    server = await start_sockhub("chat", "--port", "0", "--data-dir", str(tmp_path))
    try:  # flood control on: 30 messages in a burst trip it, and the run says so
        code, out, _ = await run_sockhub(
            "bench", "chat", f"127.0.0.1:{server.ports['chat']}", "--clients", "2",
            "--senders", "1", "--messages", "30", "--timeout", "20", timeout=30)
        assert code == 1
        assert b"flood control" in out and b"result      FAILED" in out
    finally:
        assert await server.stop() == 0


async def test_bench_chat_with_nobody_listening_fails_fast():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, _ = await run_sockhub(
        "bench", "chat", f"127.0.0.1:{port}", "--clients", "3", "--senders", "1",
        "--messages", "2", "--timeout", "20", "--json", timeout=30)
    assert code == 1
    result = json.loads(out)
    assert result["errors"] == 3 and result["lost"] == 3 * 2 and not result["ok"]


# ncat --chat as the bench expects it: no echo, and "<userN> " before each
# relayed chunk. The real ncat is not needed to test that side of the client.
FAKE_NCAT = r"""
import asyncio

async def main():
    writers = {}

    async def handle(reader, writer):
        name = f"<user{writer.get_extra_info('socket').fileno()}>".encode()
        writers[name] = writer
        for other in writers.values():
            other.write(b"<announce> 127.0.0.1 is connected as " + name + b".\n")
        while chunk := await reader.read(8192):
            for other_name, other in writers.items():
                if other_name != name:
                    other.write(name + b" " + chunk)
        del writers[name]

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


async def test_bench_chat_ncat_mode():
    broker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FAKE_NCAT, stdout=asyncio.subprocess.PIPE)
    try:
        assert broker.stdout is not None
        port = int(await asyncio.wait_for(broker.stdout.readline(), 20))
        code, out, err = await run_sockhub(
            "bench", "chat", f"127.0.0.1:{port}", "--mode", "ncat", "--clients", "6",
            "--senders", "2", "--messages", "15", "--timeout", "20", "--json", timeout=30)
        assert code == 0, err
        result = json.loads(out)
        assert result["ok"] and result["deliveries"] == 5 * 2 * 15
    finally:
        broker.terminate()
        await broker.wait()


async def _python(code: str) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    result: dict[str, object] = json.loads(out)
    return result


async def test_bench_chat_irc_mode_against_the_irc_door(tmp_path):
    server = await start_sockhub("chat", "--port", "0", "--irc-port", "0", "--data-dir",
                                 str(tmp_path), "--flood-rate", "none", listeners=2)
    try:
        code, out, err = await run_sockhub(
            "bench", "chat", f"127.0.0.1:{server.ports['irc']}", "--mode", "irc",
            "--clients", "20", "--senders", "3", "--messages", "20", "--timeout", "20",
            "--json", timeout=30)
        assert code == 0, err
        result = json.loads(out)
        assert result["ok"] is True and result["echo"] is True  # the door offers echo-message
        assert result["deliveries"] == result["expected"] == 20 * 3 * 20
        # Without echo-message (as against ngIRCd): witnesses pace, senders get none of theirs.
        run = await _python(
            "from sockhub.client.chatbench import parent as chatbench\n"
            "chatbench.irc_offers = lambda *args: False\n"
            f"r = chatbench.bench_chat('127.0.0.1', {server.ports['irc']}, clients=6, "
            "senders=2, messages=10, mode='irc', room='#plain', timeout=20)\n"
            "print(r.to_json())\n")
        assert run["ok"] and run["echo"] is False
        assert run["deliveries"] == 5 * 2 * 10
    finally:
        assert await server.stop() == 0


async def _get(port: int, path: str) -> tuple[bytes, bytes]:
    """One HTTP/1.1 GET over a real socket: (head, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 "Connection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


async def test_bench_chat_ws_mode_against_the_web_door(tmp_path):
    server = await start_sockhub("chat", "--port", "0", "--web-port", "0", "--data-dir",
                                 str(tmp_path), "--flood-rate", "none", listeners=2)
    try:
        web = server.ports["web"]
        code, out, err = await run_sockhub(
            "bench", "chat", f"127.0.0.1:{web}", "--mode", "ws", "--clients", "20",
            "--senders", "3", "--messages", "20", "--timeout", "20", "--json", timeout=30)
        assert code == 0, err
        result = json.loads(out)
        assert result["ok"] is True and result["mode"] == "ws"
        assert result["deliveries"] == result["expected"] == 20 * 3 * 20
        assert result["lost"] == result["duplicated"] == result["reordered"] == 0
        assert 0 < result["p50_ms"] <= result["p99_ms"]
        # The server process counted the same traffic, per door, in GET /metrics.
        head, body = await _get(web, "/metrics")
        assert head.startswith(b"HTTP/1.1 200") and b"text/plain; version=" in head
        text = body.decode()
        assert 'sockhub_chat_messages_in_total{door="web"} 60.0' in text
        assert 'sockhub_chat_messages_out_total{door="web"} 1200.0' in text
        assert 'sockhub_chat_messages_in_total{door="line"} 0.0' in text
        assert "sockhub_chat_history_rows 60.0" in text
        assert "sockhub_chat_fanout_seconds_count 60.0" in text
        assert 'sockhub_connections_accepted_total{listener="web"}' in text
    finally:
        assert await server.stop() == 0


def _result(**changes: object) -> ChatBenchResult:
    fields: dict[str, object] = {
        "target": "127.0.0.1:1", "mode": "ws", "room": "#bench", "clients": 500, "senders": 10,
        "messages": 100, "rate": 50.0, "window": 1, "procs": 2, "setup_s": 1.0,
        "seconds": 2.1, "sent": 1000, "expected": 500_000, "deliveries": 500_000,
        "deliveries_per_s": 238_095.0, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0,
        "lost": 0, "duplicated": 0, "reordered": 0, "garbled": 0, "errors": 0,
        "first_error": "", "client_cpu_s": 1.0, "offered_per_s": 250_000.0,
        "sent_alone": 0.99, "send_late_p99_ms": 0.5}
    fields.update(changes)
    return ChatBenchResult(**fields)  # type: ignore[arg-type]


def test_a_paced_run_that_fell_behind_says_so():
    # 100 messages at 50/s, 10 senders staggered over a slot: the last is due
    # 1.98 + 0.018 s after the first.
    on_time = _result()
    assert on_time.behind_s == pytest.approx(0.102) and on_time.pace_held
    [line] = [x for x in on_time.report().splitlines() if x.startswith("pace")]
    assert line.endswith("done 0.10 s after the last was due -> held")
    late = _result(seconds=12.1, client_cpu_s=12.0)
    assert late.behind_s == pytest.approx(10.102) and not late.pace_held
    [line] = [x for x in late.report().splitlines() if x.startswith("pace")]
    assert "done 10.10 s after the last was due -> NOT held: over 1 s behind: " in line
    assert "(2 process(es) at 50% each)" in line
    assert late.ok  # nothing lost: a correct run, just not at the pace asked
    fields = json.loads(late.to_json())
    assert fields["pace_held"] is False and fields["behind_s"] == 10.102
    assert "kept_pace" not in fields  # one verdict
    unpaced = _result(rate=None, seconds=50.0)  # closed loop: no pace to keep
    assert not any(x.startswith("pace") for x in unpaced.report().splitlines())
    fields = json.loads(unpaced.to_json())
    assert fields["pace_held"] is None and fields["behind_s"] is None


def test_staggered_senders_at_a_slow_pace_are_not_read_as_late():
    # Sender s starts s/(K*rate) after the first: at 0.5/s with 10 senders the
    # last starts 1.8 s late, so 5 messages' last is due 8 + 1.8 s after the first.
    run = _result(rate=0.5, messages=5, seconds=10.1, expected=25_000, deliveries=25_000,
                  offered_per_s=2_500.0, deliveries_per_s=25_000 / 10.1)
    assert run.behind_s == pytest.approx(0.3)
    assert run.pace_held, run.pace_misses()


def test_only_realtime_gives_the_paced_senders_process_a_real_time_priority():
    # Review: it was taken silently (SCHED_FIFO as root) for every paced run.
    plan = Plan(clients=100, senders=10, messages=10)
    senders, readers = list(range(10)), list(range(10, 100, 2))

    def opts(rate: float | None, realtime: bool) -> WorkerOptions:
        return WorkerOptions("h", 1, 1, rate, 0.0, 1, realtime)

    assert not keeps_time(plan, senders, opts(50.0, False))  # paced, not asked
    assert not keeps_time(plan, senders, WorkerOptions("h", 1, 1, 50.0, 0.0, 1))  # default
    assert keeps_time(plan, senders, opts(50.0, True))
    assert not keeps_time(plan, readers, opts(50.0, True))  # only the senders' process
    assert not keeps_time(plan, senders, opts(None, True))  # unpaced: nothing to keep


async def test_realtime_without_a_rate_is_refused_on_the_command_line():
    code, _, err = await run_sockhub("bench", "chat", "127.0.0.1:9", "--realtime", timeout=30)
    assert code == 2 and b"--realtime needs --rate" in err


def test_the_patience_for_silence_grows_with_what_one_turn_can_fan_out():
    # Issue 16: at N=2000, window 128, a server fanned out a whole batch in one
    # loop turn (seconds on a loaded machine) and the load gave up at 2 s.
    def settle(clients: int, messages: int, window: int, rate: float | None = None) -> float:
        plan = Plan(clients=clients, senders=10, messages=messages, mode="ws", url="ws://h/ws")
        return settle_seconds(plan, WorkerOptions("h", 1, window, rate, 0.0, 1))

    assert settle(10, 1000, 1) == SETTLE
    assert settle(100, 100, 128) == SETTLE  # 100,000 outstanding: half a second
    assert settle(2000, 50, 128) == pytest.approx(max(SETTLE, 5.0))  # 1,000,000 outstanding
    assert settle(2000, 1000, 128) == pytest.approx(12.8)
    assert settle(500, 100, 1, rate=0.5) == 6.0  # paced: three intervals


@pytest.mark.parametrize("mode", ["irc", "line"])
def test_receiver_fast_path_counts_as_the_line_by_line_path(mode):
    """A chunk of bench messages only takes the findall path; one other line in it, the
    line-by-line path: both must count every problem the same way."""
    plan = Plan(clients=4, senders=3, messages=4, mode=mode)  # IRC: no echo, skips its own

    def line(nick: int, s: int, q: int) -> bytes:
        text = message_text(s, q, 100 + q)
        if mode == "irc":
            return f":{plan.nick(nick)}!~b@127.0.0.1 PRIVMSG #bench :{text}\r\n".encode()
        return f"12:00:01 #bench <{plan.nick(nick)}> {text}\r\n".encode()

    chunk = b"".join([
        line(0, 0, 0), line(0, 0, 1), line(0, 0, 1),  # a duplicate
        line(1, 1, 2), line(1, 1, 0),  # reordered
        line(2, 0, 2),  # the wrong author
        line(2, 2, 0),  # sender 2 = client 2: its own, unexpected without an echo (IRC)
        line(0, 0, 7),  # a number outside the plan
        line(0, 0, 3),
    ])
    seen = []
    for extra in (b"", b"PING :x\r\n" if mode == "irc" else b"-- a notice\r\n"):
        receiver = Receiver(plan, 2)
        receiver.ready = True
        receiver.feed(chunk + extra, 150)
        tally = receiver.tally
        seen.append((tally.received, tally.duplicated, tally.reordered, tally.unexpected,
                     receiver.garbled, list(tally.counts), sorted(receiver.latencies)))
    assert seen[0] == seen[1]
    received, duplicated, reordered, unexpected, garbled, _, latencies = seen[0]
    assert (duplicated, reordered, garbled) == (1, 1, 1)
    assert (received, unexpected) == ((5, 2) if mode == "irc" else (6, 1))
    assert latencies[0] == 47  # 150 - (100 + 3)


def test_shared_stream_receivers_count_as_receivers_alone():
    """Paced runs: the receivers of a process share one stream; each still gets its
    own exactly-once, in-order count and latencies, whatever its reads' splits, and
    one whose bytes differ (a PING, a duplicate) leaves the stream there."""
    plan = Plan(clients=6, senders=2, messages=6, mode="irc", irc_echo=True)

    def line(s: int, q: int) -> bytes:
        return (f":{plan.nick(s)}!~b@127.0.0.1 PRIVMSG #bench :"
                f"{message_text(s, q, 100 + q)}\r\n").encode()

    lead_in = b":srv 366 b0003 #bench :End of /NAMES list.\r\n"
    body = b"".join(line(s, q) for q in range(6) for s in range(2))
    cut = len(line(0, 0)) * 5 + 7  # inside the sixth message
    streams = {
        "same": lead_in + body,
        "ping": lead_in + body[:cut] + b"PING :x\r\n" + body[cut:],  # inside a line: none
        "twice": lead_in + body[: cut - 7] + line(0, 2) + body[cut - 7 :],  # (0, 2) again
    }
    stream = SharedStream(plan)
    receivers = {name: Receiver(plan, 3 + i, stream=stream) for i, name in enumerate(streams)}
    for receiver in receivers.values():
        receiver.ready = True
    for step, name in ((5, "same"), (64, "ping"), (9, "twice")):
        data = streams[name]
        for start in range(0, len(data), step):
            receivers[name].feed(data[start : start + step], 1_000 + start)
    reference = Receiver(plan, 3)
    reference.ready = True
    reference.feed(streams["same"], 1_000)
    counts = {name: Counts().add_receivers([r]) for name, r in receivers.items()}
    assert receivers["same"].complete and receivers["same"]._pos > 0  # never left it
    assert (counts["same"].deliveries, counts["same"].duplicated, counts["same"].garbled) == (
        12, 0, 0)
    assert len(receivers["same"].latencies) == 12
    assert sorted(receivers["same"].latencies)[0] >= 1_000 - 105
    assert receivers["ping"]._pos == -2 and receivers["ping"].outbox == b""  # a broken line
    assert counts["ping"].garbled == 1 and counts["ping"].deliveries == 11
    assert receivers["twice"]._pos == -2
    assert (counts["twice"].deliveries, counts["twice"].duplicated,
            counts["twice"].garbled) == (12, 1, 0)
    assert Counts().add_receivers([reference]).deliveries == 12
