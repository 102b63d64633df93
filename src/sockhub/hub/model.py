"""The hub's nouns: a user, a room, and the error every command may raise.

Plain data with a few one-line predicates. A module of its own because the
three parts of the hub use them alike: the commands that check and describe
a change (:mod:`.hub`), the room settings (:mod:`.modes`) and the apply step
that changes state and delivers (:mod:`.state`), and none of those should
import another to get them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sockhub.hub.events import Member
from sockhub.hub.names import fold


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
    account: str | None = None  # the account logged in to (docs/accounts.md)
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
