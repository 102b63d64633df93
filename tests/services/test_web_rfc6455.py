"""The web door's own RFC 6455 over real sockets (doors/web/frames.py after websockets' 101).

The ``websockets`` client library is the peer where it can be (ping/pong,
fragmented messages, the close handshake either way, oversize); a raw
socket where a library would not misbehave (UTF-8 broken across a fragment
boundary, a peer that never answers the server's close).
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest
from test_web_socket import web_client

from net import STEP, chat_client, open_client
from proc import start_sockhub

HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: [::1]\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


@pytest.fixture
async def web(serve, tmp_path):
    """The chat service with the web door (and the line door) on free ports; ports by name."""

    async def start(**options: Any) -> dict[str, int]:
        servers = await serve("chat", options={"data_dir": str(tmp_path), "web_port": 0,
                                               **options})
        return {server.name: server.ports[0] for server in servers}

    return start


def masked(first: int, payload: bytes, mask: bytes = b"\x11\x22\x33\x44") -> bytes:
    """One client frame (RFC 6455 §5.2, §5.3), payload under 126 bytes."""
    assert len(payload) < 126
    return (bytes((first, 0x80 | len(payload))) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


class Raw:
    """A WebSocket client by hand: frames written as given, the server's read one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Raw:
        reader, writer = await open_client(port)
        writer.write(HANDSHAKE)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
        assert head.startswith(b"HTTP/1.1 101 ")
        return cls(reader, writer)

    async def frame(self) -> tuple[int, bytes]:
        """The server's next frame: (opcode, payload); (-1, b"") at EOF."""
        try:
            first, second = await asyncio.wait_for(self.reader.readexactly(2), STEP)
        except asyncio.IncompleteReadError:
            return -1, b""
        assert not second & 0x80  # a server never masks (§5.1)
        length = second & 0x7F
        if length >= 126:
            extra = 2 if length == 126 else 8
            length = int.from_bytes(await self.reader.readexactly(extra), "big")
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), STEP)

    async def until(self, opcode: int) -> bytes:
        while True:
            got, payload = await self.frame()
            assert got != -1, "closed"
            if got == opcode:
                return payload

    async def eof(self) -> None:
        """Read until the server closes the TCP connection."""
        while (await self.frame())[0] != -1:
            pass

    def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))


async def test_a_library_ping_is_answered_with_its_payload(web):
    ports = await web()
    alice = await web_client(ports["web"], "alice")
    pong = await alice.ws.ping(b"are you there")  # websockets matches the pong's payload
    latency = await asyncio.wait_for(pong, STEP)
    assert latency >= 0
    await alice.ws.close()


async def test_a_fragmented_text_message_reaches_the_room(web):
    ports = await web()
    line = await chat_client(ports["chat"], "lina")
    alice = await web_client(ports["web"], "alice", "#lobby")
    say = json.dumps({"type": "say", "room": "#lobby", "text": "in three pieces é"})
    await alice.ws.send(iter([say[:10], say[10:30], say[30:]]))  # fragments (§5.4)
    await line.expect("<alice> in three pieces é")
    await alice.expect(type="message", text="in three pieces é")
    await alice.ws.close()
    line.close()


async def test_a_fragmented_message_over_16_kib_closes_with_1009(web):
    ports = await web()
    alice = await web_client(ports["web"], "alice")
    await alice.ws.send(iter(["x" * 9000, "y" * 9000]))  # each fragment under the limit
    closed = await alice.closed()
    assert closed.rcvd is not None and closed.rcvd.code == 1009


async def test_a_close_from_the_client_is_echoed_and_the_user_leaves(web):
    ports = await web()
    line = await chat_client(ports["chat"], "lina")
    alice = await web_client(ports["web"], "alice", "#lobby")
    await line.expect("alice joined")
    await alice.ws.close(4000, "bye for now")  # §5.5.1: echoed, code and reason
    protocol = alice.ws.protocol
    assert protocol.close_rcvd is not None
    assert (protocol.close_rcvd.code, protocol.close_rcvd.reason) == (4000, "bye for now")
    assert protocol.close_rcvd_then_sent is False  # ours went first
    await line.expect("alice")
    line.close()


async def test_a_close_from_the_server_is_answered_and_the_server_hangs_up_at_once(web):
    # Neither side's timer can be what closes it: the server waits 60 s for the
    # client's close, the client 60 s for the server to close TCP (§7.1.1).
    ports = await web(registration_timeout=0.2, web_close_timeout=60)
    silent = await web_client(ports["web"], close_timeout=60)
    closed = await silent.closed()  # no hello in time: 1008
    assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (1008,
                                                                                "no hello")
    assert closed.rcvd_then_sent is True  # the library answered the server's close
    await asyncio.wait_for(silent.ws.wait_closed(), STEP)


