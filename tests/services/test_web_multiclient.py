"""Multiclient on the web door (docs/accounts.md, "One person, several connections").

Real sockets on loopback, the ``websockets`` client as the page: a page whose
session cookie logs it in to ``alice`` joins the user an IRC connection (SASL)
or another page of that account already holds, instead of being refused.
Others see one JOIN and one QUIT; closing a page tells no one.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from net import STEP, LineClient, irc_client, open_client, sasl_client
from services.test_web_accounts import cookie_of, http


@pytest.fixture
async def chat(serve, tmp_path):
    """The chat service with the IRC and web doors: its ports by door name."""

    async def start(**options: Any) -> dict[str, int]:
        settings = {"data_dir": str(tmp_path), "web_port": 0, "irc_port": 0,
                    "flood_rate": None, "account_delay": 0.05, "account_delay_max": 0.2,
                    **options}
        servers = await serve("chat", options=settings)
        return {server.name: server.ports[0] for server in servers}

    return start




async def page(port: int, cookie: str, nick: str | None = None) -> tuple[ClientConnection, Any]:
    """A page with the login cookie: the socket and its ``welcome``."""
    ws = await connect(f"ws://127.0.0.1:{port}/ws", open_timeout=STEP,
                       additional_headers={"Cookie": cookie})
    hello: dict[str, Any] = {"type": "hello", "version": 1}
    if nick is not None:
        hello["nick"] = nick
    await ws.send(json.dumps(hello))
    return ws, await until(ws, "welcome", "error")


async def until(ws: ClientConnection, *kinds: str) -> Any:
    """The next server message of one of these types (the others are skipped)."""
    while True:
        obj = json.loads(await asyncio.wait_for(ws.recv(), STEP))
        if obj["type"] in kinds:
            return obj


async def names(client: LineClient, room: str = "#lobby") -> list[str]:
    await client.send(f"NAMES {room}\r\n".encode())
    line = await client.expect(" 353 ")
    return sorted(line.rsplit(":", 1)[1].split())


async def no_join_or_quit(client: LineClient, tag: str) -> None:
    """Nothing but the PONG: no JOIN nor QUIT was sent before it."""
    await client.send(f"PING :{tag}\r\n".encode())
    line = await client.expect(tag)
    assert " JOIN " not in line and " QUIT " not in line


async def test_a_page_and_an_irc_connection_of_one_account_share_one_presence(chat):
    ports = await chat()
    _, headers, _ = await http(ports["web"], "POST", "/register",
                               {"account": "alice", "password": "hunter22"})
    cookie = cookie_of(headers)
    watcher = await irc_client(ports["irc"], "watcher", "#lobby")
    alice_irc = await sasl_client(ports["irc"])
    await alice_irc.send(b"JOIN #lobby\r\n")
    await alice_irc.expect(" 366 ")
    assert (await watcher.expect(" JOIN ")).startswith(":alice!")
    await watcher.send(b"PRIVMSG #lobby :before the page\r\n")
    await alice_irc.expect(":before the page")

    # The page arrives as alice (not refused, not renamed), already in #lobby,
    # and is sent the room as a join would bring it.
    ws, welcome = await page(ports["web"], cookie)
    assert welcome["type"] == "welcome", welcome
    assert (welcome["nick"], welcome["account"]) == ("alice", "alice")
    assert welcome["rooms"] == ["#lobby"]
    joined = await until(ws, "joined")
    assert (joined["room"], joined["nick"]) == ("#lobby", "alice") and "re" not in joined
    members = await until(ws, "members")
    assert [m["nick"] for m in members["members"]] == ["alice", "watcher"]
    history = await until(ws, "history")
    assert history["room"] == "#lobby" and "re" not in history
    assert [m["text"] for m in history["messages"]] == ["before the page"]
    await no_join_or_quit(watcher, "after-attach")
    assert await names(watcher) == ["alice", "watcher"]

    # Room and private messages reach both connections.
    await watcher.send(b"PRIVMSG #lobby :hello room\r\nPRIVMSG alice :psst\r\n")
    await alice_irc.expect("PRIVMSG #lobby :hello room")
    await alice_irc.expect("PRIVMSG alice :psst")
    got = await until(ws, "message")
    assert (got["nick"], got["text"]) == ("watcher", "hello room")
    got = await until(ws, "private")
    assert (got["from"], got["to"], got["text"]) == ("watcher", "alice", "psst")

    # What one says, the other shows as alice's own.
    await alice_irc.send(b"PRIVMSG #lobby :from irc\r\nPRIVMSG watcher :pm from irc\r\n")
    got = await until(ws, "message")
    assert (got["nick"], got["text"]) == ("alice", "from irc")
    got = await until(ws, "private")
    assert (got["from"], got["to"], got["text"]) == ("alice", "watcher", "pm from irc")
    await ws.send(json.dumps({"type": "say", "room": "#lobby", "text": "from the page"}))
    assert (await alice_irc.expect(":from the page")).startswith(":alice!alice@")
    assert (await until(ws, "message"))["text"] == "from the page"  # the page's own ack
    await ws.send(json.dumps({"type": "private", "to": "watcher", "text": "pm from page"}))
    assert (await alice_irc.expect("pm from page")).endswith("PRIVMSG watcher :pm from page")
    for text in (":from irc", ":pm from irc", ":from the page", ":pm from page"):
        await watcher.expect(text)

    # A join on either side is the person's: the other is shown it.
    await ws.send(json.dumps({"type": "join", "room": "#side", "id": "j"}))
    await alice_irc.expect(" JOIN #side")
    await alice_irc.expect(" 366 alice #side ")
    assert (await until(ws, "history"))["re"] == "j"
    await alice_irc.send(b"JOIN #other\r\n")
    joined = await until(ws, "joined")
    assert (joined["room"], joined["nick"]) == ("#other", "alice")
    assert (await until(ws, "members"))["room"] == "#other"
    assert (await until(ws, "history"))["room"] == "#other"
    await alice_irc.send(b"PART #side\r\n")
    parted = await until(ws, "parted")
    assert (parted["room"], parted["nick"]) == ("#side", "alice")

    # The page closes: alice stays (no QUIT), and IRC still gets her messages.
    await ws.close()
    await no_join_or_quit(watcher, "after-close")
    assert await names(watcher) == ["alice", "watcher"]
    await watcher.send(b"PRIVMSG alice :still there\r\n")
    await alice_irc.expect(":still there")
    # The last connection leaves: one QUIT.
    await alice_irc.send(b"QUIT :bye\r\n")
    assert (await watcher.expect(" QUIT ")).startswith(":alice!")
    watcher.close()


async def test_two_pages_of_one_account_are_one_person(chat):
    ports = await chat()
    _, headers, _ = await http(ports["web"], "POST", "/register",
                               {"account": "alice", "password": "hunter22"})
    cookie = cookie_of(headers)
    watcher = await irc_client(ports["irc"], "watcher", "#lobby")
    first, welcome = await page(ports["web"], cookie)
    assert welcome["nick"] == "alice"
    await first.send(json.dumps({"type": "join", "room": "#lobby"}))
    await until(first, "history")
    assert (await watcher.expect(" JOIN ")).startswith(":alice!")

    second, welcome = await page(ports["web"], cookie)  # the phone, or another tab
    assert (welcome["nick"], welcome["rooms"]) == ("alice", ["#lobby"])
    await until(second, "history")
    # The page's own join of a room it is in already: refused, harmlessly.
    await second.send(json.dumps({"type": "join", "room": "#lobby", "id": 2}))
    error = await until(second, "error")
    assert (error["code"], error["re"]) == ("already_in_room", 2)

    await second.send(json.dumps({"type": "say", "room": "#lobby", "text": "from tab two"}))
    got = await until(first, "message")
    assert (got["nick"], got["text"]) == ("alice", "from tab two")
    await watcher.expect(":from tab two")

    await first.close()
    await no_join_or_quit(watcher, "one-tab-left")
    await watcher.send(b"PRIVMSG #lobby :to the last tab\r\n")
    while (got := await until(second, "message"))["text"] != "to the last tab":
        assert got["text"] == "from tab two"  # its own, acknowledged
    await second.close()
    assert (await watcher.expect(" QUIT ")).startswith(":alice!")
    watcher.close()


async def test_with_multiclient_off_a_held_nick_is_refused_to_the_page(chat):
    ports = await chat(multiclient="off")
    _, headers, _ = await http(ports["web"], "POST", "/register",
                               {"account": "alice", "password": "hunter22"})
    cookie = cookie_of(headers)
    first, welcome = await page(ports["web"], cookie)
    assert welcome["nick"] == "alice"
    second, answer = await page(ports["web"], cookie)
    assert (answer["type"], answer["code"]) == ("error", "nick_in_use")
    await second.close()
    await first.close()


async def test_a_page_not_logged_in_to_the_account_does_not_attach(chat):
    ports = await chat()
    _, headers, _ = await http(ports["web"], "POST", "/register",
                               {"account": "alice", "password": "hunter22"})
    alice_irc = await sasl_client(ports["irc"])
    # A guest page asking for the nick, and another account's page: both refused.
    async with connect(f"ws://127.0.0.1:{ports['web']}/ws", open_timeout=STEP) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "nick": "alice"}))
        assert (await until(ws, "error"))["code"] == "nick_in_use"
    _, headers, _ = await http(ports["web"], "POST", "/register",
                               {"account": "mallory", "password": "hunter22"})
    ws, answer = await page(ports["web"], cookie_of(headers), nick="alice")
    assert answer["code"] == "nick_in_use"
    await ws.close()
    await no_join_or_quit(alice_irc, "alone")
    alice_irc.close()



def pipelined(nick: str, password: str) -> bytes:
    """A whole registration with SASL PLAIN in one write, not waiting for any answer."""
    payload = base64.b64encode(f"\0{nick}\0{password}".encode()).decode()
    return (f"CAP LS 302\r\nCAP REQ :sasl\r\nAUTHENTICATE PLAIN\r\nAUTHENTICATE {payload}\r\n"
            f"NICK {nick}\r\nUSER {nick} 0 * {nick}\r\nCAP END\r\n").encode()


async def test_irc_sasl_sent_with_cap_end_at_once_registers_after_the_verdict(chat):
    """A client that sends its SASL answer and ``CAP END`` together (irctest's
    bouncer tests do) registers once the verdict is told, in the order sent:
    logged in, it joins the page's alice; wrong, it is told 904 before 001."""
    ports = await chat()
    _, headers, _ = await http(ports["web"], "POST", "/register",
                               {"account": "alice", "password": "hunter22"})
    ws, welcome = await page(ports["web"], cookie_of(headers))
    assert welcome["nick"] == "alice"
    await ws.send(json.dumps({"type": "join", "room": "#lobby"}))
    await until(ws, "history")

    client = LineClient(*await open_client(ports["irc"]))
    await client.send(pipelined("alice", "hunter22"))
    assert (await client.expect(" 001 ")).split()[2] == "alice"
    assert [line.split()[1] for line in client.seen if line.split()[1] in ("903", "001")] == [
        "903", "001"]
    await client.expect(" JOIN #lobby")  # the person's rooms, as attaching shows them
    await client.send(b"PRIVMSG #lobby :from pipelined irc\r\n")
    got = await until(ws, "message")
    assert (got["nick"], got["text"]) == ("alice", "from pipelined irc")

    wrong = LineClient(*await open_client(ports["irc"]))
    await wrong.send(pipelined("bob", "not-the-password"))
    await wrong.expect(" 001 ")
    assert [line.split()[1] for line in wrong.seen if line.split()[1] in ("904", "001")] == [
        "904", "001"]
    wrong.close()
    # It leaves, alone: it is shown its own QUIT (as Ergo does), the page stays.
    await client.send(b"QUIT :irc out\r\n")
    assert (await client.expect(" QUIT ")).startswith(":alice!alice@")
    await client.expect("ERROR :Closing Link")
    await ws.send(json.dumps({"type": "members", "room": "#lobby"}))
    assert [m["nick"] for m in (await until(ws, "members"))["members"]] == ["alice"]
    await ws.close()
