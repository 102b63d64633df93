"""Hub: users, rooms, permissions and fan-out.

Theory of operation
-------------------

Every change is made in two steps. A *command* method (``join``,
``say``, ``nick`` …) checks the caller may do it, raising :class:`HubError`
with a reason otherwise, and returns the event describing the change,
without applying it. The chat service then does what must happen first
(a room message is stored in history before anyone sees it) and hands the
event to the bus, which calls :meth:`Hub.apply` — in this process now, in
every process once a Redis bus exists. ``apply`` changes the state and
delivers the event to the members it concerns, so state and fan-out can
never disagree.

Members are delivered to synchronously and must only queue: a slow client
cannot stall a room because its door drops it rather than block here.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field

from sockhub.hub.events import (
    BanChanged,
    HubEvent,
    Joined,
    Kicked,
    Member,
    Message,
    NickChanged,
    Parted,
    Private,
    Quit,
    TopicChanged,
)
from sockhub.hub.names import TOPIC_MAX, fold, nick_problem, room_problem

#: Longest message text accepted from any door, in characters; IRC's 512-byte
#: lines bound what an IRC user can see anyway.
MESSAGE_MAX = 4000


class HubError(Exception):
    """A command refused; ``code`` is stable for doors, the message for people.

    Codes: ``invalid_nick``, ``nick_in_use``, ``invalid_room``, ``no_such_room``,
    ``no_such_nick``, ``not_in_room``, ``already_in_room``, ``banned``,
    ``not_operator``, ``invalid_text``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(eq=False, slots=True)
class User:
    """A connected user. ``member`` is the door's delivery end."""

    nick: str
    member: Member
    address: str = ""
    username: str = ""
    is_oper: bool = False
    rooms: dict[str, Room] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return fold(self.nick)

    @property
    def hostmask(self) -> str:
        return f"{self.nick}!{self.username or self.nick}@{self.address or 'unknown'}"


@dataclass(eq=False, slots=True)
class Room:
    name: str
    members: dict[str, User] = field(default_factory=dict)
    operators: set[str] = field(default_factory=set)
    topic: str = ""
    topic_by: str = ""
    topic_ts: float = 0.0
    protected: bool = False
    created: float = 0.0

    @property
    def key(self) -> str:
        return fold(self.name)


