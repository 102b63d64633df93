"""Hub: the commands of the chat hub, and the facade doors and the service use.

Theory of operation
-------------------

Every change is made in two steps. A *command* method (``join``,
``say``, ``nick`` …) checks the caller may do it, raising :class:`HubError`
with a reason otherwise, and returns the event describing the change,
without applying it. The chat service then does what must happen first
(a room message is stored in history before anyone sees it) and hands the
event to the bus, which calls ``hub.state.apply`` (:mod:`sockhub.hub.state`;
:meth:`Hub.apply` is the same call, one frame more) — in this process, and in
every process with a Redis bus. ``apply`` changes the state and delivers
the event to the members it concerns, so state and fan-out can never
disagree.

Command methods also clean the free text they are given (messages, topics,
reasons, away messages: :func:`~sockhub.hub.names.clean_text`), so no event
carries a control character to any door, live or replayed, but IRC's
formatting codes.

The parts live beside this module: the nouns in :mod:`~sockhub.hub.model`,
room settings and ban masks in :mod:`~sockhub.hub.modes`, the state and the
apply step in :mod:`~sockhub.hub.state`. :class:`Hub` holds them together,
so a door needs one object and one import.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    RealnameChanged,
    Signal,
    TopicChanged,
    Wallops,
)
from sockhub.hub.model import Departed, HubError, Room, RoomState, User
from sockhub.hub.modes import ModeBatch, full_mask
from sockhub.hub.names import (
    AWAY_MAX,
    CTCP_DELIMITER,
    REALNAME_MAX,
    ROOMS_PER_USER,
    TOPIC_MAX,
    USERNAME_MAX,
    clean_text,
    fold,
    nick_problem,
    room_problem,
)
from sockhub.hub.sessions import Sessions
from sockhub.hub.state import HubState

#: Longest message text accepted from any door, in characters; IRC's 512-byte
#: lines bound what an IRC user can see anyway.
MESSAGE_MAX = 4000


class Hub:
    """All rooms and users of one chat service.

    Args:
        default_room: the room line-door users join on arrival.
        protected_rooms: rooms whose topic only server operators may set and
            that have no room operators.
        rooms_per_user: how many rooms one user may be in at once.
        quiet_above: rooms with more members than this announce arrivals and
            departures to their operators only (:mod:`~sockhub.hub.state`).
    """

    def __init__(
        self,
        *,
        default_room: str = "#lobby",
        protected_rooms: Iterable[str] = (),
        rooms_per_user: int = ROOMS_PER_USER,
        quiet_above: int | None = None,
    ) -> None:
        self.default_room = default_room
        self.rooms_per_user = rooms_per_user
        self.state = HubState({fold(name) for name in protected_rooms}, quiet_above)

    # The state, as doors and the service read it ------------------------------

    @property
    def users(self) -> dict[str, User]:
        """Users by folded nick."""
        return self.state.users

    @property
    def rooms(self) -> dict[str, Room]:
        """Rooms by folded name; a room exists while it has members."""
        return self.state.rooms

    @property
    def bans(self) -> dict[str, list[str]]:
        """Ban masks by folded room name, kept when a room empties."""
        return self.state.bans

    @property
    def saved(self) -> dict[str, RoomState]:
        """Kept room state by folded name: topics and settings, kept when a room empties."""
        return self.state.saved

    @property
    def protected(self) -> set[str]:
        """Folded names of the protected rooms (the service reloads them)."""
        return self.state.protected

    @protected.setter
    def protected(self, keys: set[str]) -> None:
        """New protected rooms (a reload): rooms that exist already follow at once.

        A room that becomes protected gets its topic lock; one that stops
        being protected keeps it (every new room has one). Its operators
        stay as they are.
        """
        self.state.protected = keys
        for room in self.state.rooms.values():
            if room.key in keys:
                room.protected = True

    def apply(self, event: HubEvent) -> None:
        """Apply an event from the bus: update state and deliver it."""
        self.state.apply(event)

    # Queries ----------------------------------------------------------------

    def find_user(self, nick: str) -> User | None:
        return self.state.find_user(nick)

    def find_room(self, name: str) -> Room | None:
        return self.state.find_room(name)

    def is_banned(self, room_name: str, user: User) -> bool:
        return self.state.is_banned(room_name, user)

    def whowas(self, nick: str, count: int = 0) -> list[Departed]:
        """Who held ``nick`` before, the most recent first (RFC 2812 §3.6.3)."""
        return self.state.whowas(nick, count)

    def may_moderate(self, user: User, room: Room) -> bool:
        return user.is_oper or user.key in room.operators

    def is_quiet(self, room: Room) -> bool:
        """Too big to announce arrivals and departures to everyone, or list everyone on join."""
        return self.state.is_quiet(room)

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
        """Add a user under ``nick``; they are in no room yet.

        Every connection keeps one user name for its lifetime (IRC's USER, or
        else the nick it arrived with), so a ``*!name@host`` ban still holds
        after a nick change.
        """
        self._check_nick_free(nick)
        user = User(
            nick=nick, member=member, address=address, username=username or nick[:USERNAME_MAX],
            realname=clean_text(realname),
            secure=secure, signon=now, active=now,
        )
        self.state.users[user.key] = user
        return user

    # Several connections of one user (hub/sessions.py) ------------------------

    def attach(self, user: User, member: Member) -> None:
        """Add a connection to ``user``: it gets every event ``user`` gets, from now on.

        Who may attach (the same account, multiclient on) is the chat
        service's policy; the hub only keeps the sessions.
        """
        current = user.member
        if isinstance(current, Sessions):
            if member not in current.members:
                current.members.append(member)
        elif current is not member:
            user.member = Sessions([current, member])

    def detach(self, user: User, member: Member) -> bool:
        """Take a connection off ``user``; True if others remain (the user stays).

        False when ``member`` was the last (or not one of them): the caller
        quits the user as usual.
        """
        current = user.member
        if not isinstance(current, Sessions) or member not in current.members:
            return False
        current.members.remove(member)
        if len(current.members) == 1:  # one connection again: the plain member
            user.member = current.members[0]
        return True

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
        holder = self.state.users.get(fold(nick))
        if holder is not None and holder is not current:
            raise HubError("nick_in_use", f"nick {nick} is already in use", target=nick)

    # Commands: check and describe ------------------------------------------

    def join(
        self, user: User, room_name: str, now: float, *, password: str | None = None,
        origin: int = 0,
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
            return Joined(room.name, user.nick, now, origin)
        if self.is_banned(room_name, user):
            raise HubError("banned", f"you are banned from {room_name}")
        # An empty room that kept its state keeps its settings too.
        settings = room if room is not None else self.state.saved.get(fold(room_name))
        if settings is not None:
            if settings.invite_only:
                raise HubError("invite_only", f"{settings.name} is invite-only")
            if settings.password is not None and password != settings.password:
                raise HubError("bad_password", f"{settings.name} needs the right password")
            members = len(room.members) if room is not None else 0
            if settings.limit is not None and members >= settings.limit:
                raise HubError("full", f"{settings.name} is full ({settings.limit} members)")
        return Joined(settings.name if settings else room_name, user.nick, now, origin)

    def part(self, user: User, room_name: str, reason: str, now: float, *,
             origin: int = 0) -> Parted:
        room = self._member_room(user, room_name)
        return Parted(room.name, user.nick, clean_text(reason), now, origin)

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
        origin: int = 0,
    ) -> Message:
        # The commonest case checked first, with one fold (the room's name;
        # the user's key is kept): a member of an unmoderated room without
        # bans may speak, as _speaking_room would find after its longer way round.
        state = self.state
        key = fold(room_name)
        room = state.rooms.get(key)
        if (room is None or room.moderated or user.key not in room.members
                or state.bans.get(key)):
            room = self._speaking_room(user, room_name)
        if not text or not text.isprintable() or text.isspace() or len(text) > MESSAGE_MAX:
            text = self._checked_text(text)  # to be cleaned, or refused
        if room.no_ctcp and not action and text.startswith(CTCP_DELIMITER):
            raise HubError("cannot_send", f"{room.name} takes no CTCP requests but ACTION")
        # Every field by position (id None, not history): a room message is
        # made per message, and keyword arguments to Message's twelve
        # parameters cost it twice as much (2.2 against 1.1 µs).
        return Message(room.name, user.nick, text, now, action, None, False, notice,
                       clean_meta(meta) if meta else meta, user.username, user.address,
                       origin)

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
        origin: int = 0,
    ) -> Private:
        other = self.find_user(target)
        if other is None:
            raise HubError("no_such_nick", f"no such nick: {target}", target=target)
        text = self._checked_text(text)
        return Private(user.nick, other.nick, text, now, action, notice=notice,
                       meta=clean_meta(meta), origin=origin)

    def signal(self, user: User, target: str, meta: Meta, now: float, *,
               origin: int = 0) -> Signal:
        """Metadata without text, to a room or a user (IRCv3 TAGMSG)."""
        if target.startswith("#"):
            room = self._speaking_room(user, target)
            return Signal(user.nick, room.name, None, clean_meta(meta), now, origin=origin)
        other = self.find_user(target)
        if other is None:
            raise HubError("no_such_nick", f"no such nick: {target}", target=target)
        return Signal(user.nick, None, other.nick, clean_meta(meta), now, origin=origin)

    def set_topic(self, user: User, room_name: str, topic: str, now: float) -> TopicChanged:
        room = self._member_room(user, room_name)
        if room.protected and not self.may_moderate(user, room):
            raise HubError("not_operator", f"only operators may set the topic of {room.name}")
        topic = clean_text(topic)
        if len(topic) > TOPIC_MAX:
            raise HubError("invalid_text", f"a topic is at most {TOPIC_MAX} characters")
        return TopicChanged(room.name, user.nick, topic, now, user.username, user.address)

    def rename(self, user: User, new: str, now: float) -> NickChanged | None:
        """Describe a nick change; None when only the case is the same."""
        self._check_nick_free(new, current=user)
        if fold(new) in user.barred:
            raise HubError("nick_in_use", f"nick {new} belongs to an account: log in to it "
                           "first", target=new)
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
        masks = self.state.bans.get(fold(room_name), [])
        if add or fold(mask) not in masks:  # a ban stored bare by an older version is lifted as is
            mask = full_mask(mask)
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
        batch = ModeBatch(room, self.find_user)
        kept: list[ModeChange] = []
        errors: list[HubError] = []
        for change in changes:
            try:
                result = batch.check(change)
            except HubError as exc:
                errors.append(exc)
                continue
            if result is not None:
                kept.append(result)
        event = ModeChanged(room.name, user.nick, tuple(kept), now) if kept else None
        return event, errors

    def set_away(self, user: User, message: str | None, now: float) -> AwayChanged:
        """Mark ``user`` away with ``message`` (cut to AWAY_MAX), or back with None."""
        if message is not None:
            message = clean_text(message)[:AWAY_MAX]
        return AwayChanged(user.nick, message or None, now)

    def set_realname(self, user: User, realname: str, now: float) -> RealnameChanged:
        """``user``'s new real name, cleaned and cut to REALNAME_MAX (doors refuse worse)."""
        return RealnameChanged(user.nick, clean_text(realname)[:REALNAME_MAX], now)

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

    def set_invisible(self, user: User, on: bool) -> None:
        """IRC's user mode +i (RFC 2812 §3.1.5): kept counted for LUSERS."""
        user.invisible = on
        self._count(self.state.invisible, user, on)

    def set_oper(self, user: User, on: bool) -> None:
        """Give or take server-operator status: kept counted for LUSERS.

        An OPER's password is checked off the loop: a user who left meanwhile
        is not counted (nor kept alive by the count).
        """
        user.is_oper = on
        self._count(self.state.opers, user, on)

    def _count(self, counted: set[User], user: User, on: bool) -> None:
        if on and self.state.users.get(user.key) is user:
            counted.add(user)
        else:
            counted.discard(user)

    def user_counts(self) -> tuple[int, int, int]:
        """(users, invisible users, server operators), in O(1) (LUSERS, RFC 2812 §3.4.2)."""
        state = self.state
        return len(state.users), len(state.invisible), len(state.opers)

    def quit(self, user: User, reason: str, now: float, *, voluntary: bool = False) -> Quit:
        return Quit(user.nick, clean_text(reason), now, voluntary)

    def kill(self, user: User, target: str, reason: str, now: float) -> tuple[User, Quit]:
        """A server operator disconnects ``target``: the victim and the Quit to publish.

        The quit reason is the one IRC servers give (Modern IRC, KILL):
        ``Killed (<operator> (<reason>))``.
        """
        if not user.is_oper:
            raise HubError("not_privileged", "only server operators may disconnect users")
        victim = self.find_user(target)
        if victim is None:
            raise HubError("no_such_nick", f"no such nick: {target}", target=target)
        reason = clean_text(reason) or user.nick
        return victim, Quit(victim.nick, f"Killed ({user.nick} ({reason}))", now)

    def wallops(self, user: User, text: str, now: float) -> Wallops:
        """A server operator's WALLOPS (RFC 2812 §4.7); anyone else is refused."""
        if not user.is_oper:
            raise HubError("not_privileged", "only server operators may send WALLOPS")
        return Wallops(user.nick, clean_text(text)[:TOPIC_MAX], now)

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


def clean_meta(meta: Meta) -> Meta:
    """Client tags' values (IRCv3 ``+draft/...``) are user text too: no raw controls."""
    return tuple((key, clean_text(value)) for key, value in meta) if meta else meta
