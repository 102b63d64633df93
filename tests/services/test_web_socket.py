"""The web door's WebSocket at /ws over real sockets, with the ``websockets`` client library.

JSON chat v1 between browsers-to-be and the other doors (line, IRC), both
ways; the limits (frame size, flood, no hello, Origin, keep-alive); IRC
over WebSocket (``text.ircv3.net``) with a line-door user; and the close
every client gets on a graceful stop.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
from collections.abc import Callable
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from net import STEP, LineClient, chat_client, irc_client, open_client
from proc import start_sockhub
from sockhub.config import ServiceConfig
from sockhub.errors import ConfigError
from sockhub.limits import Limits


@pytest.fixture
async def web(serve, tmp_path):
    """Start the chat service with the web and IRC doors on free ports; ports by name."""

    async def start(**options: Any) -> dict[str, int]:
        servers = await serve("chat", options={"data_dir": str(tmp_path), "web_port": 0,
                                               "irc_port": 0, **options})
        return {server.name: server.ports[0] for server in servers}

    return start


class Web:
    """A JSON chat client: sends objects, reads until the one it expects."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, **obj: Any) -> None:
        await self.ws.send(json.dumps(obj))

    async def expect(self, **fields: Any) -> dict[str, Any]:
        """Read objects until one has all of ``fields``; return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STEP
        while True:
            obj = json.loads(await asyncio.wait_for(self.ws.recv(), deadline - loop.time()))
            self.seen.append(obj)
            if fields.items() <= obj.items():
                return obj

    async def closed(self) -> ConnectionClosed:
        """Read until the server closes; the close it sent."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), STEP)
        except ConnectionClosed as exc:
            return exc


async def web_client(port: int, nick: str | None = None, *rooms: str,
                     **kwargs: Any) -> Web:
    ws = await connect(f"ws://127.0.0.1:{port}/ws", open_timeout=STEP, **kwargs)
    client = Web(ws)
    if nick is not None:
        await client.send(type="hello", version=1, nick=nick)
        await client.expect(type="welcome", nick=nick)
        for room in rooms:
            await client.send(type="join", room=room)
            await client.expect(type="history", room=room)
    return client


async def test_json_chat_with_line_and_irc_users_both_ways(web):
    ports = await web()
    line = await chat_client(ports["chat"], "lina")
    await line.send("before anyone came")
    irc = await irc_client(ports["irc"], "ircy", "#lobby")
    alice = await web_client(ports["web"], "alice", subprotocols=["sockhub.v1"])
    assert alice.ws.subprotocol == "sockhub.v1"
    await alice.send(type="join", room="#lobby", id="j1")
    members = await alice.expect(type="members", re="j1")
    assert {m["nick"] for m in members["members"]} == {"lina", "ircy", "alice"}
    history = await alice.expect(type="history", re="j1")
    assert [m["text"] for m in history["messages"]] == ["before anyone came"]
    bob = await web_client(ports["web"], "bob", "#lobby")  # no subprotocol: JSON too
    assert bob.ws.subprotocol is None
    await alice.expect(type="joined", nick="bob")
    await line.expect("bob joined")

    await alice.send(type="say", room="#lobby", text="hi <b>all</b>")
    ack = await alice.expect(type="message", nick="alice")
    assert ack["text"] == "hi <b>all</b>" and isinstance(ack["id"], int)
    assert (await bob.expect(type="message", nick="alice")) == ack
    await line.expect("<alice> hi <b>all</b>")
    await irc.expect(":alice!alice@127.0.0.1 PRIVMSG #lobby :hi <b>all</b>")

    await line.send("from nc")
    await alice.expect(type="message", nick="lina", text="from nc")
    await bob.expect(type="message", nick="lina", text="from nc")
    await irc.send(b"PRIVMSG #lobby :from irc\r\n")
    await alice.expect(type="message", nick="ircy", text="from irc")
    await irc.send(b"PRIVMSG #lobby :\x01ACTION waves\x01\r\n")
    await bob.expect(type="message", nick="ircy", text="waves", action=True)

    # Private messages, web to line and IRC to web.
    await alice.send(type="private", to="lina", text="psst")
    await alice.expect(type="private", to="lina", text="psst")
    await line.expect("psst")
    await irc.send(b"PRIVMSG bob :secret\r\n")
    await bob.expect(type="private", **{"from": "ircy"}, to="bob", text="secret")
    await line.send("/msg alice back at you")
    await alice.expect(type="private", **{"from": "lina"}, text="back at you")

    # Leaving is seen everywhere.
    await bob.ws.close()
    await alice.expect(type="quit", nick="bob")
    await line.expect("bob")
    await alice.ws.close()
    line.close()
    irc.close()


