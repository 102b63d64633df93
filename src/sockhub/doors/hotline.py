"""The hotline door: callers walk a menu, and ``0`` hands them to operators in a hub room.

Two parts, both written against :class:`~sockhub.doors.api.ChatApi`:

* :class:`HotlineDoor`, one per caller: the sans-I/O menu walk
  (``protocols/ivr/caller.py``), and once the caller asks for a human, a hub
  user (``caller-N``) whose lines go to the room and who hears the room.
* :class:`HotlineDesk`, one per hub: a :class:`~sockhub.doors.bot.Bot` named
  ``hotline`` sitting in the hotline room (``#support``). It keeps the queue:
  the caller at its head is in the room, talking with the operators; the
  others wait outside and are told their place, which moves up as callers
  ahead of them finish, go back to the menu (``*``) or hang up. It tells the
  room who is waiting and what they chose on the way, and takes two commands
  from operators: ``!next`` ends the current call, ``!queue`` lists the queue.

An **operator** is any member of the hotline room who is neither a caller
nor a bot, whatever door they came by (line, IRC, web). A room operator
(``+o``) who kicks the caller ends the call too.
"""

from __future__ import annotations

import contextlib
import itertools
import logging

from sockhub.doors.api import ChatApi
from sockhub.doors.bot import Bot
from sockhub.doors.flood import FloodGuard
from sockhub.hub import HubError, Message, User
from sockhub.hub.events import HubEvent, Joined, Kicked, Parted, Private, Quit
from sockhub.hub.names import fold
from sockhub.protocols.base import Clock
from sockhub.protocols.chat_line import visible
from sockhub.protocols.ivr import CallerProtocol, CallerSettings, Menu

log = logging.getLogger("sockhub.hotline")

#: The words a caller types in a call: back to the menu, and hang up.
BACK, HANG_UP = ("*",), ("/quit", "/hangup", "exit")
#: What operators say to the desk in the room: end the current call, list the queue.
DESK_COMMANDS = ("!next", "!queue")


def fill(text: str, **values: object) -> str:
    """``{name}`` replaced in a menu file's text (no str.format: braces stay braces)."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text


class HotlineDoor(CallerProtocol):
    """One caller: the menu, then (after ``0``) a hub user talking in the hotline room."""

    def __init__(self, api: ChatApi, desk: HotlineDesk) -> None:
        desk.ensure_started()
        super().__init__(desk.menu, desk.caller_settings)
        self.api = api
        self.desk = desk
        self.user: User | None = None
        self.flood: FloodGuard | None = None

    # The menu's hooks -------------------------------------------------------------

    def hand_off(self) -> None:
        # Each trip into the queue has the desk speak in the room: flood control counts it.
        if not self._may_speak():
            if not self._closing:
                self.resume_menu()
            return
        self.desk.enqueue(self)

    def call_line(self, text: str) -> None:
        word = text.strip()
        if not word:
            return
        if word in BACK:
            self.desk.leave(self, "went back to the menu")
            self.say(self.texts["back"])
            self.resume_menu()
        elif word.lower() in HANG_UP:
            self.hang_up()
        elif self.user is not None and self.desk.connected(self):
            if not self._may_speak():
                return
            try:
                self.api.say(self.user, self.desk.room, text)
            except HubError as exc:
                self.say(f"error: {exc}")
        else:
            self.say(fill(self.texts["place"], place=self.desk.place(self)))

    def _may_speak(self) -> bool:
        """The chat doors' flood control (``--flood-rate``, ``--flood-burst``) for callers too."""
        settings = self.api.settings
        if settings.flood_rate is None:
            return True
        if self.flood is None:
            self.flood = FloodGuard(settings.flood_rate, settings.flood_burst, self.clock.time())
        verdict = self.flood.check(self.clock.time())
        if verdict == "warn":
            self.say("error: you are sending too fast; lines dropped")
        elif verdict == "disconnect":
            self.hang_up("error: flooding; goodbye")
        return verdict == "pass"

    def connection_lost(self) -> None:
        super().connection_lost()
        if self.in_call:
            self.desk.leave(self, "hung up")
        if self.user is not None:
            self.api.quit(self.user, "hung up")
            self.user = None

    # Called by the desk -------------------------------------------------------------

    def tell(self, text: str) -> None:
        """Say something from outside ``receive_data`` (the desk's doing): flush it now."""
        self.say(text)
        self.wake()

    def call_ended(self) -> None:
        """The operator ended the call: back to the menu."""
        if self.in_call:
            self.say(self.texts["call_ended"])
            self.resume_menu()
            self.wake()

    # The hub's side: the caller hears the room ----------------------------------------

    def deliver(self, event: HubEvent) -> None:
        me = self.user.nick if self.user is not None else ""
        if isinstance(event, Message):
            # The desk's words and commands are for the operators, not the caller.
            if event.nick not in (me, self.desk.nick) and not event.history \
                    and event.text.strip().lower() not in DESK_COMMANDS:
                self.say(f"{event.nick}: {visible(event.text)}")
        elif isinstance(event, Private):
            if event.sender != me:
                self.say(f"{event.sender} (private): {visible(event.text)}")
        elif isinstance(event, Joined):
            if event.nick != me and self.desk.is_operator_nick(event.nick):
                self.say(fill(self.texts["operator_joined"], nick=event.nick))
        elif isinstance(event, Parted | Quit):
            if event.nick != me:
                self.say(f"* {event.nick} left")
        elif isinstance(event, Kicked):
            if event.nick == me:  # may not act inside the hub's fan-out: a moment later
                self.clock.call_later(0, lambda: self.desk.leave(self, "call ended by "
                                                                 + event.by, ended=True))
            else:
                self.say(f"* {event.nick} left")
        else:
            return
        self.wake()


