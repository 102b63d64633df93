"""The chat page's login over real sockets: POST /login, /register, /logout, GET /session,
the session cookie's attributes, bad and expired tokens, cross-site requests, a wrong
password told late by the accounts limiter, and the WebSocket arriving logged in."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import ssl
import time
from typing import Any

import h11
import pytest
import trustme
from websockets.asyncio.client import connect

from net import STEP, chat_client, open_client
from proc import start_sockhub


@pytest.fixture
async def web(serve, tmp_path):
    """The chat service with the web door; returns its web port."""

    async def start(**options):
        settings = {"data_dir": str(tmp_path), "web_port": 0, "flood_rate": None,
                    "account_delay": 0.3, "account_delay_max": 1.0, **options}
        servers = await serve("chat", options=settings)
        return {server.name: server.ports[0] for server in servers}

    return start


async def http(port: int, method: str, path: str, body: Any = None, *,
               headers: dict[str, str] | None = None, tls: ssl.SSLContext | None = None,
               ) -> tuple[int, dict[str, list[str]], Any]:
    """One request on a new connection; the status, headers (lower-case, every value), body."""
    if tls is None:
        reader, writer = await open_client(port)
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else (
        body or b"")
    origin = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    sent = {"Host": f"127.0.0.1:{port}", "Origin": origin,
            "Content-Type": "application/json", **(headers or {})}
    sent = {k: v for k, v in sent.items() if v is not None}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in sent.items())
    if method == "POST":
        head += f"Content-Length: {len(data)}\r\n"
    writer.write(head.encode() + b"\r\n" + data)
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target=path, headers=[("Host", "x")]))
    response, content = None, b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await asyncio.wait_for(reader.read(65536), STEP))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                content += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
    finally:
        writer.close()
    assert response is not None
    got: dict[str, list[str]] = {}
    for key, value in response.headers:
        got.setdefault(key.decode(), []).append(value.decode())
    return response.status_code, got, json.loads(content) if content.startswith(b"{") else content


def cookie_of(headers: dict[str, list[str]]) -> str:
    [value] = headers["set-cookie"]
    return value.split(";")[0]


async def test_register_sets_an_httponly_strict_cookie_and_the_websocket_arrives_logged_in(web):
    port = (await web())["web"]
    status, headers, body = await http(port, "POST", "/register",
                                       {"account": "alice", "password": "hunter22"})
    assert status == 200 and body == {"account": "alice"}
    [cookie] = headers["set-cookie"]
    name_value, *attributes = [part.strip() for part in cookie.split(";")]
    name, _, token = name_value.partition("=")
    assert name == "sockhub_session" and len(token) >= 40
    assert set(attributes) == {"Max-Age=2592000", "Path=/", "HttpOnly", "SameSite=Strict"}
    assert token not in json.dumps(body)  # in the cookie only, never in what a script reads

    status, _, body = await http(port, "GET", "/session", headers={"Cookie": name_value})
    assert (status, body) == (200, {"account": "alice", "accounts": "open"})
    status, _, body = await http(port, "GET", "/session")
    assert (status, body) == (200, {"account": None, "accounts": "open"})

    async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=STEP,
                       additional_headers={"Cookie": name_value}) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1}))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), STEP))
        assert welcome["nick"] == "alice" and welcome["account"] == "alice"


async def test_bad_expired_and_revoked_tokens_are_nobody(web, tmp_path):
    port = (await web())["web"]
    _, headers, _ = await http(port, "POST", "/register",
                               {"account": "alice", "password": "hunter22"})
    cookie = cookie_of(headers)
    token = cookie.partition("=")[2]
    for bad in ("sockhub_session=" + "A" * 43, "sockhub_session=", "other=" + token):
        _, _, body = await http(port, "GET", "/session", headers={"Cookie": bad})
        assert body["account"] is None, bad
    # Only a hash of the token is on disk, not the token.
    db = sqlite3.connect(tmp_path / "chat.sqlite3")
    [(stored,)] = db.execute("SELECT token_hash FROM web_sessions").fetchall()
    assert stored == hashlib.sha256(token.encode()).digest()
    assert token.encode() not in (tmp_path / "chat.sqlite3").read_bytes()
    # Expired: the same token, its time run out.
    db.execute("UPDATE web_sessions SET expires = ?", (time.time() - 1,))
    db.commit()
    _, _, body = await http(port, "GET", "/session", headers={"Cookie": cookie})
    assert body["account"] is None
    db.execute("UPDATE web_sessions SET expires = ?", (time.time() + 60,))
    db.commit()
    db.close()
    _, _, body = await http(port, "GET", "/session", headers={"Cookie": cookie})
    assert body["account"] == "alice"
    # Logging out revokes it: the cookie is cleared, and the old value no longer works.
    status, headers, _ = await http(port, "POST", "/logout", {}, headers={"Cookie": cookie})
    assert status == 200 and headers["set-cookie"][0].startswith("sockhub_session=; Max-Age=0;")
    _, _, body = await http(port, "GET", "/session", headers={"Cookie": cookie})
    assert body["account"] is None
    async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=STEP,
                       additional_headers={"Cookie": cookie}) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "nick": "someone"}))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), STEP))
        assert welcome["account"] is None


async def test_a_wrong_password_is_told_late_and_the_right_one_at_once(web):
    ports = await web()
    port = ports["web"]
    await http(port, "POST", "/register", {"account": "alice", "password": "hunter22"})
    loop = asyncio.get_running_loop()
    start = loop.time()
    status, headers, body = await http(port, "POST", "/login",
                                       {"account": "alice", "password": "wrong-one"})
    assert status == 401 and "set-cookie" not in headers
    assert body == {"error": "wrong account name or password"}
    assert loop.time() - start >= 0.3  # account_delay
    # An unknown account reads the same, and the owner still gets in (never
    # refused nor delayed for others' failures; its time is scrypt's own).
    status, _, body = await http(port, "POST", "/login",
                                 {"account": "nobody", "password": "whatever1"})
    assert (status, body) == (401, {"error": "wrong account name or password"})
    status, headers, body = await http(port, "POST", "/login",
                                       {"account": "ALICE", "password": "hunter22"})
    assert (status, body) == (200, {"account": "alice"}) and headers["set-cookie"]


async def test_the_limiter_refuses_guesses_past_four_pending_from_one_address(web):
    port = (await web(account_delay=2.0, account_delay_max=2.0))["web"]
    # Six at once: each wrong guess holds one of the address's four slots until
    # it is told (2 s), so two are refused at once, whichever they are.
    answers = await asyncio.gather(*(
        http(port, "POST", "/login", {"account": "alice", "password": f"guess-{i}"})
        for i in range(6)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [401, 401, 401, 401, 429, 429]
    assert all("too many" in body["error"] for status, _, body in answers if status == 429)


async def test_cross_site_and_malformed_account_requests_are_refused(web):
    port = (await web())["web"]
    creds = {"account": "alice", "password": "hunter22"}
    status, _, _ = await http(port, "POST", "/register", creds,
                              headers={"Origin": "http://evil.example"})
    assert status == 403
    status, _, _ = await http(port, "POST", "/register", creds, headers={"Origin": None})
    assert status == 403
    status, _, _ = await http(port, "POST", "/register", creds,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415
    status, _, body = await http(port, "POST", "/login", b"account=alice&password=x")
    assert status == 400 and "JSON" in body["error"]
    status, _, body = await http(port, "POST", "/login", {"account": "alice"})
    assert status == 400 and "password" in body["error"]
    status, _, _ = await http(port, "GET", "/login")
    assert status == 405
    status, _, _ = await http(port, "POST", "/login", b"{" + b" " * 5000 + b"}")
    assert status == 413
    status, _, body = await http(port, "POST", "/register", {"account": "bad nick!",
                                                             "password": "hunter22"})
    assert status == 400 and body["code"] == "account_invalid"


async def test_registration_off_is_refused_on_the_page_too(web):
    port = (await web(accounts="off"))["web"]
    status, _, body = await http(port, "POST", "/register",
                                 {"account": "alice", "password": "hunter22"})
    assert status == 403 and body["code"] == "account_disabled"
    _, _, body = await http(port, "GET", "/session")
    assert body["accounts"] == "off"


async def test_an_owned_nick_taken_on_the_page_is_renamed_after_the_grace(web):
    ports = await web(nick_grace=0.5)
    owner = await chat_client(ports["chat"], "alice")
    await owner.send("/register hunter22")
    await owner.expect("you are logged in")
    await owner.send("/quit")
    await owner.expect_eof()
    async with connect(f"ws://127.0.0.1:{ports['web']}/ws", open_timeout=STEP) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "nick": "alice"}))
        seen = []
        while not any(m.get("type") == "nick" for m in seen):
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), STEP)))
        notices = [m["text"] for m in seen if m["type"] == "notice"]
        assert "belongs to account alice" in notices[0]
        renamed = next(m for m in seen if m["type"] == "nick")
        assert renamed["old"] == "alice" and renamed["new"].startswith("guest-")


async def test_over_tls_the_cookie_is_secure(tmp_path):
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "c.pem"))
    served = await start_sockhub("chat", "--port", "0", "--web-port", "0",
                                 "--data-dir", str(tmp_path), "--tls-cert",
                                 str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "c.pem"),
                                 listeners=4)
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        status, headers, _ = await http(served.ports["web, tls"], "POST", "/register",
                                        {"account": "alice", "password": "hunter22"},
                                        tls=context)
        assert status == 200
        assert headers["set-cookie"][0].endswith("; HttpOnly; SameSite=Strict; Secure")
        # The plain page's origin is not the TLS page's: a cross-scheme POST is refused.
        status, _, _ = await http(served.ports["web, tls"], "POST", "/login",
                                  {"account": "alice", "password": "hunter22"}, tls=context,
                                  headers={"Origin": f"http://127.0.0.1:{served.ports['web']}"})
        assert status == 403
    finally:
        await served.stop()


async def test_the_page_reads_back_its_account_s_private_conversations(web):
    ports = await web()
    _, headers, _ = await http(ports["web"], "POST", "/register",
                               {"account": "alice", "password": "hunter22"})
    cookie = cookie_of(headers)
    bob = await chat_client(ports["chat"], "bob")
    await bob.send("/register swordfish9")
    await bob.expect("you are logged in")

    async def page() -> Any:
        ws = await connect(f"ws://127.0.0.1:{ports['web']}/ws", open_timeout=STEP,
                           additional_headers={"Cookie": cookie})
        await ws.send(json.dumps({"type": "hello", "version": 1}))
        assert json.loads(await asyncio.wait_for(ws.recv(), STEP))["account"] == "alice"
        return ws

    async def answer(ws: Any, kind: str) -> dict[str, Any]:
        while True:
            obj = json.loads(await asyncio.wait_for(ws.recv(), STEP))
            if obj["type"] == kind:
                return obj

    ws = await page()
    await ws.send(json.dumps({"type": "private", "to": "bob", "text": "hello bob"}))
    sent = await answer(ws, "private")
    assert isinstance(sent["id"], int)  # kept: it has its history id
    await bob.expect("hello bob")
    await bob.send("/msg alice hi alice")
    assert (await answer(ws, "private"))["text"] == "hi alice"
    await ws.close()

    ws = await page()  # another device, or a reload
    await ws.send(json.dumps({"type": "conversations", "id": 1}))
    listed = await answer(ws, "conversations")
    assert [c["with"] for c in listed["conversations"]] == ["bob"]
    await ws.send(json.dumps({"type": "history", "with": "BOB", "limit": 1}))
    got = await answer(ws, "history")
    assert [m["text"] for m in got["messages"]] == ["hi alice"] and got["more"] is True
    await ws.send(json.dumps({"type": "history", "with": "bob",
                              "before": got["messages"][0]["id"]}))
    got = await answer(ws, "history")
    assert [(m["from"], m["to"], m["text"]) for m in got["messages"]] == [
        ("alice", "bob", "hello bob")]
    assert got["messages"][0]["id"] == sent["id"] and got["more"] is False
    await ws.close()
    bob.close()


async def test_registering_on_the_page_hashes_off_the_loop(web, monkeypatch):
    from test_accounts_offloop import Gates

    from sockhub.services import accounts as accounts_module

    hashing = Gates(monkeypatch, accounts_module, "hash_password")
    started, release = hashing.arm()
    port = (await web())["web"]
    try:
        registering = asyncio.create_task(
            http(port, "POST", "/register", {"account": "alice", "password": "hunter22"}))
        assert await asyncio.to_thread(started.wait, 5), "the hash never started"
        # The loop is free meanwhile: another request is answered.
        status, _, body = await http(port, "GET", "/session")
        assert (status, body) == (200, {"account": None, "accounts": "open"})
        assert not registering.done()
        assert hashing.threads[0].startswith("sockhub-scrypt")
    finally:
        release.set()
    status, headers, body = await registering
    assert status == 200 and body == {"account": "alice"} and cookie_of(headers)


async def test_a_password_change_elsewhere_ends_the_page_s_session(web):
    ports = await web()
    status, headers, _ = await http(ports["web"], "POST", "/register",
                                    {"account": "alice", "password": "hunter22"})
    assert status == 200
    cookie = cookie_of(headers)
    _, _, body = await http(ports["web"], "GET", "/session", headers={"Cookie": cookie})
    assert body["account"] == "alice"
    line = await chat_client(ports["chat"], "alice2")
    await line.send("/identify alice hunter22")
    await line.expect("logged in as alice")
    await line.send("/password hunter22 correct-horse")
    await line.expect("the password of alice is changed")
    _, _, body = await http(ports["web"], "GET", "/session", headers={"Cookie": cookie})
    assert body["account"] is None  # the old password's session is over
    line.close()