async def test_errors_leave_the_connection_open(web):
    ports = await web()
    alice = await web_client(ports["web"], "alice")
    await alice.ws.send("{not json")
    assert (await alice.expect(type="error"))["code"] == "bad_json"
    await alice.send(type="dance", id=4)
    assert (await alice.expect(type="error", re=4))["code"] == "unknown_type"
    await alice.send(type="say", room=5, text="x", id=5)
    error = await alice.expect(type="error", re=5)
    assert error["code"] == "bad_field" and "room" in error["message"]
    await alice.ws.send(b"\x00binary")
    assert (await alice.expect(type="error"))["code"] == "bad_json"
    await alice.send(type="ping", id="still here")
    await alice.expect(type="pong", re="still here")
    await alice.ws.close()


async def test_a_frame_over_16_kib_closes_with_1009(web):
    ports = await web()
    alice = await web_client(ports["web"], "alice", max_size=None)
    await alice.ws.send(json.dumps({"type": "say", "room": "#lobby", "text": "x" * 17000}))
    closed = await alice.closed()
    assert closed.rcvd is not None and closed.rcvd.code == 1009


async def test_a_frame_that_is_not_utf8_closes_with_1007(web):
    ports = await web()
    reader, writer = await open_client(ports["web"])
    writer.write(b"GET /ws HTTP/1.1\r\nHost: [::1]\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 b"\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
    assert head.startswith(b"HTTP/1.1 101 ")
    payload = b"\xff\xfe"
    mask = b"\x00\x00\x00\x00"
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + payload)
    frame = await asyncio.wait_for(reader.read(), STEP)
    assert frame[0] == 0x88 and int.from_bytes(frame[2:4], "big") == 1007
    writer.close()


async def test_flooding_is_refused_then_closed_with_1008(web):
    ports = await web(flood_rate=0.5, flood_burst=3)
    alice = await web_client(ports["web"], "alice")
    for n in range(10):
        await alice.send(type="ping", id=n)
    error = await alice.expect(type="error", code="flood")
    assert "re" in error
    closed = await alice.closed()
    assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (1008, "flood")


async def test_no_hello_in_time_closes_with_1008(web):
    ports = await web(registration_timeout=0.3)
    silent = await web_client(ports["web"])
    closed = await silent.closed()
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "no hello")


async def test_a_foreign_origin_gets_403_and_an_allowed_one_gets_in(web):
    ports = await web(web_origin=["https://chat.example.org"])
    with pytest.raises(InvalidStatus) as refused:
        await web_client(ports["web"], origin="https://evil.example")
    assert refused.value.response.status_code == 403
    port = ports["web"]
    for origin in (f"http://127.0.0.1:{port}", "https://chat.example.org", None):
        client = await web_client(port, "x" + str(abs(hash(origin)) % 1000), origin=origin)
        await client.ws.close()


async def test_ircv3_text_websocket_exchanges_privmsg_with_a_line_user(web):
    ports = await web()
    line = await chat_client(ports["chat"], "lina")
    ws = await connect(f"ws://127.0.0.1:{ports['web']}/ws", subprotocols=["text.ircv3.net"],
                       open_timeout=STEP)
    assert ws.subprotocol == "text.ircv3.net"

    async def expect(needle: str) -> str:
        while True:
            frame = await asyncio.wait_for(ws.recv(), STEP)
            assert isinstance(frame, str)  # text frames: one message each, no CR LF
            assert "\r" not in frame and "\n" not in frame
            if needle in frame:
                return frame

    await ws.send("NICK webirc")
    await ws.send("USER webirc 0 * :Web IRC")
    await expect(" 001 webirc ")
    await ws.send("JOIN #lobby")
    await expect(" 366 webirc #lobby ")
    await line.expect("webirc joined")
    await ws.send("PRIVMSG #lobby :hello from a web IRC client")
    await line.expect("<webirc> hello from a web IRC client")
    await line.send("hello back")
    assert (await expect("PRIVMSG #lobby")).endswith(":hello back")
    await line.send("/msg webirc just you")
    assert (await expect("PRIVMSG webirc")).endswith(":just you")
    await ws.send("QUIT :done")
    await expect("ERROR")
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), STEP)
    await line.expect("webirc")
    line.close()


