"""Room settings and bans: checking a batch of changes, applying it, matching masks.

Rooms carry the settings every chat door can honour: a topic lock, a
password (IRC's "key"), a member limit, invite-only, moderated (only
operators and voiced members speak), no-external-messages (only members
speak) and secret or private (not listed to outsiders), plus who is an
operator and who has a voice. IRC spells them as channel modes ``+t +k +l
+i +m +n +s +p +o +v``; the hub knows them by name
(:class:`~sockhub.hub.events.ModeChange`).

A module of its own because a batch of changes is a small language with
rules of its own (each change is checked against the state the earlier ones
leave, and a change that changes nothing is dropped, as IRC servers do),
and the ban masks are matched here for the commands and the apply step alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sockhub.hub.events import ModeChange
from sockhub.hub.model import HubError, Room, User
from sockhub.hub.names import LIMIT_MAX, fold, mask_match, password_problem

#: Room attribute behind each boolean room flag of :class:`ModeChange`.
ROOM_ATTRS = {
    "moderated": "moderated",
    "no_external": "no_external",
    "invite_only": "invite_only",
    "topic_lock": "protected",
    "secret": "secret",
    "private": "private",
    "no_ctcp": "no_ctcp",
}


def full_mask(mask: str) -> str:
    """A ban mask in full ``nick!user@host`` form, expanded as IRC servers do.

    A bare word is a nick (``lbob`` → ``lbob!*@*``) unless it holds a ``.``
    or ``:``, which no nick may: then it is a host (``10.0.0.7`` →
    ``*!*@10.0.0.7``); ``user@host`` gets any nick, ``nick!user`` any host,
    and an empty part becomes ``*`` (charybdis and hybrid, ``pretty_mask``).
    Every door's bans take this one form, so a ban lists, matches and is
    lifted the same way whoever set it.
    """
    if "!" in mask:
        nick, _, rest = mask.partition("!")
    elif "@" in mask:
        nick, rest = "*", mask
    elif "." in mask or ":" in mask:
        return f"*!*@{mask}"
    else:
        return f"{mask}!*@*"
    user, _, host = rest.partition("@")
    return f"{nick or '*'}!{user or '*'}@{host or '*'}"


def is_banned(masks: Iterable[str], user: User) -> bool:
    """Does any of a room's ban ``masks`` (folded) match ``user``?

    Masks are matched whole against ``nick!user@host``; a bare one stored by
    an older version is expanded first (:func:`full_mask`). An IPv6 address
    also matches as IRC shows it, with a ``0`` before a leading ``:``.
    """
    hostmasks = [fold(user.hostmask)]
    if user.address.startswith(":"):
        hostmasks.append(fold(f"{user.nick}!{user.username or user.nick}@0{user.address}"))
    for mask in masks:
        if "!" not in mask:
            mask = full_mask(mask)
        if any(mask_match(mask, hostmask) for hostmask in hostmasks):
            return True
    return False


class ModeBatch:
    """One batch of changes to one room's settings, checked change by change.

    :meth:`check` keeps track of what the earlier changes of the batch would
    leave, so ``+k a +k a`` sets the password once and ``+o x -o x`` does
    nothing twice; the room itself is changed only by :func:`apply_modes`.

    Args:
        room: the room the batch is for.
        find_user: the hub's lookup of a user by nick (for ``operator`` and ``voice``).
    """

    def __init__(self, room: Room, find_user: Callable[[str], User | None]) -> None:
        self.room = room
        self._find_user = find_user
        self._flags: dict[str, bool] = {}
        self._password = room.password
        self._limit = room.limit
        self._statuses: dict[tuple[str, str], bool] = {}

    def check(self, change: ModeChange) -> ModeChange | None:
        """The change as it will be applied, or None if it would change nothing.

        Raises:
            HubError: the change is invalid (no such nick, a bad password or
                limit, an unknown setting); the rest of the batch goes on.
        """
        if change.flag in ("operator", "voice"):
            return self._status(change)
        if change.flag == "password":
            return self._password_change(change)
        if change.flag == "limit":
            return self._limit_change(change)
        return self._flag(change)

    def _status(self, change: ModeChange) -> ModeChange | None:
        flag, on, arg, room = change.flag, change.on, change.arg, self.room
        target = self._find_user(arg or "")
        if target is None:
            raise HubError("no_such_nick", f"no such nick: {arg}", target=arg)
        if target.key not in room.members:
            raise HubError(
                "not_in_room", f"{target.nick} is not in {room.name}", target=target.nick
            )
        members = room.operators if flag == "operator" else room.voiced
        current = self._statuses.get((flag, target.key), target.key in members)
        if current == on:
            return None
        self._statuses[(flag, target.key)] = on
        return ModeChange(flag, on, target.nick)

    def _password_change(self, change: ModeChange) -> ModeChange | None:
        current, arg = self._password, change.arg
        if not change.on:
            self._password = None
            return ModeChange("password", False) if current is not None else None
        problem = password_problem(arg or "")
        if problem:
            raise HubError("invalid_password", f"invalid password: {problem}", target=change.flag)
        if current == arg:
            return None
        self._password = arg
        return ModeChange("password", True, arg)

    def _limit_change(self, change: ModeChange) -> ModeChange | None:
        current = self._limit
        if not change.on:
            self._limit = None
            return ModeChange("limit", False) if current is not None else None
        try:
            limit = int(change.arg or "")
        except ValueError:
            limit = 0
        if not 1 <= limit <= LIMIT_MAX:
            raise HubError(
                "invalid_limit", f"a member limit is a number from 1 to {LIMIT_MAX}",
                target="limit",
            )
        if current == limit:
            return None
        self._limit = limit
        return ModeChange("limit", True, str(limit))

    def _flag(self, change: ModeChange) -> ModeChange | None:
        flag, on = change.flag, change.on
        attr = ROOM_ATTRS.get(flag)
        if attr is None:
            raise HubError("invalid_text", f"unknown room setting {flag!r}", target=flag)
        current: bool = self._flags.get(flag, getattr(self.room, attr))
        if current == on:
            return None
        self._flags[flag] = on
        return ModeChange(flag, on)


def apply_modes(room: Room, changes: Iterable[ModeChange]) -> None:
    """Change ``room``'s settings as a checked batch says."""
    for change in changes:
        if change.flag in ("operator", "voice"):
            keys = room.operators if change.flag == "operator" else room.voiced
            (keys.add if change.on else keys.discard)(fold(change.arg or ""))
        elif change.flag == "password":
            room.password = change.arg if change.on else None
        elif change.flag == "limit":
            room.limit = int(change.arg or 0) if change.on else None
        else:
            setattr(room, ROOM_ATTRS[change.flag], change.on)
