"""The hub's state and the apply step: the only code that changes who is where.

Every change reaches the hub twice (see :mod:`sockhub.hub.hub`): a command
checks it and describes it as an event; the chat service stores what must
be stored and hands the event to the bus, which calls :meth:`HubState.apply`
in every process. ``apply`` changes the state and delivers the event to the
members it concerns, so state and fan-out can never disagree.

A module of its own because this is the half a bus replays: it checks
nothing (the event was checked where it was made) and must give every
process the same state from the same events.

Members are delivered to synchronously and must only queue: a slow client
cannot stall a room because its door drops it rather than block here.
"""

from __future__ import annotations

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
    ModeChanged,
    NickChanged,
    Parted,
    Private,
    Quit,
    Signal,
    TopicChanged,
)
from sockhub.hub.model import Room, User
from sockhub.hub.modes import apply_modes, is_banned
from sockhub.hub.names import fold


class HubState:
    """All users, rooms and bans of one chat service, and :meth:`apply`.

    Keys are folded names (:func:`~sockhub.hub.names.fold`).

    Args:
        protected: keys of the rooms whose topic only server operators may
            set and that have no room operators.
    """

    __slots__ = ("bans", "protected", "rooms", "users")

    def __init__(self, protected: set[str] | None = None) -> None:
        self.protected = protected if protected is not None else set()
        self.users: dict[str, User] = {}
        self.rooms: dict[str, Room] = {}
        self.bans: dict[str, list[str]] = {}  # room key → masks, kept when a room empties

    # Queries ----------------------------------------------------------------

    def find_user(self, nick: str) -> User | None:
        return self.users.get(fold(nick))

    def find_room(self, name: str) -> Room | None:
        return self.rooms.get(fold(name))

    def is_banned(self, room_name: str, user: User) -> bool:
        masks = self.bans.get(fold(room_name))
        return masks is not None and is_banned(masks, user)

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

    def _apply_private(self, event: Private) -> None:
        target = self.users.get(fold(event.target))
        sender = self.users.get(fold(event.sender))
        if sender is not None:
            sender.active = event.ts
        if target is not None:
            target.member.deliver(event)
        if sender is not None and sender is not target:
            sender.member.deliver(event)

    def _apply_signal(self, event: Signal) -> None:
        if event.room is not None:
            room = self.rooms.get(fold(event.room))
            if room is not None:
                _deliver(room.members.values(), event)
            return
        target = self.users.get(fold(event.target or ""))
        sender = self.users.get(fold(event.sender))
        if target is not None:
            target.member.deliver(event)
        if sender is not None and sender is not target:
            sender.member.deliver(event)

    def _apply_joined(self, event: Joined) -> None:
        user = self.users.get(fold(event.nick))
        if user is None:
            return
        key = fold(event.room)
        room = self.rooms.get(key)
        if room is None:
            room = Room(event.room, protected=key in self.protected, created=event.ts)
            if not room.protected:  # whoever creates a room runs it, as on IRC;
                room.operators.add(user.key)  # protected rooms belong to server operators
            self.rooms[key] = room
        room.members[user.key] = user
        room.invited.discard(user.key)  # an invitation is good for one join
        user.rooms[key] = room
        _deliver(room.members.values(), event)

    def _apply_departure(self, event: Parted | Kicked) -> None:
        """A part or a kick: everyone in the room hears it, the leaver included."""
        user = self.users.get(fold(event.nick))
        room = self.rooms.get(fold(event.room))
        if user is None or room is None:
            return
        _deliver(room.members.values(), event)
        self._leave(user, room)

    def _apply_quit(self, event: Quit) -> None:
        user = self.users.get(fold(event.nick))
        if user is None:
            return
        for other in self._neighbours(user):
            other.member.deliver(event)
        for room in list(user.rooms.values()):
            self._leave(user, room)
        del self.users[user.key]

    def _apply_nick(self, event: NickChanged) -> None:
        user = self.users.get(fold(event.old))
        if user is None:
            return
        recipients = self._neighbours(user)
        old_key = user.key
        del self.users[old_key]
        user.nick = event.new
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
        user.member.deliver(event)
        for other in recipients:
            other.member.deliver(event)

    def _apply_topic(self, event: TopicChanged) -> None:
        room = self.rooms.get(fold(event.room))
        if room is None:
            return
        room.topic, room.topic_by, room.topic_ts = event.topic, event.nick, event.ts
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
        _deliver(room.members.values(), event)

    def _apply_away(self, event: AwayChanged) -> None:
        user = self.users.get(fold(event.nick))
        if user is None:
            return
        user.away = event.message
        user.member.deliver(event)
        for other in self._neighbours(user):
            other.member.deliver(event)

    def _apply_account(self, event: AccountChanged) -> None:
        user = self.users.get(fold(event.nick))
        if user is None:
            return
        user.account = event.account
        user.member.deliver(event)
        for other in self._neighbours(user):
            other.member.deliver(event)

    def _apply_invited(self, event: Invited) -> None:
        room = self.rooms.get(fold(event.room))
        target = self.users.get(fold(event.nick))
        if room is None or target is None:
            return
        room.invited.add(target.key)
        target.member.deliver(event)

    def _leave(self, user: User, room: Room) -> None:
        room.members.pop(user.key, None)
        room.operators.discard(user.key)
        room.voiced.discard(user.key)
        user.rooms.pop(room.key, None)
        if not room.members:
            del self.rooms[room.key]

    def _neighbours(self, user: User) -> list[User]:
        """Everyone sharing at least one room with ``user``, once each, not them."""
        seen: dict[str, User] = {}
        for room in user.rooms.values():
            seen.update(room.members)
        seen.pop(user.key, None)
        return list(seen.values())


def _deliver(users: Iterable[User], event: HubEvent) -> None:
    for user in users:
        user.member.deliver(event)
