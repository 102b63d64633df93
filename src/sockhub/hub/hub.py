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

Command methods also clean the free text they are given (messages, topics,
reasons, away messages: :func:`~sockhub.hub.names.clean_text`), so no event
carries a control character to any door, live or replayed, but IRC's
formatting codes.

Members are delivered to synchronously and must only queue: a slow client
cannot stall a room because its door drops it rather than block here.

Rooms carry the settings every chat door can honour: a topic lock, a
password (IRC's "key"), a member limit, invite-only, moderated (only operators and voiced members
speak) and no-external-messages (only members speak). IRC spells them as
channel modes ``+t +k +l +i +m +n``; the hub knows them by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sockhub.hub.events import (
    AwayChanged,
    BanChanged,
    HubEvent,
    Invited,
    Joined,
    Kicked,
    Member,
    Message,
    Meta,
    ModeChange,
    ModeChanged,
    NickChanged,
    Parted,
    Private,
    Quit,
    Signal,
    TopicChanged,
)
from sockhub.hub.names import (
    AWAY_MAX,
    LIMIT_MAX,
    ROOMS_PER_USER,
    TOPIC_MAX,
    clean_text,
    fold,
    mask_match,
    nick_problem,
    password_problem,
    room_problem,
)

#: Longest message text accepted from any door, in characters; IRC's 512-byte
#: lines bound what an IRC user can see anyway.
MESSAGE_MAX = 4000

#: Room attribute behind each boolean room flag of :class:`ModeChange`.
_ROOM_ATTRS = {
    "moderated": "moderated",
    "no_external": "no_external",
    "invite_only": "invite_only",
    "topic_lock": "protected",
}


