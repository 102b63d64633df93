"""Helpers for IRC door tests: a manual clock, and doors driven with bytes, no sockets."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sockhub.codec.irc import IrcMessage, parse_message
from sockhub.doors.irc import IrcDoor
from sockhub.limits import Limits
from sockhub.protocols.base import ConnectionInfo
from sockhub.services.chat import ChatService, ChatSettings


class ManualClock:
    """A clock that moves only when told; timers run in ``advance``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.epoch = time.time() - now  # wall() is real time, moved on by advance()
        self._timers: list[list[Any]] = []

    def time(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.epoch + self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        return self.call_at(self.now + delay, callback)

    def call_at(self, when: float, callback: Callable[[], None]) -> Any:
        """A timer at a time on this clock (asyncio's ``loop.call_at``)."""
        entry = [when, callback, False]
        self._timers.append(entry)

        class Handle:
            def cancel(self) -> None:
                entry[2] = True

        return Handle()

    def advance(self, seconds: float) -> None:
        """Move time forward, running every timer that falls due, in order."""
        end = self.now + seconds
        while True:
            due = [t for t in self._timers if not t[2] and t[0] <= end]
            if not due:
                break
            entry = min(due, key=lambda t: t[0])
            entry[2] = True
            self.now = max(self.now, entry[0])
            entry[1]()
        self.now = end


class Client:
    """One IRC door fed with lines; ``take()`` returns what it sent, parsed."""

    def __init__(self, service: ChatService, clock: ManualClock, peer: str) -> None:
        self.door = IrcDoor(service)
        self.door.clock = clock
        self.door.connection_made(ConnectionInfo(peer=peer, service="irc"))
        self.raw: list[bytes] = []

    def send(self, *lines: str | bytes) -> None:
        for line in lines:
            data = line if isinstance(line, bytes) else line.encode() + b"\r\n"
            self.door.receive_data(data)

    def take_raw(self) -> bytes:
        data = b"".join(self.door.data_to_send())
        self.raw.append(data)
        return data

    def take(self) -> list[IrcMessage]:
        data = self.take_raw()
        return [parse_message(line) for line in data.split(b"\r\n") if line]

    def ask(self, *lines: str | bytes) -> list[IrcMessage]:
        """Send lines; return everything received up to now."""
        self.send(*lines)
        return self.take()

    @property
    def closed(self) -> bool:
        return self.door.close_expected()


class Network:
    """A chat service and IRC clients on a manual clock."""

    def __init__(self, data_dir: Path, **options: Any) -> None:
        settings = {"data_dir": data_dir, "server_name": "irc.test", "flood_rate": None,
                    **options}
        self.service = ChatService(ChatSettings(**settings), Limits())
        self.clock = ManualClock()
        self._port = 40000

    def connect(self) -> Client:
        self._port += 1
        return Client(self.service, self.clock, f"127.0.0.1:{self._port}")

    def register(self, nick: str, *caps: str, realname: str = "Real Name") -> Client:
        client = self.connect()
        if caps:
            client.send("CAP LS 302", f"CAP REQ :{' '.join(caps)}")
        client.send(f"NICK {nick}", f"USER {nick.lower()} 0 * :{realname}")
        if caps:
            client.send("CAP END")
        replies = client.take()
        assert any(m.command == "001" for m in replies), replies
        return client

    def close(self) -> None:
        self.service.close()


def commands(messages: list[IrcMessage]) -> list[str]:
    return [m.command for m in messages]


def find(messages: list[IrcMessage], command: str) -> IrcMessage:
    for message in messages:
        if message.command == command:
            return message
    raise AssertionError(f"no {command} in {[(m.command, m.params) for m in messages]}")
