"""The bus: how hub events reach every process's hub.

Deliberately narrow, so that a Redis implementation (several processes or
hosts sharing rooms) can replace :class:`LocalBus` without touching the hub
or the doors: ``publish`` an event, and every subscriber — one hub per
process — gets it, in publication order, exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from sockhub.hub.events import HubEvent

log = logging.getLogger("sockhub.bus")

Subscriber = Callable[[HubEvent], None]


class Bus(Protocol):
    def publish(self, event: HubEvent) -> None:
        """Deliver ``event`` to every subscriber (here or elsewhere)."""

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with each published event."""

    def close(self) -> None:
        """Stop delivering; release connections."""


class LocalBus:
    """The in-process bus: publish calls each subscriber at once."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def publish(self, event: HubEvent) -> None:
        """Each subscriber in turn; one that raises is logged and the rest still run."""
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("bus: a subscriber failed on %s", type(event).__name__)

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def close(self) -> None:
        self._subscribers.clear()