async def test_binary_ircv3_websocket_speaks_in_binary_frames(web):
    ports = await web()
    # At a bare ws://host:port too: how web IRC clients are usually configured.
    ws = await connect(f"ws://127.0.0.1:{ports['web']}",
                       subprotocols=["binary.ircv3.net"], open_timeout=STEP)
    assert ws.subprotocol == "binary.ircv3.net"
    await ws.send(b"NICK binirc")
    await ws.send(b"USER binirc 0 * :b")
    while True:
        frame = await asyncio.wait_for(ws.recv(), STEP)
        assert isinstance(frame, bytes)
        if b" 001 binirc " in frame:
            break
    await ws.close()


async def test_the_server_pings_and_closes_a_client_that_never_answers(web):
    ports = await web(web_ping_interval=0.2, web_ping_timeout=0.2)
    # A library client answers pings by itself: it stays.
    alice = await web_client(ports["web"], "alice")
    # A raw client that never answers is closed with 1001 "ping timeout".
    reader, writer = await open_client(ports["web"])
    writer.write(b"GET /ws HTTP/1.1\r\nHost: [::1]\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 b"\r\n")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
    rest = await asyncio.wait_for(reader.read(), STEP)
    assert rest[0] == 0x89  # a ping first
    close = rest[rest.index(b"\x88"):]
    assert int.from_bytes(close[2:4], "big") == 1001 and close[4:] == b"ping timeout"
    writer.close()
    await alice.send(type="ping", id=1)
    await alice.expect(type="pong", re=1)
    await alice.ws.close()


async def test_a_graceful_stop_closes_with_1001_and_the_reason(tmp_path):
    served = await start_sockhub("chat", "--port", "0", "--web-port", "0",
                                 "--data-dir", str(tmp_path), listeners=2)
    try:
        assert "web" in served.ports
        alice = await web_client(served.ports["web"], "alice", "#lobby")
    except BaseException:
        await served.stop()
        raise
    stopping = asyncio.create_task(served.stop(signal.SIGTERM))  # one signal, once
    closed = await alice.closed()
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1001, "server shutting down")
    assert await stopping == 0
    assert not any("Traceback" in line for line in served.log)


async def test_tls_serves_https_and_wss(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "c.pem"))
    served = await start_sockhub("chat", "--port", "0", "--web-port", "0",
                                 "--data-dir", str(tmp_path), "--tls-cert",
                                 str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "c.pem"),
                                 listeners=4)  # chat and web, each plain and TLS
    try:
        assert any("(web, tls)" in line for line in served.log)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        client = Web(await connect(f"wss://127.0.0.1:{served.ports['web, tls']}/ws", ssl=context,
                                   open_timeout=STEP))
        await client.send(type="hello", version=1, nick="secure")
        await client.expect(type="welcome", nick="secure")
        await client.ws.close()
    finally:
        await served.stop()


async def test_json_and_line_users_share_rooms_when_the_line_user_arrives_later(web):
    ports = await web()
    alice = await web_client(ports["web"], "alice", "#lobby")
    line = LineClient(*await open_client(ports["chat"]))
    await line.expect("enter a nick")
    await line.send("lina")
    await alice.expect(type="joined", nick="lina")
    await line.send("hey web")
    await alice.expect(type="message", nick="lina", text="hey web")
    await alice.ws.close()
    line.close()


