"""The bot API: docs/bots.md's dice bot, run for real in a chat hub with a line client."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.net import chat_client

from sockhub.doors.bot import Bot
from sockhub.engine.clock import LoopClock
from sockhub.hub import Message
from sockhub.services.chat import ChatService

DOCS = Path(__file__).resolve().parent.parent / "docs" / "bots.md"


def docs_bot() -> type[Bot]:
    """The first python block of docs/bots.md, run: the doc's bot is the one tested."""
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block is not None
    namespace: dict[str, Any] = {"__name__": "docs_bots"}
    exec(compile(block.group(1), str(DOCS), "exec"), namespace)
    bot = namespace["DiceBot"]
    assert issubclass(bot, Bot)
    return bot


async def test_the_docs_dice_bot_answers_users_on_the_line_door(serve: Any, tmp_path: Path) -> None:
    server = await serve("chat", options={"data_dir": str(tmp_path), "flood_rate": "none"})
    service = server.runtime
    assert isinstance(service, ChatService)
    bot = docs_bot()(service, "dice", LoopClock(), rooms=["#lobby"], seed=1)
    bot.start()
    alice = await chat_client(server.ports[0], "alice")
    await alice.expect("<dice> welcome, alice: try !roll 2d6")
    await alice.send("!roll 2d6")
    rolled = await alice.expect("<dice> alice rolled")
    match = re.search(r"alice rolled 2d6: (\d+) \((\d) \+ (\d)\)$", rolled)
    assert match is not None and int(match[1]) == int(match[2]) + int(match[3])
    await alice.send("!echo 你好 \x1b[31mred")
    echoed = await alice.expect("<dice> 你好")
    assert "\x1b" not in echoed
    await alice.send("!roll 0d6")                  # no answer to a bad roll; the bot goes on
    await alice.send("!echo still here")
    await alice.expect("<dice> still here")
    assert not any("rolled 0d6" in line for line in alice.seen)
    texts = [m.text for m in service.history("#lobby", 20) if m.nick == "dice"]
    assert "still here" in texts                    # a bot's words are in history too
    bot.stop()
    alice.close()


class Recorder(Bot):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[str] = []

    def on_message(self, message: Message) -> None:
        self.seen.append(f"{message.nick}: {message.text}")
        if message.text == "boom":
            raise RuntimeError("a handler's bug")

    def on_join(self, room: str, nick: str) -> None:
        self.seen.append(f"+{nick}")

    def on_leave(self, room: str | None, nick: str, why: str) -> None:
        self.seen.append(f"-{nick} {why}")


async def test_handlers_run_after_the_fan_out_and_survive_a_raising_handler(
    serve: Any, tmp_path: Path
) -> None:
    from tests.irc_support import ManualClock

    server = await serve("chat", options={"data_dir": str(tmp_path)})
    service = server.runtime
    clock = ManualClock()
    bot = Recorder(service, "rec", clock, rooms=["#lobby"])
    bot.start()
    alice = await chat_client(server.ports[0], "alice")
    await alice.send("boom")
    await alice.expect("<alice> boom")
    await alice.send("after")
    await alice.expect("<alice> after")
    assert bot.seen == []                           # queued, not yet handled
    clock.advance(0)
    assert bot.seen == ["+rec", "+alice", "alice: boom", "alice: after"]
    await alice.send("/quit")
    await alice.expect_eof()
    clock.advance(0)
    assert bot.seen[-1].startswith("-alice")
    assert bot.tell("nobody", "hi") is False
    bot.stop()