class HubError(Exception):
    """A command refused; ``code`` is stable for doors, the message for people.

    Codes: ``invalid_nick``, ``nick_in_use``, ``invalid_room``, ``no_such_room``,
    ``no_such_nick``, ``not_in_room`` (the caller is not a member, or, with
    ``target`` set, that user is not), ``already_in_room``,
    ``banned``, ``invite_only``, ``bad_password``, ``full``, ``too_many_rooms``,
    ``cannot_send``, ``not_operator``, ``invalid_text``, ``invalid_password``,
    ``invalid_limit``.

    ``target`` names what the error is about when that is not obvious from
    the command (the nick of ``no_such_nick`` in a mode change, say), so a
    door can put it in its reply.
    """

    def __init__(self, code: str, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.target = target


@dataclass(eq=False, slots=True)
class User:
    """A connected user. ``member`` is the door's delivery end.

    ``address`` is the peer's IP address; ``username`` and ``realname`` are
    what the user said about themselves (IRC's USER), empty for doors that do
    not ask. ``active`` is when they last said something (for idle times).
    """

    nick: str
    member: Member
    address: str = ""
    username: str = ""
    realname: str = ""
    is_oper: bool = False
    invisible: bool = False
    secure: bool = False
    away: str | None = None
    signon: float = 0.0
    active: float = 0.0
    rooms: dict[str, Room] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return fold(self.nick)

    @property
    def hostmask(self) -> str:
        return f"{self.nick}!{self.username or self.nick}@{self.address or 'unknown'}"


@dataclass(eq=False, slots=True)
class Room:
    """A room and its settings. Member sets hold user keys (folded nicks)."""

    name: str
    members: dict[str, User] = field(default_factory=dict)
    operators: set[str] = field(default_factory=set)
    voiced: set[str] = field(default_factory=set)
    invited: set[str] = field(default_factory=set)
    topic: str = ""
    topic_by: str = ""
    topic_ts: float = 0.0
    protected: bool = False  # the topic lock: only operators set the topic
    moderated: bool = False
    no_external: bool = True
    invite_only: bool = False
    password: str | None = None  # IRC's channel key
    limit: int | None = None
    created: float = 0.0

    @property
    def key(self) -> str:
        return fold(self.name)

    def may_speak(self, user: User) -> bool:
        """Operators and voiced members speak even where others may not."""
        return user.key in self.operators or user.key in self.voiced


class Hub:
    """All rooms and users of one chat service.

    Args:
        default_room: the room line-door users join on arrival.
        protected_rooms: rooms whose topic only server operators may set and
            that have no room operators.
        rooms_per_user: how many rooms one user may be in at once.
    """

    def __init__(
        self,
        *,
        default_room: str = "#lobby",
        protected_rooms: Iterable[str] = (),
        rooms_per_user: int = ROOMS_PER_USER,
    ) -> None:
        self.default_room = default_room
        self.protected = {fold(name) for name in protected_rooms}
        self.rooms_per_user = rooms_per_user
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
                if mask_match(mask, hostmask):
                    return True
            elif mask_match(mask, nick) or mask_match(mask, host):
                return True
        return False

    def may_moderate(self, user: User, room: Room) -> bool:
        return user.is_oper or user.key in room.operators

    # Registration (local to this process) ---------------------------------

    def register(
        self,
        nick: str,
        member: Member,
        *,
        address: str = "",
        username: str = "",
        realname: str = "",
        secure: bool = False,
        now: float = 0.0,
    ) -> User:
        """Add a user under ``nick``; they are in no room yet."""
        self._check_nick_free(nick)
        user = User(
            nick=nick, member=member, address=address, username=username,
            realname=clean_text(realname),
            secure=secure, signon=now, active=now,
        )
        self.users[user.key] = user
        return user

    def nick_available(self, nick: str) -> HubError | None:
        """Why ``nick`` cannot be taken now, or None."""
        try:
            self._check_nick_free(nick)
        except HubError as exc:
            return exc
        return None

    def _check_nick_free(self, nick: str, current: User | None = None) -> None:
        problem = nick_problem(nick)
        if problem:
            raise HubError("invalid_nick", f"invalid nick {nick!r}: {problem}", target=nick)
        holder = self.users.get(fold(nick))
        if holder is not None and holder is not current:
            raise HubError("nick_in_use", f"nick {nick} is already in use", target=nick)

    # Commands: check and describe ------------------------------------------

    def join(
        self, user: User, room_name: str, now: float, *, password: str | None = None
    ) -> Joined:
        problem = room_problem(room_name)
        if problem:
            raise HubError("invalid_room", f"invalid room {room_name!r}: {problem}")
        room = self.find_room(room_name)
        if room is not None and user.key in room.members:
            raise HubError("already_in_room", f"you are already in {room.name}")
        if len(user.rooms) >= self.rooms_per_user:
            raise HubError(
                "too_many_rooms", f"you are in {self.rooms_per_user} rooms already; leave one first"
            )
        # An invitation from an operator lets its holder in once, past every
        # check below (as ircu and ergo do).
        if room is not None and user.key in room.invited:
            return Joined(room.name, user.nick, now)
        if self.is_banned(room_name, user):
            raise HubError("banned", f"you are banned from {room_name}")
        if room is not None:
            if room.invite_only:
                raise HubError("invite_only", f"{room.name} is invite-only")
            if room.password is not None and password != room.password:
                raise HubError("bad_password", f"{room.name} needs the right password")
            if room.limit is not None and len(room.members) >= room.limit:
                raise HubError("full", f"{room.name} is full ({room.limit} members)")
        return Joined(room.name if room else room_name, user.nick, now)

    def part(self, user: User, room_name: str, reason: str, now: float) -> Parted:
        room = self._member_room(user, room_name)
        return Parted(room.name, user.nick, clean_text(reason), now)

    def say(
        self,
        user: User,
        room_name: str,
        text: str,
        now: float,
        *,
        action: bool = False,
        notice: bool = False,
        meta: Meta = (),
    ) -> Message:
        room = self._speaking_room(user, room_name)
        text = self._checked_text(text)
        return Message(room.name, user.nick, text, now, action, notice=notice,
                       meta=clean_meta(meta))

    def private(
        self,
        user: User,
        target: str,
        text: str,
        now: float,
        *,
        action: bool = False,
        notice: bool = False,
        meta: Meta = (),
    ) -> Private:
        other = self.find_user(target)
        if other is None:
            raise HubError("no_such_nick", f"no such nick: {target}", target=target)
        text = self._checked_text(text)
        return Private(user.nick, other.nick, text, now, action, notice=notice,
                       meta=clean_meta(meta))

    def signal(self, user: User, target: str, meta: Meta, now: float) -> Signal:
        """Metadata without text, to a room or a user (IRCv3 TAGMSG)."""
        if target.startswith("#"):
            room = self._speaking_room(user, target)
            return Signal(user.nick, room.name, None, clean_meta(meta), now)
        other = self.find_user(target)
        if other is None:
            raise HubError("no_such_nick", f"no such nick: {target}", target=target)
        return Signal(user.nick, None, other.nick, clean_meta(meta), now)

    def set_topic(self, user: User, room_name: str, topic: str, now: float) -> TopicChanged:
        room = self._member_room(user, room_name)
        if room.protected and not self.may_moderate(user, room):
            raise HubError("not_operator", f"only operators may set the topic of {room.name}")
        topic = clean_text(topic)
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
            if user.key not in room.members:
                raise HubError("not_in_room", f"you are not in {room.name}")
            raise HubError("not_operator", f"you are not an operator of {room.name}")
        victim = room.members.get(fold(target))
        if victim is None:
            if self.find_user(target) is None:
                raise HubError("no_such_nick", f"no such nick: {target}", target=target)
            raise HubError("not_in_room", f"{target} is not in {room.name}", target=target)
        return Kicked(room.name, victim.nick, user.nick, clean_text(reason), now)

    def ban(
        self, user: User, room_name: str, mask: str, now: float, *, add: bool = True
    ) -> BanChanged:
        problem = room_problem(room_name)
        if problem:
            raise HubError("invalid_room", f"invalid room {room_name!r}: {problem}")
        room = self.find_room(room_name)
        if not user.is_oper and (room is None or user.key not in room.operators):
            raise HubError("not_operator", f"you are not an operator of {room_name}")
        if not mask or " " in mask or not mask.isprintable():
            raise HubError("invalid_text", "a ban mask is a nick, an address or nick!user@host")
        name = room.name if room else room_name
        masks = self.bans.get(fold(room_name), [])
        if add and fold(mask) in masks:
            raise HubError("invalid_text", f"{mask} is already banned from {name}")
        if not add and fold(mask) not in masks:
            raise HubError("invalid_text", f"{mask} is not banned from {name}")
        return BanChanged(name, fold(mask), user.nick, add, now)

    def set_modes(
        self, user: User, room_name: str, changes: Iterable[ModeChange], now: float
    ) -> tuple[ModeChanged | None, list[HubError]]:
        """Check a batch of room setting changes.

        The batch as a whole needs an existing room and an operator (else
        :class:`HubError` is raised). Each change is then checked on its own,
        against the state the earlier ones leave: a valid change is kept, an
        invalid one becomes an error in the returned list, and a change that
        would change nothing (``+m`` on a moderated room) is dropped, as IRC
        servers do. The event is None when nothing is left to change.
        """
        room = self.find_room(room_name)
        if room is None:
            raise HubError("no_such_room", f"no such room: {room_name}")
        if not self.may_moderate(user, room):
            if user.key not in room.members and not user.is_oper:
                raise HubError("not_in_room", f"you are not in {room.name}")
            raise HubError("not_operator", f"you are not an operator of {room.name}")
        flags: dict[str, object] = {}
        statuses: dict[tuple[str, str], bool] = {}
        kept: list[ModeChange] = []
        errors: list[HubError] = []
        for change in changes:
            try:
                result = self._check_change(room, change, flags, statuses)
            except HubError as exc:
                errors.append(exc)
                continue
            if result is not None:
                kept.append(result)
        event = ModeChanged(room.name, user.nick, tuple(kept), now) if kept else None
        return event, errors

    def _check_change(
        self,
        room: Room,
        change: ModeChange,
        flags: dict[str, object],
        statuses: dict[tuple[str, str], bool],
    ) -> ModeChange | None:
        flag, on, arg = change.flag, change.on, change.arg
        if flag in ("operator", "voice"):
            target = self.find_user(arg or "")
            if target is None:
                raise HubError("no_such_nick", f"no such nick: {arg}", target=arg)
            if target.key not in room.members:
                raise HubError(
                    "not_in_room", f"{target.nick} is not in {room.name}", target=target.nick
                )
            members = room.operators if flag == "operator" else room.voiced
            current = statuses.get((flag, target.key), target.key in members)
            if current == on:
                return None
            statuses[(flag, target.key)] = on
            return ModeChange(flag, on, target.nick)
        if flag == "password":
            current = flags.get("password", room.password)
            if not on:
                flags["password"] = None
                return ModeChange("password", False) if current is not None else None
            problem = password_problem(arg or "")
            if problem:
                raise HubError("invalid_password", f"invalid password: {problem}", target=flag)
            if current == arg:
                return None
            flags["password"] = arg
            return ModeChange("password", True, arg)
        if flag == "limit":
            current_limit = flags.get("limit", room.limit)
            if not on:
                flags["limit"] = None
                return ModeChange("limit", False) if current_limit is not None else None
            try:
                limit = int(arg or "")
            except ValueError:
                limit = 0
            if not 1 <= limit <= LIMIT_MAX:
                raise HubError(
                    "invalid_limit", f"a member limit is a number from 1 to {LIMIT_MAX}",
                    target="limit",
                )
            if current_limit == limit:
                return None
            flags["limit"] = limit
            return ModeChange("limit", True, str(limit))
        attr = _ROOM_ATTRS.get(flag)
        if attr is None:
            raise HubError("invalid_text", f"unknown room setting {flag!r}", target=flag)
        if flags.get(flag, getattr(room, attr)) == on:
            return None
        flags[flag] = on
        return ModeChange(flag, on)

    def set_away(self, user: User, message: str | None, now: float) -> AwayChanged:
        """Mark ``user`` away with ``message`` (cut to AWAY_MAX), or back with None."""
        if message is not None:
            message = clean_text(message)[:AWAY_MAX]
        return AwayChanged(user.nick, message or None, now)

    def invite(self, user: User, target: str, room_name: str, now: float) -> Invited:
        other = self.find_user(target)
        if other is None:
            raise HubError("no_such_nick", f"no such nick: {target}", target=target)
        room = self.find_room(room_name)
        if room is None:
            raise HubError("no_such_room", f"no such room: {room_name}")
        if user.key not in room.members:
            raise HubError("not_in_room", f"you are not in {room.name}")
        if other.key in room.members:
            raise HubError(
                "already_in_room", f"{other.nick} is already in {room.name}", target=other.nick
            )
        if room.invite_only and not self.may_moderate(user, room):
            raise HubError("not_operator", f"only operators may invite to {room.name}")
        return Invited(room.name, other.nick, user.nick, now)

    def quit(self, user: User, reason: str, now: float, *, voluntary: bool = False) -> Quit:
        return Quit(user.nick, clean_text(reason), now, voluntary)

    def _member_room(self, user: User, room_name: str) -> Room:
        room = user.rooms.get(fold(room_name))
        if room is None:
            if self.find_room(room_name) is None:
                raise HubError("no_such_room", f"no such room: {room_name}")
            raise HubError("not_in_room", f"you are not in {room_name}")
        return room

    def _speaking_room(self, user: User, room_name: str) -> Room:
        """The room ``user`` may send to now (RFC 2812 §3.3.1's refusals)."""
        room = self.find_room(room_name)
        if room is None:
            raise HubError("no_such_room", f"no such room: {room_name}")
        if user.key not in room.members:
            if room.no_external:
                raise HubError("not_in_room", f"you are not in {room.name}")
        elif room.may_speak(user):
            return room
        if room.moderated and not user.is_oper:
            raise HubError("cannot_send", f"{room.name} is moderated: you need a voice to speak")
        if self.is_banned(room.name, user):
            raise HubError("cannot_send", f"you are banned from {room.name}")
        return room

    @staticmethod
    def _checked_text(text: str) -> str:
        """A message's text made safe (names.clean_text); one of only spaces is no message."""
        text = clean_text(text)
        if not text or text.isspace():
            raise HubError("invalid_text", "nothing to send")
        if len(text) > MESSAGE_MAX:
            raise HubError("invalid_text", f"a message is at most {MESSAGE_MAX} characters")
        return text

    # Apply: change state, then deliver -------------------------------------

    def apply(self, event: HubEvent) -> None:
        """Apply an event from the bus: update state and deliver it."""
        handler = _APPLY[type(event)]
        handler(self, event)

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
        for change in event.changes:
            if change.flag in ("operator", "voice"):
                keys = room.operators if change.flag == "operator" else room.voiced
                (keys.add if change.on else keys.discard)(fold(change.arg or ""))
            elif change.flag == "password":
                room.password = change.arg if change.on else None
            elif change.flag == "limit":
                room.limit = int(change.arg or 0) if change.on else None
            else:
                setattr(room, _ROOM_ATTRS[change.flag], change.on)
        _deliver(room.members.values(), event)

    def _apply_away(self, event: AwayChanged) -> None:
        user = self.users.get(fold(event.nick))
        if user is None:
            return
        user.away = event.message
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


_APPLY = {
    Message: Hub._apply_message,
    Private: Hub._apply_private,
    Signal: Hub._apply_signal,
    Joined: Hub._apply_joined,
    Parted: Hub._apply_departure,
    Kicked: Hub._apply_departure,
    Quit: Hub._apply_quit,
    NickChanged: Hub._apply_nick,
    TopicChanged: Hub._apply_topic,
    BanChanged: Hub._apply_ban,
    ModeChanged: Hub._apply_modes,
    AwayChanged: Hub._apply_away,
    Invited: Hub._apply_invited,
}


def clean_meta(meta: Meta) -> Meta:
    """Client tags' values (IRCv3 ``+draft/...``) are user text too: no raw controls."""
    return tuple((key, clean_text(value)) for key, value in meta) if meta else meta