async def test_a_reload_takes_new_web_origins_and_refuses_a_new_web_port(serve, tmp_path):
    options = {"data_dir": str(tmp_path), "web_port": 0}
    servers = {s.name: s for s in await serve("chat", options=options)}
    port, runtime = servers["web"].ports[0], servers["web"].runtime
    with pytest.raises(InvalidStatus):
        await web_client(port, origin="https://new.example")
    changed = runtime.reload(ServiceConfig(service="chat", port=0, options={
        **options, "web_origin": ["https://new.example"]}), Limits())
    assert changed == ["web origin"]
    client = await web_client(port, "late", origin="https://new.example")
    await client.ws.close()
    with pytest.raises(ConfigError, match="web_port"):
        runtime.reload(ServiceConfig(service="chat", port=0, options={**options,
                                                                      "web_port": 1234}),
                       Limits())


async def test_a_browser_that_never_reads_is_dropped_like_at_every_door(serve, tmp_path):
    servers = {s.name: s for s in await serve(
        "chat", options={"data_dir": str(tmp_path), "web_port": 0, "flood_rate": None},
        write_high_water=8 * 1024, max_conns_per_ip=None)}
    alice = await chat_client(servers["chat"].ports[0], "alice")
    slow = await web_client(servers["web"].ports[0], "slowweb", "#lobby")
    await alice.expect("slowweb joined")
    slow.ws.transport.pause_reading()  # from now on it never reads
    payload = "z" * 3900
    # Far more than the kernel's socket buffers hold: the server's own buffer
    # for the slow browser must pass write_buffer_max.
    for i in range(5000):
        await alice.send(f"{i} {payload}")
        await alice.expect(f"<alice> {i} ")
        if any("slowweb quit" in seen for seen in alice.seen):
            break
    assert any("* slowweb quit (connection lost)" in seen for seen in alice.seen), i
    alice.close()
    slow.ws.transport.abort()


async def test_a_peer_that_stops_answering_in_a_busy_room_is_closed_and_leaves(web):
    # Output queued to a client is no sign it reads (review of issue 16's fix):
    # with steady room traffic, too little to back its output up, a peer whose
    # pongs never come is closed for "ping timeout" while the traffic goes on,
    # and leaves the room. (A backlog's evidence: test_web_fanout.py.)
    ports = await web(web_ping_interval=0.2, web_ping_timeout=0.2, flood_rate=None)
    alice = await chat_client(ports["chat"], "alice")
    reader, writer = await open_client(ports["web"])
    bob = ClientProtocol(parse_uri("ws://127.0.0.1/ws"))  # sans-I/O: its pongs are dropped
    bob.send_request(bob.connect())
    writer.write(b"".join(bob.data_to_send()))
    for obj in ({"type": "hello", "version": 1, "nick": "bob"}, {"type": "join", "room": "#lobby"}):
        writer.write(Frame(Opcode.TEXT, json.dumps(obj).encode()).serialize(mask=True))
    frames: list[Frame] = []
    pings = 0

    async def until(match: Callable[[Frame], bool]) -> Frame:
        """Read until a frame matches; the frames before it are passed over."""
        nonlocal pings
        while True:
            while frames:
                frame = frames.pop(0)
                if match(frame):
                    return frame
            data = await asyncio.wait_for(reader.read(65536), STEP)
            assert data, "closed"
            bob.receive_data(data)
            for event in bob.events_received():
                if isinstance(event, Frame):
                    frames.append(event)
                    pings += event.opcode is Opcode.PING
            bob.data_to_send()  # never answered

    await until(lambda f: f.opcode is Opcode.TEXT and b'"type":"history"' in f.data)
    # A tick at a time, each read by bob: the traffic goes on until bob is closed
    # (ten seconds is fifty ping timeouts: before the fix it was never closed).
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    sent = 0
    close = None
    while close is None:
        assert loop.time() < end, f"still open after {sent} ticks"
        await alice.send(f"tick {sent}")
        tick = f'"text":"tick {sent}"'.encode()
        frame = await until(lambda f, tick=tick: f.opcode is Opcode.CLOSE or tick in f.data)
        if frame.opcode is Opcode.CLOSE:
            close = frame
        sent += 1
    assert int.from_bytes(close.data[:2], "big") == 1001 and close.data[2:] == b"ping timeout"
    assert pings == 1  # pinged once, never answered
    await alice.expect("* bob quit (connection lost)")
    writer.close()
    alice.close()
