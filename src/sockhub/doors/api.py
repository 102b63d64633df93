"""ChatApi: everything a door may ask of the chat service, and nothing more.

A door (line, IRC, and later web, IRC over WebSocket, the hotline) turns
its protocol's events into these calls and the hub's events, delivered to
its :class:`~sockhub.hub.Member`, back into its protocol. It never touches
the hub's or the store's internals, so what stands behind this interface
(one process's hub and SQLite today; a Redis bus, accounts) can change
without a door noticing. ``services/chat.py: ChatService`` implements it.

Commands raise :class:`~sockhub.hub.HubError` when the hub refuses them;
the door says so in its protocol's words. Users, rooms and messages come
back as the hub's own objects, to be read, not changed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sockhub.hub import HubError, Member, Message, Room, User
from sockhub.hub.events import BanChanged, Invited, Meta, ModeChange, Private
from sockhub.hub.model import Departed, Registration
from sockhub.hub.watch import Watchlist
from sockhub.protocols.scram import ScramServer

#: Failed operator logins (/oper, OPER) one connection may make before it is closed.
OPER_ATTEMPTS = 3

#: One end of a history page: ``("id", message id)`` or ``("ms", Unix milliseconds)``.
Bound = tuple[str, int]


@dataclass(frozen=True)
class LoginResult:
    """The verdict on an account password (docs/accounts.md, "Wrong passwords").

    Attributes:
        account: the account's name as registered, when the password was right.
        delay: seconds the door waits before telling a wrong password (on its clock).
        refusal: why the attempt was not even checked (too many in progress
            from this address), to tell the client at once.
    """

    account: str | None
    delay: float = 0.0
    refusal: str | None = None
    #: Which registration of ``account`` it was (``store/accounts.py``): a login
    #: applied later is refused if the account was dropped or registered again.
    generation: str = ""


class DoorSettings(Protocol):
    """The chat settings a door reads (``services/chat_settings.py: ChatSettings``)."""

    @property
    def history(self) -> int: ...
    @property
    def flood_rate(self) -> float | None: ...
    @property
    def flood_burst(self) -> int: ...
    @property
    def registration_timeout(self) -> float | None: ...
    @property
    def irc_ping_interval(self) -> float: ...
    @property
    def irc_ping_timeout(self) -> float: ...
    @property
    def web_origin(self) -> tuple[str, ...]: ...
    @property
    def web_header_timeout(self) -> float: ...
    @property
    def web_keepalive_timeout(self) -> float: ...
    @property
    def web_ping_interval(self) -> float: ...
    @property
    def web_ping_timeout(self) -> float: ...
    @property
    def web_close_timeout(self) -> float: ...
    @property
    def line_name(self) -> str: ...
    @property
    def server_name(self) -> str | None: ...
    @property
    def irc_name(self) -> str: ...
    @property
    def accounts(self) -> str: ...
    @property
    def nick_grace(self) -> float | None: ...
    @property
    def accounts_after_connect(self) -> bool: ...
    @property
    def multiclient(self) -> str: ...


@runtime_checkable
class Disconnectable(Protocol):
    """A member whose door can end its connection when the service says so (KILL).

    ``reason`` is the quit reason the others see (``Killed (oper (why))``);
    the door tells its own user, closes, and does not quit the hub itself:
    the service already did. A member without it is simply closed.
    """

    def disconnect(self, reason: str) -> None: ...


@runtime_checkable
class MarkerWatcher(Protocol):
    """A member told when its account's read marker moves from elsewhere (IRCv3
    draft/read-marker: "SHOULD" tell the user's other clients)."""

    def marker_moved(self, target: str, ms: int) -> None: ...


