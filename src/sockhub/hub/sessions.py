"""Several connections, one user: the hub's side of multiclient (docs/accounts.md).

An identified user may hold their account's nick from several connections
at once (Ergo's "multiclient": phone and laptop, one person). The hub keeps
ONE :class:`~sockhub.hub.model.User` for them, so rooms hold one member,
others see one JOIN and one NAMES entry, and every rule (bans, modes,
flood of rooms) counts the person once. What changes is the user's
``member``: :class:`Sessions`, a :class:`~sockhub.hub.events.Member` that
hands each event to every connection's door.

The seam for doors is small and optional:

* a door that acts says which connection did (``via=self`` to the chat
  service), and the event carries it as ``origin`` (``id`` of that door);
* :func:`acted_elsewhere` tells a door that an event of its own user came
  from another of their connections, so it shows it as its own act (IRC:
  the user's own PRIVMSG, as echo-message would; a JOIN with its topic and
  names) even where it would not echo its own.

A door that passes no ``via`` still works: its events have origin 0 and
are treated as its own everywhere, as with one connection.
"""

from __future__ import annotations

import logging

from sockhub.hub.events import (
    HubEvent,
    Joined,
    Member,
    Message,
    MessageRun,
    Parted,
    Private,
    Signal,
)

log = logging.getLogger("sockhub.hub")

Acted = Message | Private | Signal | Joined | Parted


class Sessions:
    """One user's connections; delivering to it delivers to each, in attach order.

    One session failing to take an event (a door bug) is logged and does not
    keep the event from the others.
    """

    __slots__ = ("members",)

    def __init__(self, members: list[Member]) -> None:
        self.members = members

    def deliver(self, event: HubEvent) -> None:
        for member in tuple(self.members):
            deliver_safely(member, event)

    def deliver_run(self, run: MessageRun) -> None:
        for member in tuple(self.members):
            deliver_run_safely(member, run)

    def disconnect(self, reason: str) -> None:
        """Close every connection (KILL, GHOST): each door is told to drop its client."""
        for member in tuple(self.members):
            try:
                disconnect = getattr(member, "disconnect", None)
                if disconnect is not None:
                    disconnect(reason)
                    continue
                close = getattr(member, "close", None)
                if close is not None:
                    close()
            except Exception:
                log.exception("hub: could not disconnect a session")

    def __len__(self) -> int:
        return len(self.members)


def deliver_safely(member: Member, event: HubEvent) -> None:
    """``member.deliver(event)``; a raise is logged, never passed on to the fan-out.

    ``Member.deliver`` must not raise; when one does anyway, the members after
    it in a room must still get the event.
    """
    try:
        member.deliver(event)
    except Exception:
        delivery_failed(member, event)


def deliver_run_safely(member: Member, run: MessageRun) -> None:
    """Hand ``member`` a run of room messages: its ``deliver_run``, or each message in turn.

    ``deliver_run`` is optional (a door that renders per recipient gains
    nothing from it); without it the member gets :meth:`Member.deliver` per
    message, exactly as if the messages had been fanned out one by one.
    """
    deliver_run = getattr(member, "deliver_run", None)
    if deliver_run is None:
        deliver_each(member, run)
        return
    try:
        deliver_run(run)
    except Exception:
        delivery_failed(member, run.messages[0])


def deliver_each(member: Member, run: MessageRun) -> None:
    """The run one message at a time, each failure its own (a door's fallback)."""
    for message in run.messages:
        deliver_safely(member, message)


def delivery_failed(member: Member, event: HubEvent) -> None:
    """Log a delivery that raised (inside the ``except`` that caught it)."""
    log.exception("hub: delivery of %s to %s failed", type(event).__name__,
                  type(member).__name__)


def members_of(member: Member) -> tuple[Member, ...]:
    """The connections behind a user's member: its sessions, or itself alone."""
    if isinstance(member, Sessions):
        return tuple(member.members)
    return (member,)


def acted_elsewhere(event: Acted, member: Member) -> bool:
    """Did another connection of this door's own user do this (not this one)?

    An event with no origin (0) came from a door that does not say: it
    counts as this connection's own, as it did before multiclient.
    """
    return event.origin != 0 and event.origin != id(member)


def origin_of(via: Member | None) -> int:
    """The ``origin`` an event gets when ``via`` acted (0: not said)."""
    return 0 if via is None else id(via)
