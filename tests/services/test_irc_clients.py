"""The IRC door over real loopback sockets, driven by IRC client libraries others wrote.

pydle (asyncio) and jaraco's ``irc`` (``irc.client_aio``) connect to the
chat service's IRC door while nc-style users sit at its line door; both
see the same rooms. No sleeps: every wait is for a message, with a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import irc.client
import irc.client_aio
import pydle
import pytest

from net import STEP, chat_client
from sockhub.codec.irc import format_time
from sockhub.passwords import hash_password

OPER_HASH = hash_password("s3cret", log_n=10)


class Bot(pydle.Client):
    """A pydle client that records every message it receives, in order."""

    RECONNECT_ON_ERROR = False

    def __init__(self, nick: str, *, caps: tuple[str, ...] = (), answer_ping: bool = True) -> None:
        super().__init__(nick, realname=f"{nick} the bot")
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.seen: list[Any] = []
        self.ready = asyncio.Event()
        self.gone = asyncio.Event()
        self.extra_caps = caps
        self.answer_ping = answer_ping

    async def on_raw(self, message: Any) -> None:
        self.inbox.put_nowait(message)  # before any await: keeps the wire order
        await super().on_raw(message)

    async def on_connect(self) -> None:
        await super().on_connect()
        self.connection.throttle = False  # pydle paces itself; tests need not wait
        self.ready.set()

    async def on_disconnect(self, expected: bool) -> None:
        self.gone.set()
        await super().on_disconnect(expected)

    async def on_raw_ping(self, message: Any) -> None:
        if self.answer_ping:
            await super().on_raw_ping(message)

    async def on_capability_server_time_available(self, value: Any) -> bool:
        return "server-time" in self.extra_caps

    async def on_capability_batch_available(self, value: Any) -> bool:
        return "batch" in self.extra_caps

    async def expect(self, match: Callable[[Any], bool], timeout: float = STEP) -> Any:
        """The next received message ``match`` accepts; fails on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out; last seen: {[m._raw for m in self.seen[-8:]]}")
            try:
                message = await asyncio.wait_for(self.inbox.get(), remaining)
            except TimeoutError:
                continue
            self.seen.append(message)
            if match(message):
                return message


def command(name: str, *params: str) -> Callable[[Any], bool]:
    """Match a message by command and leading parameters."""

    def match(message: Any) -> bool:
        cmd = str(message.command).zfill(3) if isinstance(message.command, int) else message.command
        return cmd == name and list(message.params[: len(params)]) == list(params)

    return match


@pytest.fixture
def hub(serve, tmp_path):
    """Start the chat service with both doors; returns (line port, irc port, service)."""

    async def start(**options: Any) -> tuple[int, int, Any]:
        settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0,
                    "server_name": "irc.test", **options}
        line, irc_server = await serve("chat", options=settings)
        assert irc_server.name == "irc"
        return line.ports[0], irc_server.ports[0], irc_server.runtime

    return start


@pytest.fixture
async def bots():
    """Connect pydle bots; disconnect them all at the end."""
    made: list[Bot] = []

    async def connect(port: int, nick: str, **kwargs: Any) -> Bot:
        bot = Bot(nick, **kwargs)
        made.append(bot)
        await asyncio.wait_for(bot.connect("127.0.0.1", port), STEP)
        await asyncio.wait_for(bot.ready.wait(), STEP)
        return bot

    yield connect
    for bot in made:
        if bot.connected:
            await bot.disconnect(expected=True)