async def test_a_graceful_stop_waits_for_the_clients_close_then_exits(tmp_path):
    served = await start_sockhub("chat", "--port", "0", "--web-port", "0",
                                 "--data-dir", str(tmp_path), listeners=2)
    try:
        alice = await web_client(served.ports["web"], "alice", "#lobby", close_timeout=60)
    except BaseException:
        await served.stop()
        raise
    stopping = asyncio.create_task(served.stop(signal.SIGTERM))
    closed = await alice.closed()
    assert closed.rcvd is not None and closed.rcvd.code == 1001
    assert closed.rcvd_then_sent is True
    await asyncio.wait_for(alice.ws.wait_closed(), STEP)
    assert await stopping == 0


async def test_text_broken_across_a_fragment_boundary_closes_with_1007(web):
    ports = await web()
    raw = await Raw.open(ports["web"])
    euro = "€".encode()
    ping = json.dumps({"type": "ping", "id": "€"}, ensure_ascii=False).encode()
    cut = ping.index(euro) + 1
    # A character cut across fragments is UTF-8 all the same (§5.4, §8.1) ...
    raw.send(masked(0x01, ping[:cut]), masked(0x00, ping[cut:cut + 1]),
             masked(0x80, ping[cut + 1:]))
    answer = json.loads(await raw.until(0x1))  # read and answered (before hello: an error)
    assert answer["re"] == "€" and answer["code"] == "not_registered"
    # ... a sequence broken across them is not: 1007 (§8.1).
    raw.send(masked(0x01, b'{"type":"ping","id":"\xe2\x82'), masked(0x80, b'("}'))
    close = await raw.until(0x8)
    assert int.from_bytes(close[:2], "big") == 1007
    await raw.eof()
    raw.writer.close()


async def test_a_peer_that_never_answers_the_servers_close_is_cut_after_the_timeout(web):
    ports = await web(registration_timeout=0.2, web_close_timeout=0.5)
    line = await chat_client(ports["chat"], "lina")
    raw = await Raw.open(ports["web"])
    close = await raw.until(0x8)  # no hello in time
    assert close == (1008).to_bytes(2, "big") + b"no hello"
    # Still open, waiting for our close: a ping is answered (§5.5.2) ...
    raw.send(masked(0x89, b"still there?"))
    assert await raw.frame() == (0xA, b"still there?")
    # ... a message is not read (§1.4): no answer to it before the hang-up.
    raw.send(masked(0x81, json.dumps({"type": "ping", "id": 1}).encode()))
    assert await raw.frame() == (-1, b"")  # EOF: the server hung up, web_close_timeout on
    raw.writer.close()
    await line.send("still serving")
    await line.expect("<lina> still serving")
    line.close()


async def test_a_ping_between_fragments_does_not_count_against_the_limit(web):
    ports = await web()
    raw = await Raw.open(ports["web"])
    body = json.dumps({"type": "ping", "id": "x"}).encode()
    padded = body[:-1] + b" " * (16 * 1024 - len(body)) + b"}"  # 16 KiB exactly
    half = len(padded) // 2
    raw.send(_long(0x01, padded[:half]), masked(0x89, b"p" * 125), _long(0x80, padded[half:]))
    assert await raw.until(0xA) == b"p" * 125
    answer = json.loads(await raw.until(0x1))  # read whole: answered, not closed (1009)
    assert answer["re"] == "x" and answer["code"] == "not_registered"
    raw.writer.close()


def _long(first: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """A client frame with a 16-bit length."""
    assert 126 <= len(payload) < 0x10000
    return (bytes((first, 0x80 | 126)) + len(payload).to_bytes(2, "big") + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


async def test_a_ping_timeout_closes_without_waiting_for_an_answer(web):
    # A peer that answers no ping would answer no close: 1001 and the hang-up at once.
    ports = await web(web_ping_interval=0.2, web_ping_timeout=0.2, web_close_timeout=60)
    raw = await Raw.open(ports["web"])
    assert await raw.frame() == (0x9, b"sockhub")
    close = await raw.until(0x8)
    assert close == (1001).to_bytes(2, "big") + b"ping timeout"
    await raw.eof()
    raw.writer.close()


async def test_a_bad_close_code_from_the_client_is_1002(web):
    ports = await web()
    raw = await Raw.open(ports["web"])
    raw.send(masked(0x88, (1005).to_bytes(2, "big")))  # §7.4.1: never sent in a frame
    close = await raw.until(0x8)
    assert int.from_bytes(close[:2], "big") == 1002
    await raw.eof()
    raw.writer.close()
