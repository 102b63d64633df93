"""Owned nicks: a registered nick belongs to its account (docs/accounts.md).

Anyone may take a free nick, but when it is an account's name and they are
not logged in to that account, they are told to identify, and after
``nick_grace`` seconds (on the door's injected clock) still not, they are
renamed to a guest nick, as Ergo's ``nick-reservation`` "timeout" method
does. A door calls :func:`watch_nick` when its user arrives or changes nick;
the connection's :class:`NickGuard` is made then, the first time its nick is
someone else's (an idle client that never holds one costs none: issue 16).
"""

from __future__ import annotations

from collections.abc import Callable

from sockhub.doors.api import ChatApi
from sockhub.hub import HubError, User
from sockhub.hub.names import fold
from sockhub.protocols.base import Clock, Timer

#: How soon an expired grace period looks again while a password is being checked.
RECHECK = 0.05


def owns(user: User, account: str) -> bool:
    return user.account is not None and fold(user.account) == fold(account)


def _foreign_owner(chat: ChatApi, user: User) -> str | None:
    """The account ``user``'s nick belongs to if it is not theirs and ``nick_grace``
    is set (a nick to watch: :class:`NickGuard`); else None."""
    if chat.settings.nick_grace is None:
        return None
    owner = chat.account_owner(user.nick)
    return None if owner is None or owns(user, owner) else owner


def regain(chat: ChatApi, user: User, nick: str, *, ghost: bool = False) -> str:
    """Take owned ``nick`` back at once from whoever holds it (NickServ REGAIN/GHOST).

    The caller must be logged in to the account that owns it. A holder not
    logged in to it is renamed to a guest nick (and may not take it back
    unidentified, :attr:`User.barred`); with ``ghost``, or when the holder
    is the owner's own presence left behind (another connection, multiclient
    off), it is disconnected instead. REGAIN then gives ``user`` the nick;
    GHOST only frees it. Returns what to tell ``user``; raises HubError.
    """
    owner = chat.account_owner(nick)
    if owner is None:
        raise HubError("account_missing", f"{nick} is not a registered nick", target=nick)
    if not owns(user, owner):
        raise HubError("account_needed", f"log in to account {owner} first", target=nick)
    holder = chat.find_user(nick)
    if holder is user:
        raise HubError("nick_in_use", f"you hold {holder.nick} already", target=nick)
    if holder is not None:
        if ghost or owns(holder, owner):
            chat.drop_user(holder, f"GHOST command used by {user.nick}")
        else:
            chat.rename(holder, chat.guest_nick())
            holder.bar(nick)  # its door is told by the rename
    if ghost:
        return f"{nick} is free" if holder is not None else f"no one holds {nick}"
    chat.rename(user, nick)
    return f"you are {nick} again"


def watch_nick(guard: NickGuard | None, chat: ChatApi, user: User,
               make: Callable[[], NickGuard]) -> NickGuard | None:
    """:meth:`NickGuard.check` ``user``'s nick, first making the guard (``make``) if it is needed.

    Returns the connection's guard: still None while its nick was never
    someone else's (nothing to watch: no timer to arm, none to cancel).
    """
    if guard is None:
        if not NickGuard.needed(chat, user):
            return None
        guard = make()
    guard.check(user)
    return guard


class NickGuard:
    """One connection's watch over the nick it holds.

    Args:
        tell: shows the user one notice line (and wakes the door).
        how: what the door's users type to identify, for the notice.
        busy: true while a password of this connection is being checked (off the
            loop, ``ChatApi.account_identify_later``): the rename waits for the
            answer rather than beat a right password by a few milliseconds.
    """

    __slots__ = ("busy", "chat", "clock", "how", "tell", "timer")

    def __init__(self, chat: ChatApi, clock: Clock, tell: Callable[[str], None],
                 how: str, busy: Callable[[], bool] = lambda: False) -> None:
        self.chat, self.clock, self.tell, self.how = chat, clock, tell, how
        self.busy = busy
        self.timer: Timer | None = None

    @staticmethod
    def needed(chat: ChatApi, user: User) -> bool:
        """Would :meth:`check` arm a timer for ``user``: their nick is an account's, not theirs."""
        return _foreign_owner(chat, user) is not None

    def check(self, user: User) -> None:
        """``user`` now holds their nick: warn and arm the timer if it is someone else's."""
        self.cancel()
        owner = _foreign_owner(self.chat, user)
        if owner is None:
            return
        grace = self.chat.settings.nick_grace
        assert grace is not None  # _foreign_owner is None without one
        self.tell(f"nick {user.nick} belongs to account {owner}: {self.how} within "
                  f"{grace:g} seconds, or you will be renamed")
        nick = user.nick
        self.timer = self.clock.call_later(grace, lambda: self._expired(user, nick))

    def _expired(self, user: User, nick: str) -> None:
        self.timer = None
        if self.chat.find_user(user.nick) is not user or fold(user.nick) != fold(nick):
            return  # gone, or renamed meanwhile (check() ran again then)
        if self.busy():  # a check under way takes a fraction of a second: its answer first
            self.timer = self.clock.call_later(RECHECK, lambda: self._expired(user, nick))
            return
        owner = self.chat.account_owner(nick)
        if owner is None or owns(user, owner):
            return
        try:
            self.chat.rename(user, self.chat.guest_nick())
        except HubError:  # a guest nick taken in between: next time
            return
        user.bar(nick)  # not straight back for another grace period
        self.tell(f"you did not identify for {nick}; you are now {user.nick}")

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
