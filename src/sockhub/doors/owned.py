"""Owned nicks: a registered nick belongs to its account (docs/accounts.md).

Anyone may take a free nick, but when it is an account's name and they are
not logged in to that account, they are told to identify, and after
``nick_grace`` seconds (on the door's injected clock) still not, they are
renamed to a guest nick, as Ergo's ``nick-reservation`` "timeout" method
does. Every door keeps one :class:`NickGuard` per connection and calls
:meth:`NickGuard.check` when its user arrives or changes nick.
"""

from __future__ import annotations

from collections.abc import Callable

from sockhub.doors.api import ChatApi
from sockhub.hub import HubError, User
from sockhub.hub.names import fold
from sockhub.protocols.base import Clock, Timer


def owns(user: User, account: str) -> bool:
    return user.account is not None and fold(user.account) == fold(account)


class NickGuard:
    """One connection's watch over the nick it holds.

    Args:
        tell: shows the user one notice line (and wakes the door).
        how: what the door's users type to identify, for the notice.
    """

    __slots__ = ("chat", "clock", "how", "tell", "timer")

    def __init__(self, chat: ChatApi, clock: Clock, tell: Callable[[str], None],
                 how: str) -> None:
        self.chat, self.clock, self.tell, self.how = chat, clock, tell, how
        self.timer: Timer | None = None

    def check(self, user: User) -> None:
        """``user`` now holds their nick: warn and arm the timer if it is someone else's."""
        self.cancel()
        grace = self.chat.settings.nick_grace
        owner = self.chat.account_owner(user.nick)
        if owner is None or owns(user, owner) or grace is None:
            return
        self.tell(f"nick {user.nick} belongs to account {owner}: {self.how} within "
                  f"{grace:g} seconds, or you will be renamed")
        nick = user.nick
        self.timer = self.clock.call_later(grace, lambda: self._expired(user, nick))

    def _expired(self, user: User, nick: str) -> None:
        self.timer = None
        if self.chat.find_user(user.nick) is not user or fold(user.nick) != fold(nick):
            return  # gone, or renamed meanwhile (check() ran again then)
        owner = self.chat.account_owner(nick)
        if owner is None or owns(user, owner):
            return
        try:
            self.chat.rename(user, self.chat.guest_nick())
        except HubError:  # a guest nick taken in between: next time
            return
        user.barred.add(fold(nick))  # not straight back for another grace period
        self.tell(f"you did not identify for {nick}; you are now {user.nick}")

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
