"""Who watches which nick, server-wide: the registry behind IRCv3 MONITOR.

A door's events reach a user only for people who share a room with them;
MONITOR (https://ircv3.net/specs/extensions/monitor) asks about anyone. The
chat service keeps one :class:`Watchlist`, tells it of each arrival
(:meth:`Watchlist.arrived`) and subscribes it to the bus (:meth:`Watchlist.apply`,
after the hub has applied the event), so a watcher hears of connects, quits,
nick changes, and away/account changes (extended-monitor) of the nicks it
watches. Pure and synchronous, like the rest of the hub.
"""

from __future__ import annotations

from typing import Protocol

from sockhub.hub.events import (
    AccountChanged,
    AwayChanged,
    HubEvent,
    NickChanged,
    Quit,
    RealnameChanged,
)
from sockhub.hub.names import fold


class Watcher(Protocol):
    """One client's monitor list; told only about nicks it added."""

    def came_online(self, nick: str) -> None: ...

    def went_offline(self, nick: str) -> None: ...

    def changed(self, event: AwayChanged | AccountChanged | RealnameChanged) -> None: ...


class Watchlist:
    """Folded nick → its watchers. Bounded by the doors: each caps its own list
    and removes every entry when it goes (:meth:`forget`); no empty key is kept."""

    def __init__(self) -> None:
        self._by_nick: dict[str, dict[int, Watcher]] = {}

    def __len__(self) -> int:
        return len(self._by_nick)

    def add(self, nick: str, watcher: Watcher) -> None:
        self._by_nick.setdefault(fold(nick), {})[id(watcher)] = watcher

    def remove(self, nick: str, watcher: Watcher) -> None:
        key = fold(nick)
        watchers = self._by_nick.get(key)
        if watchers is not None:
            watchers.pop(id(watcher), None)
            if not watchers:
                del self._by_nick[key]

    def forget(self, nicks: list[str], watcher: Watcher) -> None:
        for nick in nicks:
            self.remove(nick, watcher)

    def _watchers(self, nick: str) -> list[Watcher]:
        watchers = self._by_nick.get(fold(nick))
        return list(watchers.values()) if watchers else []

    def arrived(self, nick: str) -> None:
        """A user registered ``nick`` (not one more connection of the same user)."""
        for watcher in self._watchers(nick):
            watcher.came_online(nick)

    def apply(self, event: HubEvent) -> None:
        """A bus subscriber, after the hub: the events a watcher cares about."""
        if not self._by_nick:
            return
        if isinstance(event, Quit):
            for watcher in self._watchers(event.nick):
                watcher.went_offline(event.nick)
        elif isinstance(event, NickChanged):
            if fold(event.old) == fold(event.new):
                return  # a change of case only: the same nick stays online
            for watcher in self._watchers(event.old):
                watcher.went_offline(event.old)
            for watcher in self._watchers(event.new):
                watcher.came_online(event.new)
        elif isinstance(event, AwayChanged | AccountChanged | RealnameChanged):
            for watcher in self._watchers(event.nick):
                watcher.changed(event)