async def test_registration_and_join_with_pydle(hub, bots):
    _, port, _ = await hub()
    alice = await bots(port, "alice")
    assert alice.registered
    assert alice._isupport["CASEMAPPING"] == "ascii"
    await alice.join("#room")
    await alice.expect(command("366", "alice", "#room"))
    assert alice.nickname == "alice"
    bob = await bots(port, "bob")
    await bob.join("#room")
    await bob.expect(command("366", "bob", "#room"))
    await alice.expect(command("JOIN", "#room"))
    assert set(bob.channels["#room"]["users"]) == {"alice", "bob"}
    assert "o" in bob.channels["#room"]["modes"] and "alice" in bob.channels["#room"]["modes"]["o"]
    info = await asyncio.wait_for(bob.whois("alice"), STEP)  # answered by 311 ... 318
    assert info["realname"] == "alice the bot" and info["hostname"] == "127.0.0.1"


async def test_messages_between_irc_and_the_line_door_both_ways(hub, bots):
    line_port, irc_port, _ = await hub()
    carol = await chat_client(line_port, "carol")  # line users start in #lobby
    dave = await bots(irc_port, "dave")
    await dave.join("#lobby")
    await dave.expect(command("366", "dave", "#lobby"))
    await carol.expect("#lobby * dave joined")
    await carol.send("hello from nc")
    got = await dave.expect(command("PRIVMSG", "#lobby"))
    assert got.source == "carol!carol@127.0.0.1" and got.params[1] == "hello from nc"
    await dave.message("#lobby", "hello from irc")
    line = await carol.expect("<dave>")
    assert line.endswith("#lobby <dave> hello from irc")
    await dave.message("#lobby", "\x01ACTION waves\x01")
    assert (await carol.expect("** dave")).endswith("#lobby ** dave waves")
    await carol.send("/me waves back")
    action = await dave.expect(lambda m: command("PRIVMSG", "#lobby")(m)
                               and m.source.startswith("carol!"))
    assert action.params[1] == "\x01ACTION waves back\x01"
    carol.close()


async def test_private_messages_across_doors(hub, bots):
    line_port, irc_port, _ = await hub()
    carol = await chat_client(line_port, "carol")
    dave = await bots(irc_port, "dave")
    erin = await bots(irc_port, "erin")
    await dave.message("carol", "psst, carol")
    assert (await carol.expect("[pm]")).endswith("[pm] <dave> psst, carol")
    await carol.send("/msg dave hi dave")
    got = await dave.expect(command("PRIVMSG", "dave"))
    assert got.source.startswith("carol!") and got.params[1] == "hi dave"
    await dave.message("erin", "irc to irc")
    assert (await erin.expect(command("PRIVMSG", "erin"))).params[1] == "irc to irc"
    await dave.rawmsg("PRIVMSG", "nobody", "hello?")
    assert (await dave.expect(command("401"))).params[1] == "nobody"
    carol.close()


async def test_modes_and_their_numerics_with_pydle(hub, bots):
    line_port, irc_port, _ = await hub()
    op = await bots(irc_port, "op")
    user = await bots(irc_port, "user")
    await op.join("#m")
    await op.expect(command("366", "op", "#m"))
    await user.join("#m")
    await user.expect(command("366", "user", "#m"))
    await op.set_mode("#m", "+m")
    await user.expect(command("MODE", "#m", "+m"))
    await user.message("#m", "can anyone hear me?")
    refused = await user.expect(command("404", "user", "#m"))
    assert "moderated" in refused.params[-1]
    await op.set_mode("#m", "+v", "user")
    await user.expect(command("MODE", "#m", "+v", "user"))
    assert "user" in user.channels["#m"]["modes"]["v"]
    await user.message("#m", "now I can")
    assert (await op.expect(command("PRIVMSG", "#m"))).params[1] == "now I can"
    await user.set_mode("#m", "+k", "secret")
    assert (await user.expect(command("482", "user", "#m"))).params[2] == (
        "You're not channel operator")
    await op.set_mode("#m", "+kl", "secret", "2")
    await user.expect(command("MODE", "#m", "+kl", "secret", "2"))
    carol = await chat_client(line_port, "carol")
    await carol.send("/join #m")
    assert await carol.expect("error:") == "error: #m needs the right password"
    await carol.send("/join #m secret")
    assert await carol.expect("error:") == "error: #m is full (2 members)"
    await op.set_mode("#m", "-l")
    await carol.send("/join #m secret")
    await carol.expect("-- in #m")
    await op.set_mode("#m", "+z")
    assert (await op.expect(command("472", "op", "z"))).params[2] == "is unknown mode char to me"
    carol.close()


