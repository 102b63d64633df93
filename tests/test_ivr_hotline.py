"""The hotline over real sockets: callers on the ivr door, operators on the line and IRC doors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.net import LineClient, chat_client, irc_client, open_client

from sockhub.services.chat import ChatService

MAIN = "欢迎致电 10086"
CONNECTED = "已为您接通人工服务"
NO_OPERATOR = "目前没有空闲的人工客服"


async def hotline(serve: Any, tmp_path: Path, **options: Any) -> tuple[dict[str, int], ChatService]:
    """``sockhub serve ivr`` in this process: ports by listener name, and the chat service."""
    settings = {"data_dir": str(tmp_path), "line_port": 0, "irc_port": 0, "flood_rate": "none",
                **options}
    servers = await serve("ivr", options=settings)
    service = servers[0].runtime
    assert isinstance(service, ChatService)
    return {server.name: server.ports[0] for server in servers}, service


async def caller(port: int) -> LineClient:
    client = LineClient(*await open_client(port))
    await client.expect(MAIN)
    return client


async def line_operator(port: int, nick: str) -> LineClient:
    client = await chat_client(port, nick)
    await client.send("/join #support")
    await client.expect(f"#support * {nick} joined")
    return client


async def test_walking_the_default_menu_by_keys_over_a_socket(serve: Any, tmp_path: Path) -> None:
    ports, _ = await hotline(serve, tmp_path)
    assert set(ports) == {"ivr", "chat", "irc"}
    client = await caller(ports["ivr"])
    await client.send(b"1")                      # the seed's client: a key, no newline
    await client.send(b"#")                      # ends the entry (1 could grow into 1xxx)
    await client.expect("话费查询:")
    await client.send(b"1")
    await client.expect("您的话费余额为 58.20 元。")
    await client.send("*\r\n")                   # telnet-style Enter after the key
    await client.expect(MAIN)
    await client.send("1088\n")                  # a 4-digit service code
    await client.expect("业务代码是 1088")
    await client.send("exit\n")
    await client.expect("感谢您的来电")
    assert await client.expect_eof() == []


async def test_telnet_negotiation_is_refused_and_stripped(serve: Any, tmp_path: Path) -> None:
    ports, _ = await hotline(serve, tmp_path)
    client = LineClient(*await open_client(ports["ivr"]))
    # What a telnet client opens with: DO SGA, WILL TTYPE, WILL NAWS and its subnegotiation.
    client.writer.write(b"\xff\xfd\x03\xff\xfb\x18\xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0")
    client.writer.write(b"2\r\x00")
    await client.writer.drain()
    data = b""
    while "剩余 6.8GB".encode() not in data:
        chunk = await asyncio.wait_for(client.reader.read(4096), 5)
        assert chunk, data
        data += chunk
    refusals = b"\xff\xfc\x03\xff\xfe\x18\xff\xfe\x1f"
    assert refusals in data
    menu = data.replace(refusals, b"")
    assert b"\xff" not in menu and "输入有误".encode() not in menu
    assert "流量查询" in menu.decode("utf-8")  # the rest is clean UTF-8, Chinese intact
    client.close()


async def test_timeout_then_hang_up(serve: Any, tmp_path: Path) -> None:
    ports, _ = await hotline(serve, tmp_path, ivr_timeout=0.3, ivr_max_timeouts=2)
    client = await caller(ports["ivr"])
    await client.expect("您没有按键", timeout=5)
    await client.expect(MAIN, timeout=5)
    await client.expect("感谢您的来电", timeout=5)
    assert await client.expect_eof() == []


async def test_bad_keys_hang_up_at_the_failure_limit(serve: Any, tmp_path: Path) -> None:
    ports, _ = await hotline(serve, tmp_path, ivr_max_failures=2)
    client = await caller(ports["ivr"])
    await client.send(b"7")
    await client.expect("输入有误")
    await client.send(b"8")
    await client.expect("输入错误次数过多")
    assert await client.expect_eof() == []


async def test_hand_off_to_a_line_operator_and_an_irc_operator_both_ways(
    serve: Any, tmp_path: Path
) -> None:
    ports, service = await hotline(serve, tmp_path)
    alice = await line_operator(ports["chat"], "alice")
    bob = await irc_client(ports["irc"], "bob", "#support")
    client = await caller(ports["ivr"])
    await client.send(b"1")
    await client.send(b"#")
    await client.expect("话费查询:")
    await client.send(b"0")
    await client.expect(CONNECTED)
    told = "caller caller-1 is waiting (menu: 主菜单 1 > 话费查询 0); place 1 in the queue"
    assert "<hotline> " + told in await alice.expect("is waiting")
    assert f":{told}" in await bob.expect("is waiting")
    assert "you are talking with caller-1" in await alice.expect("talking with")

    await client.send("你好, my bill is wrong \x1b[2J\x07\n")
    said = await alice.expect("<caller-1>")
    assert "你好, my bill is wrong" in said and "\x1b" not in said and "\x07" not in said
    heard = await bob.expect("PRIVMSG #support :你好")
    assert heard.startswith(":caller-1!") and "\x1b" not in heard and "\x07" not in heard

    await alice.send("Let me look, one moment.")
    await client.expect("alice: Let me look, one moment.")
    await bob.send("PRIVMSG #support :Found it: a refund is on its way.\r\n")
    await client.expect("bob: Found it: a refund is on its way.")

    await client.send("/quit\n")
    await client.expect_eof()
    await alice.expect("caller caller-1 hung up; 0 in the queue")
    await bob.expect("caller caller-1 hung up")
    texts = [m.text for m in service.history("#support", 50)]
    assert "你好, my bill is wrong " in texts  # control codes dropped on the way in
    assert "Let me look, one moment." in texts and "Found it: a refund is on its way." in texts
    for c in (alice, bob):
        c.close()


async def test_two_callers_queue_in_order_and_move_up(serve: Any, tmp_path: Path) -> None:
    ports, _ = await hotline(serve, tmp_path)
    alice = await line_operator(ports["chat"], "alice")
    first, second = await caller(ports["ivr"]), await caller(ports["ivr"])
    await first.send(b"0")
    await first.expect(CONNECTED)
    await alice.expect("caller caller-1 is waiting")
    await second.send(b"0")
    await second.expect("您排在第 2 位")
    await alice.expect("caller caller-2 is waiting (menu: 主菜单 0); place 2 in the queue")
    await second.send("hello?\n")                  # not connected yet: told its place again
    await second.expect("您排在第 2 位")
    await first.send("thanks, bye\n")
    await alice.expect("<caller-1> thanks, bye")
    await alice.send("!next")                      # the operator ends the first call
    await first.expect("客服已结束本次通话")
    await first.expect(MAIN)                       # back in the menu, still connected
    assert not any("!next" in line or "hotline:" in line for line in first.seen)
    await alice.expect("caller caller-1 call ended by alice; 1 in the queue")
    await second.expect(CONNECTED)
    await alice.expect("you are talking with caller-2")
    await second.send("hi, second caller here\n")
    await alice.expect("<caller-2> hi, second caller here")
    assert all("hello?" not in line for line in alice.seen)
    for c in (alice, first, second):
        c.close()


async def test_a_caller_hanging_up_mid_queue_is_announced_and_the_rest_move_up(
    serve: Any, tmp_path: Path
) -> None:
    ports, _ = await hotline(serve, tmp_path)
    bob = await irc_client(ports["irc"], "bob", "#support")
    callers = []
    for n in (1, 2, 3):
        c = await caller(ports["ivr"])
        await c.send(b"0")
        await c.expect(CONNECTED if n == 1 else f"您排在第 {n} 位")
        await bob.expect(f"caller caller-{n} is waiting")
        callers.append(c)
    callers[1].close()                              # the second hangs up while waiting
    await bob.expect("caller caller-2 hung up while waiting; 2 in the queue")
    await callers[2].expect("您排在第 2 位")
    await callers[0].send("still here\n")
    await bob.expect("PRIVMSG #support :still here")
    for c in (bob, callers[0], callers[2]):
        c.close()


async def test_no_operator_the_caller_is_told_and_can_go_back(serve: Any, tmp_path: Path) -> None:
    ports, _ = await hotline(serve, tmp_path)
    client = await caller(ports["ivr"])
    await client.send(b"0")
    await client.expect(NO_OPERATOR)
    await client.expect(CONNECTED)
    await client.send("*\n")
    await client.expect("返回菜单")
    await client.expect(MAIN)
    await client.send(b"2")
    await client.expect("剩余 6.8GB")
    # An operator arriving later finds the caller who waits.
    await client.send(b"0")
    await client.expect(CONNECTED)
    alice = await line_operator(ports["chat"], "alice")
    await alice.expect("1 in the queue; talking now: caller-1")
    await client.expect("客服 alice 为您服务")
    for c in (alice, client):
        c.close()


async def test_a_flooding_caller_is_warned_then_hung_up_and_the_room_goes_on(
    serve: Any, tmp_path: Path
) -> None:
    ports, _ = await hotline(serve, tmp_path, flood_rate=0.001, flood_burst=2)
    alice = await line_operator(ports["chat"], "alice")
    client = await caller(ports["ivr"])
    await client.send(b"0")
    await client.expect(CONNECTED)
    await client.send("".join(f"line {n}\n" for n in range(10)))
    await client.expect("you are sending too fast")
    await client.expect("flooding; goodbye")
    await client.expect_eof()
    await alice.expect("caller caller-1 hung up")
    assert not any("line 2" in line for line in alice.seen)
    other = await caller(ports["ivr"])        # the hotline goes on for everyone else
    other.close()
    alice.close()


async def test_a_web_operator_takes_a_call_and_sees_it_in_history(
    serve: Any, tmp_path: Path
) -> None:
    import json

    from websockets.asyncio.client import connect

    ports, _ = await hotline(serve, tmp_path, web_port=0)
    client = await caller(ports["ivr"])
    await client.send(b"0")
    await client.expect(CONNECTED)
    await client.send("我的网络断了 (my line is down)\n")

    async with connect(f"ws://127.0.0.1:{ports['web']}/ws", open_timeout=5) as ws:
        async def expect(**fields: Any) -> dict[str, Any]:
            while True:
                obj = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if fields.items() <= obj.items():
                    return dict(obj)

        await ws.send(json.dumps({"type": "hello", "version": 1, "nick": "wendy"}))
        await expect(type="welcome", nick="wendy")
        await ws.send(json.dumps({"type": "join", "room": "#support"}))
        history = await expect(type="history", room="#support")
        texts = [m["text"] for m in history["messages"]]
        assert "我的网络断了 (my line is down)" in texts
        assert any("caller caller-1 is waiting" in t for t in texts)
        await client.expect("客服 wendy 为您服务")
        await ws.send(json.dumps({"type": "say", "room": "#support", "text": "我来看看 <b>"}))
        await client.expect("wendy: 我来看看 <b>")
        await client.send("谢谢\n")
        await expect(type="message", nick="caller-1", text="谢谢")
    client.close()


async def test_a_caller_who_cannot_join_passes_the_call_to_the_next(
    serve: Any, tmp_path: Path
) -> None:
    """The head of the queue refused by the room (+i here) goes back to the menu, and the
    next caller is connected; before, the queue stalled with a head not in the room."""
    ports, _ = await hotline(serve, tmp_path)
    bob = await irc_client(ports["irc"], "bob", "#support")  # first in: the room's operator
    callers = []
    for n in (1, 2, 3):
        c = await caller(ports["ivr"])
        await c.send(b"0")
        await c.expect(CONNECTED if n == 1 else f"您排在第 {n} 位")
        await bob.expect(f"caller caller-{n} is waiting")
        callers.append(c)
    await bob.send(b"MODE #support +i\r\nINVITE caller-3 #support\r\n")
    await bob.expect(" 341 bob caller-3 ")
    await bob.send(b"PRIVMSG #support :!next\r\n")
    await callers[1].expect("error:")
    await callers[1].expect(MAIN)
    await callers[2].expect(CONNECTED)
    await callers[2].send("my turn\n")
    await bob.expect("PRIVMSG #support :my turn")
    for c in (bob, *callers):
        c.close()


async def test_the_desk_killed_by_an_operator_comes_back_with_the_next_caller(
    serve: Any, tmp_path: Path
) -> None:
    from sockhub.passwords import hash_password

    ports, _ = await hotline(serve, tmp_path, operators={"admin": hash_password("s3cret",
                                                                               log_n=10)})
    bob = await irc_client(ports["irc"], "bob", "#support")
    first = await caller(ports["ivr"])
    await first.send(b"0")
    await bob.expect("caller caller-1 is waiting")
    await bob.send(b"OPER admin s3cret\r\nKILL hotline :begone\r\n")
    await bob.expect(":hotline!hotline@bot QUIT ")
    first.close()
    await bob.expect(":caller-1!")
    second = await caller(ports["ivr"])
    await second.send(b"0")
    await second.expect(CONNECTED)
    await bob.expect("caller caller-2 is waiting")
    for c in (bob, second):
        c.close()


async def test_a_caller_going_in_and_out_of_the_queue_is_flood_controlled(
    serve: Any, tmp_path: Path
) -> None:
    """Each trip into the queue makes the desk speak in the room (and the caller join and
    leave it): the caller's flood control counts those trips too."""
    ports, _ = await hotline(serve, tmp_path, flood_rate=0.001, flood_burst=4)
    alice = await line_operator(ports["chat"], "alice")
    client = await caller(ports["ivr"])
    await client.send(b"0")
    await client.expect(CONNECTED)
    await client.send(b"*\n0" * 12)
    await client.expect("you are sending too fast")
    await client.expect("flooding; goodbye")
    await client.expect_eof()
    await alice.send("!queue")                     # after all the desk said before
    await alice.expect("no caller in the queue")
    assert sum("caller caller-1 is waiting" in line for line in alice.seen) <= 4
    alice.close()