class ChatApi(Protocol):
    """The chat service as its doors see it."""

    # What the server is ----------------------------------------------------------

    @property
    def settings(self) -> DoorSettings: ...

    @property
    def motd(self) -> list[str] | None:
        """The message of the day's lines, or None if there is none."""

    @property
    def started(self) -> float:
        """When the service started (Unix seconds)."""

    @property
    def shutting_down(self) -> bool:
        """True once a graceful stop began (the web door's ``/healthz`` says 503)."""

    @property
    def irc_sts(self) -> tuple[int, int] | None:
        """IRCv3 STS when configured: (the IRC door's TLS port, the policy's duration)."""

    # Who and where (read-only views of the hub) ----------------------------------

    @property
    def default_room(self) -> str:
        """The room a line user is put in on arrival."""

    def find_user(self, nick: str) -> User | None: ...

    @property
    def watchlist(self) -> Watchlist:
        """Who monitors which nick, server-wide (IRCv3 MONITOR; hub/watch.py)."""

    def find_room(self, name: str) -> Room | None: ...

    def rooms(self) -> Collection[Room]: ...

    def users(self) -> Collection[User]: ...

    def bans(self, room: str) -> list[str]:
        """The ban masks of a room (by any spelling of its name)."""

    def may_moderate(self, user: User, room: Room) -> bool: ...

    def is_quiet(self, room: Room) -> bool:
        """Past ``quiet_above`` members: arrivals and departures go to operators only,
        and a newcomer is shown the operators rather than every member."""

    def nick_available(self, nick: str) -> HubError | None:
        """Why ``nick`` cannot be taken now, or None if it can."""

    def set_invisible(self, user: User, on: bool) -> None:
        """IRC's user mode +i for ``user`` (counted for LUSERS)."""

    def user_counts(self) -> tuple[int, int, int]:
        """(users, invisible users, server operators), counted as they change."""

    def note_users(self) -> int:
        """The most users seen at once, counting those here now (LUSERS)."""

    def whowas(self, nick: str, count: int = 0) -> list[Departed]:
        """Who held ``nick`` before, the most recent first; ``count`` > 0 limits them."""

    # Arriving and leaving --------------------------------------------------------

    def guest_nick(self) -> str: ...

    def register(self, nick: str, member: Member, *, address: str, username: str = "",
                 realname: str = "", secure: bool = False,
                 account: str | None = None) -> User:
        """Take ``nick`` for a new user whose events go to ``member``. Raises HubError.

        With ``account`` (logged in before arriving: SASL, a password on
        connect) and ``--multiclient on``, a nick held by that account's user
        is not refused: ``member`` becomes one more connection of that user,
        and that user is returned (``hub/sessions.py``).
        """

    def quit(self, user: User, reason: str, *, voluntary: bool = False,
             via: Member | None = None) -> None:
        """``via`` left (or everyone, when None); the user quits with the last connection."""

    def check_connection_password(self, given: str | None) -> bool: ...

    def check_connection_password_later(self, given: str | None, *,
                                        then: Callable[[bool], None]) -> None:
        """The PASS check with a scrypt off the event loop; ``then`` gets the verdict."""

    def unoper(self, user: User) -> None:
        """``user`` drops their server-operator status (IRC ``MODE nick -o``)."""

    def oper_later(self, user: User, name: str, password: str, *,
                   then: Callable[[bool], None]) -> None:
        """``oper`` with the scrypt off the event loop; ``then`` gets the verdict later."""

    # Commands (each raises HubError when refused) --------------------------------

    # ``via``: the connection acting, for a user with several (hub/sessions.py).

    def say(self, user: User, room: str, text: str, *, action: bool = False,
            notice: bool = False, meta: Meta = (), via: Member | None = None) -> Message:
        """Check a room message (HubError if refused), then store and fan it out.

        Group commit: the message is stored with the others of this loop
        turn, in one transaction, and delivered (its sender's echo too) once
        that commits; the returned message has no id yet.
        """

    def commit(self) -> None:
        """Store and fan out the room messages said so far, now, not at the end of the turn."""

    def private(self, user: User, target: str, text: str, *, action: bool = False,
                notice: bool = False, meta: Meta = (), via: Member | None = None) -> Private: ...

    def signal(self, user: User, target: str, meta: Meta, *,
               via: Member | None = None) -> None: ...

    def join(self, user: User, room: str, *, password: str | None = None,
             via: Member | None = None) -> None: ...

    def part(self, user: User, room: str, reason: str = "", *,
             via: Member | None = None) -> None: ...

    def rename(self, user: User, new: str) -> None: ...

    def set_topic(self, user: User, room: str, topic: str) -> None: ...

    def kick(self, user: User, room: str, target: str, reason: str) -> None: ...

    def ban(self, user: User, room: str, mask: str, *, add: bool = True,
            kick: bool = True) -> BanChanged: ...

    def set_modes(self, user: User, room: str, changes: list[ModeChange]) -> list[HubError]: ...

    def set_away(self, user: User, message: str | None) -> None: ...

    def set_realname(self, user: User, realname: str) -> None: ...

    def wallops(self, user: User, text: str) -> None: ...

    def invite(self, user: User, target: str, room: str) -> Invited: ...

    def drop_user(self, user: User, reason: str) -> None:
        """Quit ``user`` and close each of their connections (NickServ GHOST)."""

    def kill(self, user: User, target: str, reason: str) -> None:
        """A server operator disconnects someone (``not_privileged`` for anyone else)."""

    # History ---------------------------------------------------------------------

    def history(self, room: str, limit: int) -> list[Message]:
        """The last ``limit`` messages of a room, oldest first."""

    def replay(self, user: User, room: str, limit: int) -> list[Message]:
        """What to replay to ``user`` joining ``room``: at most ``limit`` messages, those
        since this client (nick, user name, address) last left the room, if it did."""

    def history_page(self, room: str, limit: int, *, after: Bound | None = None,
                     before: Bound | None = None, newest: bool = True) -> list[Message]:
        """Up to ``limit`` messages strictly between two bounds, oldest first."""

    def find_message(self, room: str, message_id: int) -> Message | None: ...

    # Accounts (docs/accounts.md; services/accounts.py) ---------------------------

    def account_register_later(self, user: User | None, name: str, password: str, *,
                               address: str, then: Callable[[str | HubError], None]) -> None:
        """``account_register`` with the hashing off the event loop (the check
        threads); ``then`` gets the name, or the HubError saying why not, later."""

    def account_identify_later(self, name: str, password: str, *, address: str,
                               then: Callable[[LoginResult], None]) -> None:
        """``account_identify`` with the password check off the event loop (a bounded
        pool of threads); ``then`` gets the verdict on the loop, later."""

    def account_generation(self, name: str) -> str:
        """Which registration of account ``name`` this is ("" if none): ``log_in`` checks it."""

    def account_admit(self, address: str) -> str | None:
        """Take an attempt slot for a SCRAM exchange, or say why not."""

    def account_failed(self, name: str, address: str) -> float:
        """A SCRAM exchange failed: the delay before telling it."""

    def account_release(self, address: str) -> None:
        """A SCRAM exchange ended without a wrong answer: free its slot."""

    def scram_server(self) -> ScramServer:
        """A fresh SCRAM-SHA-256 exchange over the accounts."""

    def account_owner(self, nick: str) -> str | None:
        """The account a nick belongs to (its registered spelling), or None."""

    def log_in(self, user: User, account: str, *, generation: str = "") -> None:
        """Mark ``user`` logged in to ``account`` (account-notify tells neighbours).

        With ``generation`` (``LoginResult.generation``), a login checked earlier
        is refused (HubError ``account_changed``) if the account was dropped or
        registered again since."""

    def log_out(self, user: User) -> None: ...

    def account_set_password_later(self, user: User, password: str, *,
                                   then: Callable[[HubError | None], None]) -> None:
        """``account_set_password`` off the event loop; ``then`` gets None or the error."""

    def account_reset_later(self, user: User, name: str, password: str, *,
                            then: Callable[[HubError | None], None]) -> None:
        """``account_reset`` off the event loop; ``then`` gets None or the error."""

    def account_drop(self, user: User) -> None:
        """Drop the account ``user`` is logged in to; everyone in it is logged out."""

    # Registered rooms (docs/accounts.md; services/rooms.py) ----------------------
    # Each raises HubError: account_needed, not_operator, not_founder,
    # room_registered, not_registered, no_such_room, no_such_account, not_in_room.

    def room_register(self, user: User, room: str) -> Registration:
        """Register a room ``user`` operates, to the account they are logged in to."""

    def room_drop(self, user: User, room: str) -> Registration:
        """Unregister a room (its founder, or a server operator)."""

    def room_info(self, room: str) -> Registration:
        """A room's registration: founder, when, operator accounts."""

    def room_operator(self, user: User, room: str, account: str, *, add: bool) -> str:
        """Add or remove an operator account (the founder); returns its registered name."""

    def room_transfer(self, user: User, room: str, account: str) -> str:
        """Make ``account`` the founder (the founder); the old one stays an operator."""

    def room_op(self, user: User, room: str, nick: str | None = None) -> User:
        """An operator account gives operator status to itself or to ``nick``."""

    # History that follows the person (an identified user's) ----------------------

    def private_history(self, user: User, peer: str, limit: int, *, after: Bound | None = None,
                        before: Bound | None = None, newest: bool = True) -> list[Message]:
        """``user``'s account's private conversation with nick ``peer``, as ``history_page``;
        nothing for a user not logged in. A message's ``room`` is its target."""

    def find_private(self, user: User, peer: str, message_id: int) -> Message | None: ...

    def history_targets(self, user: User) -> list[tuple[str, float]]:
        """The rooms ``user`` is in and the nicks their account exchanged private
        messages with, each with its newest message's time (Unix seconds)."""

    def read_marker(self, user: User, target: str) -> int | None:
        """Up to when ``user``'s account read ``target`` (Unix ms); None: never, or no account."""

    def mark_read(self, user: User, target: str, ms: int, *,
                  via: Member | None = None) -> int | None:
        """Move the account's marker forward to ``ms``; returns it as stored (None: no
        account). The account's connections but ``via`` are told (:class:`MarkerWatcher`)."""

    def mark_read_newest(self, user: User, room: str) -> None:
        """``user`` has seen ``room`` up to its newest message (a replay was shown)."""

    # Web sessions (doors/web; only a hash of each token is stored) ---------------

    def session_start(self, account: str) -> str:
        """A new login session for ``account``: the random token for the cookie."""

    def session_account(self, token: str) -> str | None:
        """The account of a live session's token, or None (unknown, expired, dropped)."""

    def session_end(self, token: str) -> None:
        """Log a session out: its token is no longer accepted."""
