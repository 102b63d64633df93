"""What the hub tells members: frozen dataclasses named as nouns.

One event object is built per happening and handed to every member it
concerns, so a door may cache the rendering of the last event it saw:
fan-out to 500 members renders once, not 500 times. ``ts`` is wall-clock
time in seconds (UTC epoch), taken by the caller when the server accepted
the action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Message:
    """A message (or ``/me`` action) to a room, as stored in history."""

    room: str
    nick: str
    text: str
    ts: float
    action: bool = False
    id: int | None = None
    history: bool = False


@dataclass(frozen=True, slots=True)
class Private:
    """A private message; delivered to the target and echoed to the sender."""

    sender: str
    target: str
    text: str
    ts: float
    action: bool = False


@dataclass(frozen=True, slots=True)
class Joined:
    room: str
    nick: str
    ts: float


@dataclass(frozen=True, slots=True)
class Parted:
    room: str
    nick: str
    reason: str
    ts: float


@dataclass(frozen=True, slots=True)
class Quit:
    """A user left the server; sent once to everyone sharing a room with them."""

    nick: str
    reason: str
    ts: float


@dataclass(frozen=True, slots=True)
class NickChanged:
    old: str
    new: str
    ts: float


@dataclass(frozen=True, slots=True)
class TopicChanged:
    room: str
    nick: str
    topic: str
    ts: float


@dataclass(frozen=True, slots=True)
class Kicked:
    room: str
    nick: str
    by: str
    reason: str
    ts: float


class Member(Protocol):
    """A door's end of one user: the hub calls ``deliver`` and nothing else.

    ``deliver`` must not block or raise: a door queues the event for its
    connection and returns (Twisted's IChatClient, without Deferreds).
    """

    def deliver(self, event: HubEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class BanChanged:
    """A ban mask added to (or removed from) a room's list."""

    room: str
    mask: str
    by: str
    added: bool
    ts: float


HubEvent = (
    Message | Private | Joined | Parted | Quit | NickChanged | TopicChanged | Kicked | BanChanged
)