async def test_kicks_and_bans_with_pydle(hub, bots):
    line_port, irc_port, _ = await hub()
    op = await bots(irc_port, "op")
    bob = await bots(irc_port, "bob")
    await op.join("#k")
    await op.expect(command("366", "op", "#k"))
    await bob.join("#k")
    await bob.expect(command("366", "bob", "#k"))
    await op.kick("#k", "bob", "behave")
    kick = await bob.expect(command("KICK", "#k", "bob"))
    assert kick.params[2] == "behave" and kick.source.startswith("op!")
    assert "#k" not in bob.channels
    await op.set_mode("#k", "+b", "bob!*@*")
    await op.expect(command("MODE", "#k", "+b", "bob!*@*"))
    await bob.rawmsg("JOIN", "#k")
    banned = await bob.expect(command("474", "bob", "#k"))
    assert banned.params[2] == "Cannot join channel (+b)"
    await bob.rawmsg("KICK", "#k", "op")
    assert (await bob.expect(command("442", "bob", "#k"))).params[2] == (
        "You're not on that channel")
    # A line-door operator's ban is the same ban list.
    carol = await chat_client(line_port, "carol")
    await carol.send("/bans #k")
    assert await carol.expect("-- bans of") == "-- bans of #k: bob!*@*"
    await op.set_mode("#k", "-b", "bob!*@*")
    await op.expect(command("MODE", "#k", "-b", "bob!*@*"))
    await bob.join("#k")
    await bob.expect(command("366", "bob", "#k"))
    carol.close()


async def test_history_playback_carries_original_times(hub, bots):
    line_port, irc_port, service = await hub(history=3)
    carol = await chat_client(line_port, "carol")
    for i in range(5):
        await carol.send(f"before {i}")
        await carol.expect(f"<carol> before {i}")
    stored = service.history("#lobby", 3)
    late = await bots(irc_port, "late", caps=("server-time", "batch"))
    await late.join("#lobby")
    replayed = [await late.expect(command("PRIVMSG", "#lobby")) for _ in range(3)]
    assert [m.params[1] for m in replayed] == ["before 2", "before 3", "before 4"]
    assert [m.tags["time"] for m in replayed] == [format_time(m.ts) for m in stored]
    assert all(m.tags.get("batch") for m in replayed)
    plain = await bots(irc_port, "plain")
    await plain.join("#lobby")
    first = await plain.expect(command("PRIVMSG", "#lobby"))
    assert first.params[1].startswith("[") and first.params[1].endswith("] before 2")
    carol.close()