class HotlineDesk(Bot):
    """The hotline room's bot: the queue of callers, and what the operators are told."""

    def __init__(self, api: ChatApi, clock: Clock, *, menu: Menu, settings: CallerSettings,
                 room: str = "#support", nick: str = "hotline") -> None:
        super().__init__(api, nick, clock, rooms=(room,))
        self.room = room
        self.menu = menu
        self.caller_settings = settings
        self.queue: list[HotlineDoor] = []
        self._numbers = itertools.count(1)

    def ensure_started(self) -> None:
        """Take a nick and sit in the room, once (the first caller's arrival)."""
        if self.user is not None:
            return
        base = self.nick
        for n in itertools.count(1):
            if self.api.nick_available(self.nick) is None:
                break
            self.nick = f"{base}-{n}"
        self.start()

    # Who is who -----------------------------------------------------------------------

    def is_operator(self, user: User) -> bool:
        return not isinstance(user.member, HotlineDoor | Bot)

    def is_operator_nick(self, nick: str) -> bool:
        user = self.api.find_user(nick)
        return user is not None and self.is_operator(user)

    def operators(self) -> list[str]:
        return [u.nick for u in self.members(self.room) if self.is_operator(u)]

    def connected(self, caller: HotlineDoor) -> bool:
        return bool(self.queue) and self.queue[0] is caller

    def place(self, caller: HotlineDoor) -> int:
        return self.queue.index(caller) + 1 if caller in self.queue else 0

    # The queue ------------------------------------------------------------------------

    def enqueue(self, caller: HotlineDoor) -> None:
        """A caller pressed the operator key: register them, queue them, tell everyone."""
        if caller.user is None:
            caller.user = self.api.register(self._caller_nick(), caller,
                                            address=f"hotline:{caller.info.peer}")
        self.queue.append(caller)
        place = len(self.queue)
        self.say(self.room, f"caller {caller.user.nick} is waiting (menu: {caller.path_text()}); "
                            f"place {place} in the queue")
        caller.say(caller.texts["connecting"])
        if not self.operators():
            caller.say(caller.texts["no_operator"])
        if place == 1:
            self._connect(caller)
        else:
            caller.say(fill(caller.texts["place"], place=place))

    def leave(self, caller: HotlineDoor, why: str, *, ended: bool = False) -> None:
        """A caller is done (hung up, back to the menu, or the call ended): next, please."""
        if caller not in self.queue:
            return
        if self.api.shutting_down:  # everyone is leaving: no one to tell
            self.queue.remove(caller)
            return
        index = self.queue.index(caller)
        self.queue.remove(caller)
        nick = caller.user.nick if caller.user is not None else "a caller"
        where = "" if index == 0 else " while waiting"
        self.say(self.room, f"caller {nick} {why}{where}; {len(self.queue)} in the queue")
        if index == 0 and caller.user is not None and fold(self.room) in caller.user.rooms:
            with contextlib.suppress(HubError):
                self.api.part(caller.user, self.room, why)
        if ended:
            caller.call_ended()
        if index == 0 and self.queue:
            self._connect(self.queue[0])
        for place, waiting in enumerate(self.queue[1:], 2):
            if place > index:
                waiting.tell(fill(waiting.texts["place"], place=place))

    def _connect(self, caller: HotlineDoor) -> None:
        while True:
            assert caller.user is not None
            try:
                self.api.join(caller.user, self.room)
                break
            except HubError as exc:
                log.warning("hotline: %s cannot join %s: %s", caller.user.nick, self.room, exc)
                self.queue.remove(caller)
                caller.tell(f"error: {exc}")
                caller.resume_menu()
                if not self.queue:
                    return
                caller = self.queue[0]  # the next one's turn: else the queue stalls
        caller.tell(caller.texts["connected"])
        operators = self.operators()
        if operators:
            self.say(self.room, f"{', '.join(operators)}: you are talking with "
                                f"{caller.user.nick} (menu: {caller.path_text()})")

    def _caller_nick(self) -> str:
        while True:
            nick = f"caller-{next(self._numbers)}"
            if self.api.nick_available(nick) is None:
                return nick

    # What the room does -----------------------------------------------------------------

    def on_join(self, room: str, nick: str) -> None:
        if fold(room) != fold(self.room) or not self.is_operator_nick(nick):
            return
        if self.queue:
            head = self.queue[0].user
            self.say(self.room, f"{nick}: {len(self.queue)} in the queue; talking now: "
                                f"{head.nick if head else '?'} (menu: {self.queue[0].path_text()})")

    def on_leave(self, room: str | None, nick: str, why: str) -> None:
        if room is not None and fold(room) != fold(self.room):
            return
        user = self.api.find_user(nick)
        if user is not None and not self.is_operator(user):
            return
        if self.queue and not self.operators():
            for caller in self.queue:
                caller.tell(caller.texts["no_operator"])

    def on_message(self, message: Message) -> None:
        if fold(message.room) != fold(self.room) or not self.is_operator_nick(message.nick):
            return
        command = message.text.strip().lower()
        if command == DESK_COMMANDS[0]:
            if self.queue:
                self.leave(self.queue[0], f"call ended by {message.nick}", ended=True)
            else:
                self.say(self.room, "no caller in the queue")
        elif command == DESK_COMMANDS[1]:
            self.say(self.room, self.describe())

    def describe(self) -> str:
        if not self.queue:
            return "no caller in the queue"
        return "queue: " + ", ".join(
            f"{n}. {c.user.nick if c.user else '?'} ({c.path_text()})"
            for n, c in enumerate(self.queue, 1))
