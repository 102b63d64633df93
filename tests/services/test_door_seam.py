"""Adding a door is one module and one row: a toy door beside the line and IRC doors.

The toy door below is the whole of a new front door (what docs/architecture.md
shows): a sockhub LineProtocol that is a hub Member and asks the chat service
only what ChatApi offers. Plugging it in is one ChatDoor row; the hub, the
store and the other doors learn nothing of it.
"""

from __future__ import annotations

import pytest

from net import LineClient, chat_client, open_client
from sockhub.doors.api import ChatApi
from sockhub.hub import HubError, Message, User
from sockhub.hub.events import HubEvent
from sockhub.protocols.base import ConnectionInfo, LineProtocol
from sockhub.services import chat


class TickerDoor(LineProtocol):
    """A read-mostly door: a guest in #lobby; each line it sends is said there.

    Room messages come back as ``ROOM NICK: TEXT`` (no markup, no colours).
    """

    def __init__(self, api: ChatApi) -> None:
        super().__init__()
        self.api = api
        self.user: User | None = None

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        self.user = self.api.register(self.api.guest_nick(), self, address="ticker")
        self.api.join(self.user, "#lobby")
        self.send_line(f"ticker {self.user.nick}")

    def line_received(self, line: str) -> None:
        assert self.user is not None
        try:
            self.api.say(self.user, "#lobby", line)
        except HubError as exc:
            self.send_line(f"refused: {exc}")

    def deliver(self, event: HubEvent) -> None:
        if isinstance(event, Message):
            self.send_line(f"{event.room} {event.nick}: {event.text}")
            self.wake()

    def connection_lost(self) -> None:
        if self.user is not None:
            self.api.quit(self.user, "ticker gone")


@pytest.fixture
def with_ticker(monkeypatch):
    row = chat.ChatDoor("ticker", lambda service: 0, TickerDoor)
    monkeypatch.setattr(chat, "DOORS", (*chat.DOORS, row))


async def test_a_new_door_is_one_module_and_one_row(serve, tmp_path, with_ticker):
    servers = await serve("chat", options={"data_dir": str(tmp_path)})
    ports = {server.name: server.ports[0] for server in servers}
    assert set(ports) == {"chat", "ticker"}  # IRC stays closed: no irc_port
    ticker = LineClient(*await open_client(ports["ticker"]))
    nick = (await ticker.expect("ticker ")).split()[1]
    alice = await chat_client(ports["chat"], "alice")
    await alice.send("hello from nc")
    await ticker.expect("#lobby alice: hello from nc")
    await ticker.send("hello from the ticker \x1b[2J")
    # The line user sees it, its control characters made harmless as for any door.
    line = await alice.expect(f"<{nick}> hello from the ticker")
    assert "\x1b" not in line and "^[[2J" in line
    ticker.close()
    alice.close()