async def test_pydle_reconnecting_is_replayed_only_what_it_missed_with_full_prefixes(hub, bots):
    line_port, irc_port, _ = await hub(history=10)
    talker = await bots(irc_port, "talker")
    await talker.join("#r")
    await talker.expect(command("366", "talker", "#r"))
    reader = await bots(irc_port, "reader", caps=("server-time", "batch"))
    await reader.join("#r")
    await reader.expect(command("366", "reader", "#r"))
    await talker.message("#r", "seen live")
    live = await reader.expect(command("PRIVMSG", "#r"))
    assert live.source == "talker!talker@127.0.0.1"
    await reader.quit("brb")
    await asyncio.wait_for(reader.gone.wait(), STEP)
    await talker.message("#r", "missed 1")
    await talker.quit("bye")  # gone: the replay still names them in full
    await asyncio.wait_for(talker.gone.wait(), STEP)
    carol = await chat_client(line_port, "carol")  # a line user says the last one
    await carol.send("/join #r")
    await carol.expect("end of history of #r")
    await carol.send("missed 2")
    await carol.expect("<carol> missed 2")
    back = await bots(irc_port, "reader", caps=("server-time", "batch"))
    await back.join("#r")
    replayed = [await back.expect(command("PRIVMSG", "#r")) for _ in range(2)]
    assert [m.params[1] for m in replayed] == ["missed 1", "missed 2"]
    assert replayed[0].source == "talker!talker@127.0.0.1"
    assert replayed[1].source.startswith("carol!") and replayed[1].source.endswith("@127.0.0.1")
    assert all(m.tags.get("batch") and m.tags.get("time") for m in replayed)
    await back.expect(command("BATCH"))  # the end: nothing more, "seen live" is not again
    await back.rawmsg("PING", "done")
    await back.expect(command("PONG", "irc.test", "done"))
    assert not [m for m in back.seen if m.command == "PRIVMSG" and m.params[1] == "seen live"]
    carol.close()


async def test_a_client_that_stops_answering_ping_is_dropped(hub, bots):
    # Short enough for a test, long enough for pydle to answer on a loaded machine.
    _, port, _ = await hub(irc_ping_interval=0.5, irc_ping_timeout=2.0)
    watcher = await bots(port, "watcher")
    mute = await bots(port, "mute", answer_ping=False)
    for bot in (watcher, mute):
        await bot.join("#p")
        await bot.expect(command("366", bot.nickname, "#p"))
    await mute.expect(command("PING"), timeout=STEP)
    error = await mute.expect(command("ERROR"), timeout=STEP)
    assert "Ping timeout" in error.params[0]
    await asyncio.wait_for(mute.gone.wait(), STEP)
    quit_msg = await watcher.expect(command("QUIT"), timeout=STEP)
    assert quit_msg.source.startswith("mute!") and quit_msg.params[0] == "Ping timeout: 2 seconds"
    # The watcher answers its PINGs and stays.
    await watcher.expect(command("PING"), timeout=STEP)
    await watcher.rawmsg("PING", "still-here")
    await watcher.expect(command("PONG", "irc.test", "still-here"))


async def test_jaraco_irc_client_registers_chats_and_gets_kicked(hub):
    line_port, irc_port, _ = await hub(operators={"admin": OPER_HASH})
    loop = asyncio.get_running_loop()
    reactor = irc.client_aio.AioReactor(loop=loop)
    events: asyncio.Queue[irc.client.Event] = asyncio.Queue()
    reactor.add_global_handler("all_events", lambda conn, event: events.put_nowait(event))

    async def expect(kind: str) -> irc.client.Event:
        while True:
            event = await asyncio.wait_for(events.get(), STEP)
            if event.type == kind:
                return event

    connection = await asyncio.wait_for(
        reactor.server().connect("127.0.0.1", irc_port, "jaraco", ircname="Jaraco Client"), STEP
    )
    welcome = await expect("welcome")
    assert welcome.target == "jaraco"
    await expect("nomotd")  # 422: no MOTD file configured
    carol = await chat_client(line_port, "carol")
    connection.join("#lobby")
    await expect("endofnames")
    await carol.send("hi jaraco")
    pub = await expect("pubmsg")
    assert pub.source.nick == "carol" and pub.arguments == ["hi jaraco"]
    connection.privmsg("#lobby", "hi carol")
    assert (await carol.expect("<jaraco>")).endswith("<jaraco> hi carol")
    await carol.send("/oper admin s3cret")
    await carol.expect("operator")
    await carol.send("/kick jaraco out")
    kick = await expect("kick")
    assert kick.arguments == ["jaraco", "out"] and kick.source.nick == "carol"
    connection.quit("bye")
    error = await expect("error")  # QUIT is answered with ERROR, then the close
    assert "Quit: bye" in error.target
    carol.close()
