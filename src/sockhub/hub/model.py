"""The hub's nouns: a user, a room, and the error every command may raise.

Plain data with a few one-line predicates. A module of its own because the
three parts of the hub use them alike: the commands that check and describe
a change (:mod:`.hub`), the room settings (:mod:`.modes`) and the apply step
that changes state and delivers (:mod:`.state`), and none of those should
import another to get them.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, MutableMapping, ValuesView
from dataclasses import dataclass, field
from typing import TypeVar, overload

from sockhub.hub.events import Member, hostmask
from sockhub.hub.names import fold

_T = TypeVar("_T")


class HubError(Exception):
    """A command refused; ``code`` is stable for doors, the message for people.

    Codes: ``invalid_nick``, ``nick_in_use``, ``invalid_room``, ``no_such_room``,
    ``no_such_nick``, ``not_in_room`` (the caller is not a member, or, with
    ``target`` set, that user is not), ``already_in_room``,
    ``banned``, ``invite_only``, ``bad_password``, ``full``, ``too_many_rooms``,
    ``cannot_send``, ``not_operator``, ``not_privileged`` (not a server
    operator), ``invalid_text``, ``invalid_password``, ``invalid_limit``.

    ``target`` names what the error is about when that is not obvious from
    the command (the nick of ``no_such_nick`` in a mode change, say), so a
    door can put it in its reply.
    """

    def __init__(self, code: str, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.target = target


class RoomMap(MutableMapping[str, "Room"]):
    """A user's rooms by key, in the order joined: a dict's behaviour in less memory.

    Nearly every user is in one room, and a one-entry dict was 184 B of an
    idle client (issue 16); this is 48. One room under its own key
    (:attr:`Room.key`, the only way the hub files them) is held bare; from the
    second on, a dict, so a user in many rooms still finds one in O(1); back to
    bare when a part leaves one. The dict methods the hub and the doors use are
    written out, not left to the mixins: a lookup is one call, as with a dict.

    Where it is not a dict (no caller relies on any of these; callers that
    change the map while going through it copy it first, as with a dict): a
    ``keys()``/``values()`` view stops following changes once the map falls
    back to one room; adding a second room while iterating the first ends the
    iteration instead of raising; ``popitem()`` takes the first room, not the
    last; there is no ``copy()``.
    """

    __slots__ = ("_many", "_one")

    def __init__(self) -> None:
        self._one: Room | None = None
        self._many: dict[str, Room] | None = None

    def __len__(self) -> int:
        many = self._many
        if many is not None:
            return len(many)
        return 0 if self._one is None else 1

    def __contains__(self, key: object) -> bool:
        one = self._one
        if one is not None:
            return one.key == key
        many = self._many
        return many is not None and key in many

    def __iter__(self) -> Iterator[str]:
        many = self._many
        if many is not None:
            return iter(many)
        one = self._one
        return iter(() if one is None else (one.key,))

    def __getitem__(self, key: str) -> Room:
        one = self._one
        if one is not None and one.key == key:
            return one
        many = self._many
        if many is None:
            raise KeyError(key)
        return many[key]

    @overload
    def get(self, key: str, /) -> Room | None: ...
    @overload
    def get(self, key: str, /, default: Room) -> Room: ...
    @overload
    def get(self, key: str, /, default: _T) -> Room | _T: ...

    def get(self, key: str, /, default: object = None) -> object:
        one = self._one
        if one is not None:
            return one if one.key == key else default
        many = self._many
        return default if many is None else many.get(key, default)

    def __setitem__(self, key: str, room: Room) -> None:
        many = self._many
        if many is not None:
            many[key] = room
            return
        one = self._one
        if one is None or one.key == key:
            if room.key == key:
                self._one = room
                return
            self._one, self._many = None, {key: room}
            return
        self._one, self._many = None, {one.key: one, key: room}

    def __delitem__(self, key: str) -> None:
        one = self._one
        if one is not None and one.key == key:
            self._one = None
            return
        many = self._many
        if many is None:
            raise KeyError(key)
        del many[key]
        if len(many) <= 1:  # back to the small form (a dict keeps its table once grown)
            last = next(iter(many.items()), None)
            if last is None:
                self._many = None
            elif last[1].key == last[0]:
                self._one, self._many = last[1], None

    def keys(self) -> KeysView[str]:
        many = self._many
        return KeysView(self) if many is None else many.keys()

    def values(self) -> ValuesView[Room]:
        many = self._many
        return ValuesView(self) if many is None else many.values()

    def items(self) -> ItemsView[str, Room]:
        many = self._many
        return ItemsView(self) if many is None else many.items()

    def __repr__(self) -> str:
        return f"RoomMap({dict(self.items())!r})"


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
    wallops: bool = False  # IRC user mode +w: receives WALLOPS (RFC 2812 §4.7)
    bot: bool = False  # IRC user mode +B: marked as a bot (IRCv3 bot-mode)
    secure: bool = False
    away: str | None = None
    account: str | None = None  # the account logged in to (docs/accounts.md)
    signon: float = 0.0
    active: float = 0.0
    #: The rooms this user is in, by :attr:`Room.key`, in the order joined.
    rooms: RoomMap = field(default_factory=RoomMap)
    #: Owned nicks (folded) this user was renamed off for not logging in
    #: (doors/owned.py): refused to them until they log in, so a squatter cannot
    #: take one straight back for another grace period. A frozenset replaced on
    #: change, so that almost every user shares the one empty one (an empty
    #: ``set`` each was 216 B of an idle client: issue 16).
    barred: frozenset[str] = frozenset()
    #: The folded nick, kept beside it (the hub renames through :meth:`renamed`):
    #: read on every path that finds a user in a room, where a fold each time
    #: was a tenth of the IRC door's CPU in a join storm. The nick itself
    #: when already folded, so most users pay no second string.
    key: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.key = _folded(self.nick)

    def renamed(self, nick: str) -> None:
        """Take ``nick`` (the hub's rename, already checked): nick and key together."""
        self.nick = nick
        self.key = _folded(nick)

    def bar(self, nick: str) -> None:
        """Refuse ``nick`` to this user until they log in (see :attr:`barred`)."""
        self.barred = self.barred | {fold(nick)}

    @property
    def hostmask(self) -> str:
        return hostmask(self.nick, self.username, self.address)


def _folded(nick: str) -> str:
    key = fold(nick)
    return nick if key == nick else key


@dataclass(frozen=True, slots=True)
class Departed:
    """Who a nick was, once its user left or changed it: what WHOWAS answers.

    ``ts`` is when the nick was given up (Unix seconds).
    """

    nick: str
    username: str
    address: str
    realname: str
    ts: float


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
    topic_username: str = ""  # the setter's, for IRC's 333 nick!user@host
    topic_address: str = ""
    topic_ts: float = 0.0
    protected: bool = True  # the topic lock (+t): only operators set the topic
    moderated: bool = False
    no_external: bool = True
    invite_only: bool = False
    secret: bool = False  # IRC's +s: listed (LIST, NAMES, WHOIS) only to its members
    private: bool = False  # IRC's +p: RFC 1459's older, milder secrecy; hidden alike
    no_ctcp: bool = False  # IRC's +C: no CTCP requests but ACTION (/me)
    password: str | None = None  # IRC's channel key
    limit: int | None = None
    created: float = 0.0
    #: The folded name, made once: every member's ``User.rooms`` is keyed by
    #: this one string (a fold at each join was a string per member).
    key: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.key = _folded(self.name)

    @property
    def hidden(self) -> bool:
        """Not shown to non-members in room lists (+s or +p)."""
        return self.secret or self.private

    def may_speak(self, user: User) -> bool:
        """Operators and voiced members speak even where others may not."""
        return user.key in self.operators or user.key in self.voiced

    def operators_present(self) -> list[User]:
        """The operators in the room, found from the (few) operators, not the members.

        What a newcomer to a quiet room is shown and who hears of arrivals
        there: asking every member instead made a join O(members), so
        10,000 arrivals O(N²).
        """
        members = self.members
        return [members[key] for key in self.operators if key in members]


@dataclass(frozen=True, slots=True)
class RoomState:
    """What a room keeps while it is empty and across restarts (the store's ``rooms`` row).

    A room *has state* once it has a topic or settings other than a new
    room's (``+nt``), or bans: such a room is remembered when its last
    member leaves, and comes back as it was (see :mod:`sockhub.hub.state`
    for who gets operator status then). Who is operator or voiced is not
    state: it belongs to people present.
    """

    name: str
    created: float
    topic: str = ""
    topic_by: str = ""
    topic_username: str = ""
    topic_address: str = ""
    topic_ts: float = 0.0
    topic_lock: bool = True
    no_external: bool = True
    moderated: bool = False
    invite_only: bool = False
    password: str | None = None
    limit: int | None = None
    secret: bool = False
    private: bool = False
    no_ctcp: bool = False

    @classmethod
    def of(cls, room: Room) -> RoomState:
        return cls(
            room.name, room.created, room.topic, room.topic_by, room.topic_username,
            room.topic_address, room.topic_ts, room.protected, room.no_external,
            room.moderated, room.invite_only, room.password, room.limit,
            room.secret, room.private, room.no_ctcp,
        )

    @property
    def is_default(self) -> bool:
        """Nothing worth keeping: no topic, and a new room's settings."""
        return (
            not self.topic and self.topic_lock and self.no_external and not self.moderated
            and not self.invite_only and self.password is None and self.limit is None
            and not self.secret and not self.private and not self.no_ctcp
        )

    def restore(self, room: Room) -> None:
        """Give a room being created again its kept settings and topic."""
        room.name, room.created = self.name, self.created
        room.topic, room.topic_by, room.topic_ts = self.topic, self.topic_by, self.topic_ts
        room.topic_username, room.topic_address = self.topic_username, self.topic_address
        room.protected, room.no_external = self.topic_lock, self.no_external
        room.moderated, room.invite_only = self.moderated, self.invite_only
        room.password, room.limit = self.password, self.limit
        room.secret, room.private, room.no_ctcp = self.secret, self.private, self.no_ctcp


@dataclass(slots=True)
class Registration:
    """A registered room: its founder account and its operator accounts (docs/accounts.md).

    Operator status follows these accounts, not the people present: a member
    logged in to the founder's or an operator account is given ``+o`` when
    they join or log in, and no one gets it by being first into the emptied
    room (:meth:`sockhub.hub.state.HubState.opens_as_operator`).

    ``operators`` maps folded account names to their registered spelling.
    """

    name: str
    founder: str
    registered: float
    operators: dict[str, str] = field(default_factory=dict)

    def is_founder(self, account: str | None) -> bool:
        return account is not None and fold(account) == fold(self.founder)

    def is_operator(self, account: str | None) -> bool:
        """Founder or operator account: given operator status on arrival."""
        return self.is_founder(account) or (
            account is not None and fold(account) in self.operators)
