"""What the hub tells members: frozen dataclasses named as nouns.

One event object is built per happening and handed to every member it
concerns, so a door may cache the rendering of the last event it saw:
fan-out to 500 members renders once, not 500 times. ``ts`` is wall-clock
time in seconds (UTC epoch), taken by the caller when the server accepted
the action.

``origin`` on what a user does (messages, signals, joins, parts) names
the session that did it, when a door said (``hub/sessions.py``): with
several connections of one account, the others are shown it as their own.

``meta`` on messages is opaque metadata a door may attach and relay
(IRCv3 client-only tags such as ``+typing``); the hub never reads it and
doors that have no use for it ignore it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

Meta = tuple[tuple[str, str], ...]


def hostmask(nick: str, username: str, address: str) -> str:
    """``nick!user@host`` as bans match it and doors show it (the nick stands in for no user)."""
    return f"{nick}!{username or nick}@{address or 'unknown'}"


@dataclass(frozen=True, slots=True, init=False)
class Message:
    """A message (or ``/me`` action, or notice) to a room, as stored in history.

    A *notice* is a message no program may answer automatically (bots,
    auto-replies): RFC 2812 §3.3.2's NOTICE, which every door honours.
    ``username`` and ``address`` are the sender's when it was sent, stored
    with the text, so a replay names the sender in full (``nick!user@host``)
    after they have gone (messages stored before they were kept say ``unknown``).
    """

    room: str
    nick: str
    text: str
    ts: float
    action: bool = False
    id: int | None = None
    history: bool = False
    notice: bool = False
    meta: Meta = ()
    username: str = ""
    address: str = ""
    origin: int = 0  # the acting session (hub/sessions.py: acted_elsewhere)

    def __init__(self, room: str, nick: str, text: str, ts: float, action: bool = False,
                 id: int | None = None, history: bool = False, notice: bool = False,
                 meta: Meta = (), username: str = "", address: str = "",
                 origin: int = 0) -> None:
        """The generated frozen ``__init__``'s fields, each set by its slot's own setter.

        One Message is made per room message; the frozen dataclass's
        ``__init__`` (``object.__setattr__`` per field) cost twice this, and
        was an eighth of the line door's server CPU per message at N=10.
        """
        _room(self, room)
        _nick(self, nick)
        _text(self, text)
        _ts(self, ts)
        _action(self, action)
        _id(self, id)
        _history(self, history)
        _notice(self, notice)
        _meta(self, meta)
        _username(self, username)
        _address(self, address)
        _origin(self, origin)


(_room, _nick, _text, _ts, _action, _id, _history, _notice, _meta, _username, _address,
 _origin) = (getattr(Message, field.name).__set__ for field in fields(Message))


@dataclass(frozen=True, slots=True)
class Private:
    """A private message; delivered to the target and echoed to the sender.

    ``msgid`` is the service's id for it (IRCv3 ``msgid``): its history id
    when it was kept for an account (services/chat.py), else a string unlike
    any stored message's id.
    """

    sender: str
    target: str
    text: str
    ts: float
    action: bool = False
    notice: bool = False
    meta: Meta = ()
    msgid: str = ""
    origin: int = 0  # as Message's


@dataclass(frozen=True, slots=True)
class Signal:
    """Metadata without text (IRCv3 TAGMSG: typing notifications, reactions).

    ``room`` is set for a room, ``target`` for one user. Not stored; doors
    that cannot show metadata ignore it.
    """

    sender: str
    room: str | None
    target: str | None
    meta: Meta
    ts: float
    msgid: str = ""  # as Private's
    origin: int = 0  # as Message's


@dataclass(frozen=True, slots=True)
class Joined:
    room: str
    nick: str
    ts: float
    origin: int = 0  # as Message's


@dataclass(frozen=True, slots=True)
class Parted:
    room: str
    nick: str
    reason: str
    ts: float
    origin: int = 0  # as Message's


@dataclass(frozen=True, slots=True)
class Quit:
    """A user left the server; sent once to everyone sharing a room with them.

    ``voluntary`` is true when the user asked to leave (``/quit``, IRC
    ``QUIT``) rather than lost the connection or was dropped.
    """

    nick: str
    reason: str
    ts: float
    voluntary: bool = False


@dataclass(frozen=True, slots=True)
class NickChanged:
    old: str
    new: str
    ts: float


@dataclass(frozen=True, slots=True)
class TopicChanged:
    """A new topic; the setter's ``username`` and ``address`` are kept for IRC's 333."""

    room: str
    nick: str
    topic: str
    ts: float
    username: str = ""
    address: str = ""


@dataclass(frozen=True, slots=True)
class Kicked:
    room: str
    nick: str
    by: str
    reason: str
    ts: float


class Member(Protocol):
    """A door's end of one user: the hub calls ``deliver`` and nothing else.

    ``deliver`` must not block or raise: a door queues the event for its
    connection and returns (Twisted's IChatClient, without Deferreds).
    """

    def deliver(self, event: HubEvent) -> None: ...


class MessageRun:
    """Consecutive room messages of one group commit, all in one room.

    The hub hands a run to every member of the room at once
    (``deliver_run``, optional beside :meth:`Member.deliver`): a door renders
    the run once per kind of viewer and queues it as one piece for each
    recipient, so the per-recipient work of a busy room is paid once per
    commit rather than once per message. What each recipient receives is
    exactly what delivering the messages one by one would have queued.
    """

    __slots__ = ("messages", "room", "senders")

    def __init__(self, messages: Sequence[Message]) -> None:
        self.messages = messages
        self.room = messages[0].room
        #: The senders' nicks as the messages carry them: who may need their own left out.
        self.senders = frozenset(message.nick for message in messages)


@dataclass(frozen=True, slots=True)
class BanChanged:
    """A ban mask added to (or removed from) a room's list."""

    room: str
    mask: str
    by: str
    added: bool
    ts: float


#: Room modes a :class:`ModeChanged` may carry, with the argument each takes.
ROOM_FLAGS = ("moderated", "no_external", "invite_only", "topic_lock", "secret", "private",
              "no_ctcp", "password", "limit")
#: Per-member statuses a :class:`ModeChanged` may carry; the argument is a nick.
MEMBER_FLAGS = ("operator", "voice")


@dataclass(frozen=True, slots=True)
class ModeChange:
    """One change: a room flag on or off, or a member status given or taken.

    ``flag`` is one of :data:`ROOM_FLAGS` or :data:`MEMBER_FLAGS`; ``arg``
    is the password being set (``password``), the member limit as text
    (``limit``), the nick (member flags), or None.
    """

    flag: str
    on: bool
    arg: str | None = None


@dataclass(frozen=True, slots=True)
class ModeChanged:
    """Room settings or member statuses changed, by ``by`` (a nick)."""

    room: str
    by: str
    changes: tuple[ModeChange, ...]
    ts: float


@dataclass(frozen=True, slots=True)
class AwayChanged:
    """A user went away (``message`` set) or came back (None)."""

    nick: str
    message: str | None
    ts: float


@dataclass(frozen=True, slots=True)
class RealnameChanged:
    """A user changed their real name (IRCv3 setname)."""

    nick: str
    realname: str
    ts: float


@dataclass(frozen=True, slots=True)
class Wallops:
    """A server operator's message to every user who asked for them (IRC WALLOPS)."""

    nick: str
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class AccountChanged:
    """A user logged in to ``account`` (None: logged out); IRCv3 account-notify."""

    nick: str
    account: str | None
    ts: float


@dataclass(frozen=True, slots=True)
class Invited:
    """``by`` invited ``nick`` into ``room``; delivered to the invitee only."""

    room: str
    nick: str
    by: str
    ts: float


HubEvent = (
    Message
    | Private
    | Signal
    | Joined
    | Parted
    | Quit
    | NickChanged
    | TopicChanged
    | Kicked
    | BanChanged
    | ModeChanged
    | AwayChanged
    | Invited
    | AccountChanged
    | RealnameChanged
    | Wallops
)
