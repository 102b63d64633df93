"""Bots: hub members with no connection, written against :class:`~sockhub.doors.api.ChatApi`.

A bot registers a nick, joins rooms, and from then on is told what happens
there, like any user; it answers with :meth:`Bot.say` and :meth:`Bot.tell`.
The hub delivers events in the middle of its fan-out, where a member may
only queue (``hub/events.py: Member``), so a bot's handlers run a moment
later, from a timer on its clock: a handler may then say, join or part
freely. Handlers a subclass overrides::

    on_message(message)       a message in one of its rooms (its own included)
    on_private(private)       a private message to it
    on_join(room, nick)       someone joined one of its rooms (itself included)
    on_leave(room, nick, why) someone left: parted, quit (room None) or was kicked
    on_event(event)           anything else the hub sends

The smallest bot (docs/bots.md has it whole, with a test)::

    class Echo(Bot):
        def on_message(self, message: Message) -> None:
            if message.text.startswith("!echo ") and message.nick != self.nick:
                self.say(message.room, message.text[6:])

What users type reaches a bot (and what a bot says reaches users) cleaned of
control characters by the hub, as for every door.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sockhub.doors.api import ChatApi
from sockhub.hub import HubError, Message, User
from sockhub.hub.events import HubEvent, Joined, Kicked, Parted, Private, Quit
from sockhub.protocols.base import Clock, Timer

log = logging.getLogger("sockhub.bot")


class Bot:
    """A hub member driven by events. Subclass it; call :meth:`start` once."""

    #: The door its messages are counted under in /metrics (none: a bot is no door).
    metrics_door: str | None = None

    def __init__(self, api: ChatApi, nick: str, clock: Clock, *,
                 rooms: Iterable[str] = ()) -> None:
        self.api = api
        self.nick = nick
        self.clock = clock
        self.rooms = tuple(rooms)
        self.user: User | None = None
        self._events: list[HubEvent] = []
        self._timer: Timer | None = None

    # Life ---------------------------------------------------------------------------

    def start(self) -> None:
        """Take the nick and join the rooms. Raises HubError (the nick is taken)."""
        self.user = self.api.register(self.nick, self, address="bot", realname="sockhub bot")
        for room in self.rooms:
            self.api.join(self.user, room)

    def stop(self, reason: str = "bot stopped") -> None:
        if self.user is not None:
            self.api.quit(self.user, reason)
            self.user = None
        if self._timer is not None:
            self._timer.cancel()

    def disconnect(self, reason: str) -> None:
        """Killed (KILL; ``doors.api.Disconnectable``): the service has taken the user
        out of the hub, so forget it; :meth:`start` takes a nick again."""
        self.user = None

    # The hub's side (a Member) ------------------------------------------------------

    def deliver(self, event: HubEvent) -> None:
        """Queue the event; the handlers run once the hub's fan-out is over."""
        self._events.append(event)
        if self._timer is None:
            self._timer = self.clock.call_later(0, self._drain)

    def _drain(self) -> None:
        self._timer = None
        while self._events:
            event = self._events.pop(0)
            try:
                self._dispatch(event)
            except Exception:
                log.exception("bot %s failed on %s", self.nick, type(event).__name__)

    def _dispatch(self, event: HubEvent) -> None:
        if isinstance(event, Message):
            self.on_message(event)
        elif isinstance(event, Private):
            self.on_private(event)
        elif isinstance(event, Joined):
            self.on_join(event.room, event.nick)
        elif isinstance(event, Parted):
            self.on_leave(event.room, event.nick, event.reason or "left")
        elif isinstance(event, Quit):
            self.on_leave(None, event.nick, event.reason or "quit")
        elif isinstance(event, Kicked):
            self.on_leave(event.room, event.nick, f"kicked by {event.by}")
        else:
            self.on_event(event)

    # Handlers to override -----------------------------------------------------------

    def on_message(self, message: Message) -> None: ...

    def on_private(self, private: Private) -> None: ...

    def on_join(self, room: str, nick: str) -> None: ...

    def on_leave(self, room: str | None, nick: str, why: str) -> None: ...

    def on_event(self, event: HubEvent) -> None: ...

    # Speaking -----------------------------------------------------------------------

    def say(self, room: str, text: str) -> Message | None:
        """Say ``text`` in ``room`` (stored in its history); None if the hub refused."""
        if self.user is None:
            return None
        try:
            return self.api.say(self.user, room, text)
        except HubError as exc:
            log.warning("bot %s cannot say in %s: %s", self.nick, room, exc)
            return None

    def tell(self, nick: str, text: str) -> bool:
        """A private message to ``nick``; False if there is no such user."""
        if self.user is None:
            return False
        try:
            self.api.private(self.user, nick, text)
        except HubError:
            return False
        return True

    def members(self, room: str) -> list[User]:
        """Who is in ``room`` now (the bot included)."""
        found = self.api.find_room(room)
        return list(found.members.values()) if found is not None else []
