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

from sockhub.hub.events import HubEvent, Message

log = logging.getLogger("sockhub.bus")

Subscriber = Callable[[HubEvent], None]
BatchSubscriber = Callable[[list[Message]], None]


class Bus(Protocol):
    def publish(self, event: HubEvent) -> None:
        """Deliver ``event`` to every subscriber (here or elsewhere)."""

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with each published event."""

    def close(self) -> None:
        """Stop delivering; release connections."""


class LocalBus:
    """The in-process bus: publish calls each subscriber at once.

    A subscriber that has nothing to do with room messages says so
    (``subscribe(..., messages=False)``) and is not called for them: a room
    message is the commonest event by far, and the chat service's
    bookkeeping subscribers only returned on it.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        #: Those of :attr:`_subscribers` that take room messages, in the same order.
        self._message_subscribers: list[Subscriber] = []
        #: The batch form of the only message subscriber, if it has one.
        self._batch: BatchSubscriber | None = None

    def publish(self, event: HubEvent) -> None:
        """Each subscriber in turn; one that raises is logged and the rest still run."""
        subscribers = self._message_subscribers if type(event) is Message else self._subscribers
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("bus: a subscriber failed on %s", type(event).__name__)

    def publish_all(self, messages: list[Message]) -> None:
        """:meth:`publish` each room message of a group commit's batch, in order.

        When one subscriber alone takes room messages (the chat service's
        hub) and it has a batch form, the batch goes to it whole: the hub
        fans out a run of messages in one room as one piece per recipient.
        """
        subscribers = self._message_subscribers
        if len(subscribers) == 1:
            batch = self._batch
            if batch is not None:
                try:
                    batch(messages)
                except Exception:
                    log.exception("bus: a subscriber failed on a batch of messages")
                return
            subscriber = subscribers[0]
            for message in messages:
                try:
                    subscriber(message)
                except Exception:
                    log.exception("bus: a subscriber failed on Message")
            return
        for message in messages:
            self.publish(message)

    def subscribe(self, subscriber: Subscriber, *, messages: bool = True,
                  batch: BatchSubscriber | None = None) -> None:
        """Call ``subscriber`` with each event; with ``messages=False``, but room messages.

        ``batch``, if given, takes a group commit's messages at once in place of
        ``subscriber`` per message (used while it is the only one taking them).
        """
        self._subscribers.append(subscriber)
        if messages:
            self._message_subscribers.append(subscriber)
            self._batch = batch if len(self._message_subscribers) == 1 else None

    def close(self) -> None:
        self._subscribers.clear()
        self._message_subscribers.clear()
        self._batch = None