class Hub:
    """All rooms and users of one chat service.

    Args:
        default_room: the room every user joins on arrival.
        protected_rooms: rooms whose topic only operators may set.
    """

    def __init__(
        self, *, default_room: str = "#lobby", protected_rooms: Iterable[str] = ()
    ) -> None:
        self.default_room = default_room
        self.protected = {fold(name) for name in protected_rooms}
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
        if not masks:
            return False
        nick, host = fold(user.nick), user.address
        hostmask = fold(user.hostmask)
        for mask in masks:
            if "!" in mask or "@" in mask:
                if fnmatch.fnmatchcase(hostmask, mask):
                    return True
            elif fnmatch.fnmatchcase(nick, mask) or fnmatch.fnmatchcase(host, mask):
                return True
        return False

    def may_moderate(self, user: User, room: Room) -> bool:
        return user.is_oper or user.key in room.operators

    # Registration (local to this process) ---------------------------------

    def register(self, nick: str, member: Member, *, address: str = "", username: str = "") -> User:
        """Add a user under ``nick``; they are in no room yet."""
        self._check_nick_free(nick)
        user = User(nick=nick, member=member, address=address, username=username)
        self.users[user.key] = user
        return user

    def _check_nick_free(self, nick: str, current: User | None = None) -> None:
        problem = nick_problem(nick)
        if problem:
            raise HubError("invalid_nick", f"invalid nick {nick!r}: {problem}")
        holder = self.users.get(fold(nick))
        if holder is not None and holder is not current:
            raise HubError("nick_in_use", f"nick {nick} is already in use")

    # Commands: check and describe ------------------------------------------

    def join(self, user: User, room_name: str, now: float) -> Joined:
        problem = room_problem(room_name)
        if problem:
            raise HubError("invalid_room", f"invalid room {room_name!r}: {problem}")
        room = self.find_room(room_name)
        if room is not None and user.key in room.members:
            raise HubError("already_in_room", f"you are already in {room.name}")
        if self.is_banned(room_name, user):
            raise HubError("banned", f"you are banned from {room_name}")
        return Joined(room.name if room else room_name, user.nick, now)

    def part(self, user: User, room_name: str, reason: str, now: float) -> Parted:
        room = self._member_room(user, room_name)
        return Parted(room.name, user.nick, reason, now)

    def say(
        self, user: User, room_name: str, text: str, now: float, *, action: bool = False
    ) -> Message:
        room = self._member_room(user, room_name)
        self._check_text(text)
        return Message(room.name, user.nick, text, now, action)

    def private(
        self, user: User, target: str, text: str, now: float, *, action: bool = False
    ) -> Private:
        other = self.find_user(target)
        if other is None:
            raise HubError("no_such_nick", f"no such nick: {target}")
        self._check_text(text)
        return Private(user.nick, other.nick, text, now, action)

    def set_topic(self, user: User, room_name: str, topic: str, now: float) -> TopicChanged:
        room = self._member_room(user, room_name)
        if room.protected and not self.may_moderate(user, room):
            raise HubError("not_operator", f"only operators may set the topic of {room.name}")
        if len(topic) > TOPIC_MAX:
            raise HubError("invalid_text", f"a topic is at most {TOPIC_MAX} characters")
        return TopicChanged(room.name, user.nick, topic, now)

    def rename(self, user: User, new: str, now: float) -> NickChanged | None:
        """Describe a nick change; None when only the case is the same."""
        self._check_nick_free(new, current=user)
        if new == user.nick:
            return None
        return NickChanged(user.nick, new, now)

    def kick(self, user: User, room_name: str, target: str, reason: str, now: float) -> Kicked:
        room = self.find_room(room_name)
        if room is None:
            raise HubError("no_such_room", f"no such room: {room_name}")
        if not self.may_moderate(user, room):
            raise HubError("not_operator", f"you are not an operator of {room.name}")
        victim = room.members.get(fold(target))
        if victim is None:
            raise HubError("not_in_room", f"{target} is not in {room.name}")
        return Kicked(room.name, victim.nick, user.nick, reason, now)

    def ban(
        self, user: User, room_name: str, mask: str, now: float, *, add: bool = True
    ) -> BanChanged:
        problem = room_problem(room_name)
        if problem:
            raise HubError("invalid_room", f"invalid room {room_name!r}: {problem}")
        room = self.find_room(room_name)
        if not user.is_oper and (room is None or user.key not in room.operators):
            raise HubError("not_operator", f"you are not an operator of {room_name}")
        if not mask or " " in mask:
            raise HubError("invalid_text", "a ban mask is a nick, an address or nick!user@host")
        name = room.name if room else room_name
        masks = self.bans.get(fold(room_name), [])
        if add and fold(mask) in masks:
            raise HubError("invalid_text", f"{mask} is already banned from {name}")
        if not add and fold(mask) not in masks:
            raise HubError("invalid_text", f"{mask} is not banned from {name}")
        return BanChanged(name, fold(mask), user.nick, add, now)

    def quit(self, user: User, reason: str, now: float) -> Quit:
        return Quit(user.nick, reason, now)

    def _member_room(self, user: User, room_name: str) -> Room:
        room = user.rooms.get(fold(room_name))
        if room is None:
            if self.find_room(room_name) is None:
                raise HubError("no_such_room", f"no such room: {room_name}")
            raise HubError("not_in_room", f"you are not in {room_name}")
        return room

    @staticmethod
    def _check_text(text: str) -> None:
        if not text:
            raise HubError("invalid_text", "nothing to send")
        if len(text) > MESSAGE_MAX:
            raise HubError("invalid_text", f"a message is at most {MESSAGE_MAX} characters")

    # Apply: change state, then deliver -------------------------------------

    def apply(self, event: HubEvent) -> None:
        """Apply an event from the bus: update state and deliver it."""
        handler = _APPLY[type(event)]
        handler(self, event)

    def _apply_message(self, event: Message) -> None:
        room = self.rooms.get(fold(event.room))
        if room is not None:
            _deliver(room.members.values(), event)

    def _apply_private(self, event: Private) -> None:
        target = self.users.get(fold(event.target))
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
        user.rooms[key] = room
        _deliver(room.members.values(), event)

    def _apply_parted(self, event: Parted) -> None:
        user = self.users.get(fold(event.nick))
        room = self.rooms.get(fold(event.room))
        if user is None or room is None:
            return
        _deliver(room.members.values(), event)
        self._leave(user, room)

    def _apply_kicked(self, event: Kicked) -> None:
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
            if old_key in room.operators:
                room.operators.discard(old_key)
                room.operators.add(user.key)
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

    def _leave(self, user: User, room: Room) -> None:
        room.members.pop(user.key, None)
        room.operators.discard(user.key)
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


_APPLY = {
    Message: Hub._apply_message,
    Private: Hub._apply_private,
    Joined: Hub._apply_joined,
    Parted: Hub._apply_parted,
    Kicked: Hub._apply_kicked,
    Quit: Hub._apply_quit,
    NickChanged: Hub._apply_nick,
    TopicChanged: Hub._apply_topic,
    BanChanged: Hub._apply_ban,
}
