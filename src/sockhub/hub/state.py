"""The hub's state and the apply step: the only code that changes who is where.

Every change reaches the hub twice (see :mod:`sockhub.hub.hub`): a command
checks it and describes it as an event; the chat service stores what must
be stored and hands the event to the bus, which calls :meth:`HubState.apply`
in every process. ``apply`` changes the state and delivers the event to the
members it concerns, so state and fan-out can never disagree.

A module of its own because this is the half a bus replays: it checks
nothing (the event was checked where it was made) and must give every
process the same state from the same events.

Large rooms are *quiet* (``quiet_above``): past that many members, a
join, part or quit in the room is delivered only to the member concerned and
the room's operators, as an IRC server's auditorium mode (``+u``) does, so
that N arrivals cost O(N) deliveries rather than O(N²).

Members are delivered to synchronously and must only queue: a slow client
cannot stall a room because its door drops it rather than block here. A
member whose ``deliver`` raises anyway is logged and skipped
(``hub/sessions.py: deliver_safely``): the rest of the room still gets it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import assert_never

from sockhub.hub.events import (
    AccountChanged,
    AwayChanged,
    BanChanged,
    HubEvent,
    Invited,
    Joined,
    Kicked,
    Message,
    MessageRun,
    ModeChanged,
    NickChanged,
    Parted,
    Private,
    Quit,
    RealnameChanged,
    Signal,
    TopicChanged,
    Wallops,
)
from sockhub.hub.model import Departed, Registration, Room, RoomState, User
from sockhub.hub.modes import apply_modes, is_banned
from sockhub.hub.names import fold
from sockhub.hub.sessions import deliver_run_safely, deliver_safely, delivery_failed

log = logging.getLogger("sockhub.hub")

#: Given-up nicks remembered for WHOWAS (RFC 2812 §3.6.3), all nicks together.
WHOWAS_MAX = 1000


class HubState:
    """All users, rooms and bans of one chat service, and :meth:`apply`.

    Keys are folded names (:func:`~sockhub.hub.names.fold`).

    Rooms with state (a topic, settings other than ``+nt``, bans:
    :class:`~sockhub.hub.model.RoomState`) are kept in ``saved`` while
    empty; the chat service stores them, so they survive restarts too.
    Operator status is not kept: it belongs to people present. The first
    to join a room that has none gets operator status (as on IRC) only if
    the room has no kept state; otherwise anyone could take over an
    emptied room's topic, settings and bans by being first back, which is
    what registered channels on Ergo and ChanServ prevent. Server
    operators may still moderate it and give ``+o``.

    Args:
        protected: keys of the rooms whose topic only server operators may
            set and that have no room operators.
        quiet_above: rooms with more members than this are quiet (see the
            module's docstring); None: every room announces everything.
    """

    __slots__ = ("bans", "departed", "invisible", "opers", "protected", "quiet_above",
                 "registered", "rooms", "saved", "users")

    def __init__(self, protected: set[str] | None = None, quiet_above: int | None = None) -> None:
        self.protected = protected if protected is not None else set()
        self.quiet_above = quiet_above
        self.users: dict[str, User] = {}
        self.rooms: dict[str, Room] = {}
        self.bans: dict[str, list[str]] = {}  # room key → masks, kept when a room empties
        self.saved: dict[str, RoomState] = {}  # room key → state, kept when a room empties
        #: Registered rooms by key (founder, operator accounts); the chat service keeps them.
        self.registered: dict[str, Registration] = {}

        #: The users with IRC's +i and the server operators: LUSERS counts them
        #: on every registration, and a scan of every user was O(N) each.
        self.invisible: set[User] = set()
        self.opers: set[User] = set()

        #: Nicks given up (quit or changed), oldest first: WHOWAS's memory.
        self.departed: deque[Departed] = deque(maxlen=WHOWAS_MAX)

    # Queries ----------------------------------------------------------------

    def find_user(self, nick: str) -> User | None:
        return self.users.get(fold(nick))

    def find_room(self, name: str) -> Room | None:
        return self.rooms.get(fold(name))

    def is_banned(self, room_name: str, user: User) -> bool:
        masks = self.bans.get(fold(room_name))
        return masks is not None and is_banned(masks, user)

    def has_state(self, key: str) -> bool:
        """Does the room keep state across emptying: a topic, settings, bans, a registration?"""
        return key in self.saved or bool(self.bans.get(key)) or key in self.registered

    def opens_as_operator(self, user: User, key: str) -> bool:
        """Does ``user``, creating room ``key`` by joining it, become its operator?

        Never in a registered room: there operator status follows accounts
        (its founder's and operators'), and the chat service gives it, as a
        mode change everyone sees, to whoever arrives logged in to one
        (``services/rooms.py``), whether or not they are first.
        """
        return key not in self.protected and not self.has_state(key)

    def whowas(self, nick: str, count: int = 0) -> list[Departed]:
        """Who held ``nick`` before, the most recent first; at most ``count`` (0: all)."""
        key = fold(nick)
        found = [d for d in reversed(self.departed) if fold(d.nick) == key]
        return found[:count] if count > 0 else found

    def is_quiet(self, room: Room) -> bool:
        """Whether arrivals in and departures from ``room`` go only to its operators."""
        limit = self.quiet_above
        return limit is not None and len(room.members) > limit

    # Apply: change state, then deliver -------------------------------------

    def apply(self, event: HubEvent) -> None:
        """Apply an event from the bus: update state and deliver it."""
        match event:  # the commonest first: a class pattern is an isinstance check
            case Message():
                self._apply_message(event)
            case Private():
                self._apply_private(event)
            case Signal():
                self._apply_signal(event)
            case Joined():
                self._apply_joined(event)
            case Parted() | Kicked():
                self._apply_departure(event)
            case Quit():
                self._apply_quit(event)
            case NickChanged():
                self._apply_nick(event)
            case TopicChanged():
                self._apply_topic(event)
            case BanChanged():
                self._apply_ban(event)
            case ModeChanged():
                self._apply_modes(event)
            case AwayChanged():
                self._apply_away(event)
            case Invited():
                self._apply_invited(event)
            case RealnameChanged():
                self._apply_realname(event)
            case Wallops():
                self._apply_wallops(event)
            case AccountChanged():
                self._apply_account(event)
            case _:
                assert_never(event)  # mypy checks that every HubEvent is handled

    def _apply_message(self, event: Message) -> None:
        room = self.rooms.get(fold(event.room))
        if room is not None:
            sender = self.users.get(fold(event.nick))
            if sender is not None:
                sender.active = event.ts
            _deliver(room.members.values(), event)

    def apply_messages(self, messages: list[Message]) -> None:
        """Apply a group commit's room messages, in order: each run in one room as one.

        Equivalent to :meth:`apply` of each message; a run of consecutive
        messages to the same room reaches each member as one
        :class:`MessageRun`, which a door queues as one piece.
        """
        start, count = 0, len(messages)
        while start < count:
            room = messages[start].room  # the room's own name (Hub.say): equal strings
            end = start + 1
            while end < count and messages[end].room == room:
                end += 1
            try:  # a failure costs its own room's run, not the rest of the batch
                if end - start == 1:
                    self._apply_message(messages[start])
                else:
                    self._apply_run(MessageRun(messages[start:end]))
            except Exception:
                log.exception("hub: could not apply %d messages to %s", end - start, room)
            start = end

    def _apply_run(self, run: MessageRun) -> None:
        room = self.rooms.get(fold(run.room))
        if room is None:
            return
        users = self.users
        # Each sender's last message (a run has few senders): one fold each.
        for nick, ts in {message.nick: message.ts for message in run.messages}.items():
            sender = users.get(fold(nick))
            if sender is not None:
                sender.active = ts
        for user in room.members.values():
            deliver_run_safely(user.member, run)

    def _apply_private(self, event: Private) -> None:
        target = self.users.get(fold(event.target))
        sender = self.users.get(fold(event.sender))
        if sender is not None:
            sender.active = event.ts
        if target is not None:
            deliver_safely(target.member, event)
        if sender is not None and sender is not target:
            deliver_safely(sender.member, event)

    def _apply_signal(self, event: Signal) -> None:
        if event.room is not None:
            room = self.rooms.get(fold(event.room))
            if room is not None:
                _deliver(room.members.values(), event)
            return
        target = self.users.get(fold(event.target or ""))
        sender = self.users.get(fold(event.sender))
        if target is not None:
            deliver_safely(target.member, event)
        if sender is not None and sender is not target:
            deliver_safely(sender.member, event)

    def _apply_joined(self, event: Joined) -> None:
        user = self.users.get(fold(event.nick))
        if user is None:
            return
        key = fold(event.room)
        room = self.rooms.get(key)
        if room is None:  # a new room is +nt, as IRC servers make it
            room = Room(event.room, created=event.ts)
            saved = self.saved.get(key)
            if saved is not None:
                saved.restore(room)
            room.protected = room.protected or key in self.protected
            if self.opens_as_operator(user, key):  # protected rooms belong to server operators
                room.operators.add(user.key)
            self.rooms[key] = room
        room.members[user.key] = user
        room.invited.discard(user.key)  # an invitation is good for one join
        user.rooms[room.key] = room  # the room's own key string, shared by its members
        _deliver(_audience(room, user) if self.is_quiet(room) else room.members.values(), event)

    def _apply_departure(self, event: Parted | Kicked) -> None:
        """A part or a kick: everyone in the room hears it, the leaver included.

        A part from a quiet room is told only to the leaver and the operators;
        a kick, an operator's act, is always told to everyone.
        """
        user = self.users.get(fold(event.nick))
        room = self.rooms.get(fold(event.room))
        if user is None or room is None:
            return
        quiet = type(event) is Parted and self.is_quiet(room)
        _deliver(_audience(room, user) if quiet else room.members.values(), event)
        self._leave(user, room)

    def _apply_quit(self, event: Quit) -> None:
        user = self.users.get(fold(event.nick))
        if user is None:
            return
        for other in self._neighbours(user, quiet=True):
            deliver_safely(other.member, event)
        for room in list(user.rooms.values()):
            self._leave(user, room)
        self.forget(user)
        self._remember(user, event.ts)

    def forget(self, user: User) -> None:
        """Take ``user`` out of the users and the LUSERS counts (a quit, a shutdown)."""
        if self.users.get(user.key) is user:
            del self.users[user.key]
        self.invisible.discard(user)
        self.opers.discard(user)

    def _apply_nick(self, event: NickChanged) -> None:
        user = self.users.get(fold(event.old))
        if user is None:
            return
        recipients = self._neighbours(user)
        if fold(event.old) != fold(event.new):  # a change of case gives up no nick
            self._remember(user, event.ts)
        old_key = user.key
        del self.users[old_key]
        user.renamed(event.new)
        self.users[user.key] = user
        for room in user.rooms.values():
            del room.members[old_key]
            room.members[user.key] = user
            for keys in (room.operators, room.voiced):
                if old_key in keys:
                    keys.discard(old_key)
                    keys.add(user.key)
        for room in self.rooms.values():
            if old_key in room.invited:
                room.invited.discard(old_key)
                room.invited.add(user.key)
        deliver_safely(user.member, event)
        for other in recipients:
            deliver_safely(other.member, event)

    def _apply_topic(self, event: TopicChanged) -> None:
        room = self.rooms.get(fold(event.room))
        if room is None:
            return
        room.topic, room.topic_by, room.topic_ts = event.topic, event.nick, event.ts
        room.topic_username, room.topic_address = event.username, event.address
        self.keep(room)
        _deliver(room.members.values(), event)

    def _apply_ban(self, event: BanChanged) -> None:
        key = fold(event.room)
        masks = self.bans.setdefault(key, [])
        if event.added:
            if event.mask not in masks:
                masks.append(event.mask)
        elif event.mask in masks:
            masks.remove(event.mask)
        room = self.rooms.get(key)
        if room is not None:
            _deliver(room.members.values(), event)

    def _apply_modes(self, event: ModeChanged) -> None:
        room = self.rooms.get(fold(event.room))
        if room is None:
            return
        apply_modes(room, event.changes)
        self.keep(room)
        _deliver(room.members.values(), event)

    def _apply_away(self, event: AwayChanged) -> None:
        user = self.users.get(fold(event.nick))
        if user is None:
            return
        user.away = event.message
        self._tell_with_neighbours(user, event)

    def _apply_realname(self, event: RealnameChanged) -> None:
        user = self.users.get(fold(event.nick))
        if user is None:
            return
        user.realname = event.realname
        self._tell_with_neighbours(user, event)

    def _apply_wallops(self, event: Wallops) -> None:
        """To every user with ``wallops`` (+w), and back to the sender as confirmation."""
        sender = fold(event.nick)
        for user in list(self.users.values()):
            if user.wallops or user.key == sender:
                deliver_safely(user.member, event)

    def _apply_account(self, event: AccountChanged) -> None:
        user = self.users.get(fold(event.nick))
        if user is None:
            return
        user.account = event.account
        self._tell_with_neighbours(user, event)

    def _tell_with_neighbours(self, user: User, event: HubEvent) -> None:
        """Deliver to ``user`` and to everyone sharing a room with them."""
        deliver_safely(user.member, event)
        for other in self._neighbours(user):
            deliver_safely(other.member, event)

    def _apply_invited(self, event: Invited) -> None:
        room = self.rooms.get(fold(event.room))
        target = self.users.get(fold(event.nick))
        if room is None or target is None:
            return
        room.invited.add(target.key)
        deliver_safely(target.member, event)

    def keep(self, room: Room) -> None:
        """Remember ``room``'s state in ``saved`` (forget it if it is a new room's)."""
        state = RoomState.of(room)
        if state.is_default and room.key not in self.registered:  # registered: never forgotten
            self.saved.pop(room.key, None)
        else:
            self.saved[room.key] = state

    def _remember(self, user: User, ts: float) -> None:
        self.departed.append(
            Departed(user.nick, user.username or user.nick, user.address, user.realname, ts)
        )

    def _leave(self, user: User, room: Room) -> None:
        room.members.pop(user.key, None)
        room.operators.discard(user.key)
        room.voiced.discard(user.key)
        user.rooms.pop(room.key, None)
        if not room.members:
            del self.rooms[room.key]

    def _neighbours(self, user: User, *, quiet: bool = False) -> list[User]:
        """Everyone sharing at least one room with ``user``, once each, not them.

        With ``quiet``, of a quiet room only its operators.
        """
        seen: dict[str, User] = {}
        for room in user.rooms.values():
            if quiet and self.is_quiet(room):
                seen.update((u.key, u) for u in room.operators_present())
            else:
                seen.update(room.members)
        seen.pop(user.key, None)
        return list(seen.values())


def _audience(room: Room, user: User) -> list[User]:
    """Who hears of ``user`` arriving in or leaving a quiet room: they and its operators."""
    return [user, *(u for u in room.operators_present() if u is not user)]


def _deliver(users: Iterable[User], event: HubEvent) -> None:
    """Each user in turn; one whose door raises does not stop the others."""
    for user in users:
        try:  # inlined deliver_safely: this is the fan-out loop
            user.member.deliver(event)
        except Exception:
            delivery_failed(user.member, event)
