"""Registered rooms: a founder account, operator accounts, and ChanServ's grants.

An account can register a room it operates (IRC ``/msg ChanServ REGISTER
#room``, the line door's ``/room register #room``; docs/accounts.md). From
then on the room is never forgotten, empty or across restarts (its topic,
settings and bans are kept as every room's are, ``store/history.py``), and
operator status in it follows accounts rather than arrival order: whoever is
logged in to the founder's or an operator account is given ``+o`` by
ChanServ when they join or log in, and nobody gets it by being first into
the emptied room (``HubState.opens_as_operator``). This is Ergo's
``CS REGISTER``/``AMODE``/``OP``/``DROP``/``INFO``/``TRANSFER``.

Each change is stored before it is applied in memory or told to anyone, as
room messages are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sockhub.hub import HubError, Room, User
from sockhub.hub.events import ROOM_FLAGS, HubEvent, ModeChange, ModeChanged, TopicChanged
from sockhub.hub.model import Registration, RoomState
from sockhub.hub.modes import apply_modes
from sockhub.hub.names import fold
from sockhub.hub.state import HubState
from sockhub.services.accounts import Accounts
from sockhub.store.history import ChatStore

log = logging.getLogger("sockhub.chat")

#: Who gives operator status by account: the name mode changes carry, and a
#: nick no user may take (``hub/names.py: RESERVED_NICKS``).
CHANSERV = "ChanServ"
#: Operator grants per mode change: IRC's MODE line carries a few (ISUPPORT ``MODES``).
MODES_PER_CHANGE = 3


def state_after(room: Room, event: TopicChanged | ModeChanged) -> RoomState:
    """The state ``room`` will keep once ``event`` is applied, worked out before it is.

    So the chat service can store a topic or a setting before anyone is told
    of it ("stored, then delivered", as for messages); the hub applies the
    event itself afterwards and arrives at the same state.
    """
    probe = Room(room.name, created=room.created)
    RoomState.of(room).restore(probe)
    if isinstance(event, TopicChanged):
        probe.topic, probe.topic_by, probe.topic_ts = event.topic, event.nick, event.ts
        probe.topic_username, probe.topic_address = event.username, event.address
    else:
        apply_modes(probe, [change for change in event.changes if change.flag in ROOM_FLAGS])
    return RoomState.of(probe)


def _account(user: User) -> str:
    if user.account is None:
        raise HubError("account_needed", "log in to an account first (identify)")
    return user.account


class OwnedRooms:
    """The registered rooms of one chat service, in its store and its hub's state.

    Args:
        store: where registrations are kept (migration 2 of ``store/history.py``).
        state: the hub's state, whose ``registered`` this fills and keeps.
        accounts: to check that an account named as operator exists.
        publish: the chat service's publish (a mode change goes on the bus).
        now: the wall clock.
    """

    def __init__(self, store: ChatStore, state: HubState, accounts: Accounts,
                 publish: Callable[[HubEvent], None], now: Callable[[], float]) -> None:
        self.store, self.state, self.accounts = store, state, accounts
        self.publish, self.now = publish, now
        state.registered.update(store.registrations())

    # Queries -------------------------------------------------------------------

    def info(self, room: str) -> Registration:
        """A room's registration. Raises HubError ``not_registered``."""
        registration = self.state.registered.get(fold(room))
        if registration is None:
            raise HubError("not_registered", f"{room} is not registered")
        return registration

    def _managed(self, user: User, room: str) -> Registration:
        """A registration its founder (or a server operator) may change."""
        registration = self.info(room)
        if not user.is_oper and not registration.is_founder(_account(user)):
            raise HubError("not_founder",
                           f"only the founder of {registration.name} ({registration.founder}) "
                           "may do that")
        return registration

    # Commands --------------------------------------------------------------------

    def register(self, user: User, name: str) -> Registration:
        """Register a room its caller operates, to the account they are logged in to."""
        account = _account(user)
        key = fold(name)
        existing = self.state.registered.get(key)
        if existing is not None:
            raise HubError("room_registered",
                           f"{existing.name} is already registered, to {existing.founder}")
        room = self.state.rooms.get(key)
        if room is None:
            raise HubError("no_such_room", f"no such room: {name} (join it first)")
        if key in self.state.protected:
            raise HubError("not_privileged", f"{room.name} belongs to the server's operators")
        if user.key not in room.operators and not user.is_oper:
            raise HubError("not_operator",
                           f"you must be an operator of {room.name} to register it")
        registration = Registration(room.name, account, self.now())
        self.store.register_room(registration, RoomState.of(room))
        self.state.registered[key] = registration
        self.state.keep(room)
        log.info("rooms: %s registered %s to %s", user.nick, room.name, account)
        return registration

    def drop(self, user: User, name: str) -> Registration:
        """Unregister a room: it goes back to an ordinary room (state kept while not default)."""
        registration = self._managed(user, name)
        key = fold(registration.name)
        self.store.unregister_room(registration.name)
        del self.state.registered[key]
        saved = self.state.saved.get(key)
        if saved is not None and saved.is_default:
            self.store.forget_room(key)
            del self.state.saved[key]
        log.info("rooms: %s dropped the registration of %s", user.nick, registration.name)
        return registration

    def set_operator(self, user: User, name: str, account_name: str, *, add: bool) -> str:
        """Add or remove an operator account (``AMODE +o``/``-o``); returns its name.

        Members present and logged in to it get, or lose, operator status now.
        """
        registration = self._managed(user, name)
        account = self.accounts.name_of(account_name)
        if account is None:
            raise HubError("no_such_account", f"no such account: {account_name}")
        if registration.is_founder(account):
            raise HubError("invalid_text", f"{account} is the founder of {registration.name}")
        key = fold(account)
        if add:
            if key in registration.operators:
                raise HubError("invalid_text",
                               f"{account} is already an operator of {registration.name}")
            self.store.add_room_operator(registration.name, account, user.nick, self.now())
            registration.operators[key] = account
        else:
            if key not in registration.operators:
                raise HubError("invalid_text",
                               f"{account} is not an operator of {registration.name}")
            self.store.remove_room_operator(registration.name, account)
            del registration.operators[key]
        room = self.state.rooms.get(fold(registration.name))
        if room is not None:
            self._give(room, [member for member in room.members.values()
                              if member.account is not None and fold(member.account) == key
                              and (member.key in room.operators) != add], on=add)
        return account

    def transfer(self, user: User, name: str, account_name: str) -> str:
        """Make another account the founder; the old founder stays an operator account."""
        registration = self._managed(user, name)
        account = self.accounts.name_of(account_name)
        if account is None:
            raise HubError("no_such_account", f"no such account: {account_name}")
        if registration.is_founder(account):
            raise HubError("invalid_text", f"{account} is already the founder")
        old = registration.founder
        self.store.set_room_founder(registration.name, account)
        self.store.remove_room_operator(registration.name, account)
        self.store.add_room_operator(registration.name, old, user.nick, self.now())
        registration.founder = account
        registration.operators.pop(fold(account), None)
        registration.operators[fold(old)] = old
        log.info("rooms: %s transferred %s from %s to %s", user.nick, registration.name, old,
                 account)
        self.arrived_all(registration)
        return account

    def op(self, user: User, name: str, nick: str | None = None) -> User:
        """``CS OP``: an operator account gives operator status to itself or a member."""
        registration = self.info(name)
        if not user.is_oper and not registration.is_operator(_account(user)):
            raise HubError("not_operator",
                           f"your account is not an operator of {registration.name}")
        room = self.state.rooms.get(fold(registration.name))
        if room is None or (user.key not in room.members and not user.is_oper):
            raise HubError("not_in_room", f"you are not in {registration.name}")
        target = room.members.get(fold(nick or user.nick))
        if target is None:
            raise HubError("not_in_room", f"{nick} is not in {room.name}", target=nick)
        if target.key not in room.operators:
            self._give(room, [target], on=True)
        return target

    # Arrivals ----------------------------------------------------------------------

    def arrived(self, user: User, rooms: list[str]) -> None:
        """``user`` joined or logged in: operator status where their account has it."""
        registered = self.state.registered
        for key in rooms:
            registration = registered.get(key)
            room = user.rooms.get(key)
            if (registration is not None and room is not None
                    and user.key not in room.operators and registration.is_operator(user.account)):
                self._give(room, [user], on=True)

    def arrived_all(self, registration: Registration) -> None:
        """Everyone present in a registered room whose account has operator status gets it."""
        room = self.state.rooms.get(fold(registration.name))
        if room is not None:
            self._give(room, [member for member in room.members.values()
                              if member.key not in room.operators
                              and registration.is_operator(member.account)], on=True)

    def account_dropped(self, account: str) -> None:
        """An account is gone: its rooms are unregistered, its operator entries removed.

        Otherwise whoever registered the name next would inherit them.
        """
        key = fold(account)
        for registration in list(self.state.registered.values()):
            if registration.is_founder(account):
                self.store.unregister_room(registration.name)
                del self.state.registered[fold(registration.name)]
                log.info("rooms: %s is no longer registered (account %s dropped)",
                         registration.name, account)
            elif key in registration.operators:
                self.store.remove_room_operator(registration.name, account)
                del registration.operators[key]

    def _give(self, room: Room, users: list[User], *, on: bool) -> None:
        """ChanServ gives (or takes) operator status: one MODE everyone in the room sees."""
        for start in range(0, len(users), MODES_PER_CHANGE):
            changes = tuple(ModeChange("operator", on, user.nick)
                            for user in users[start:start + MODES_PER_CHANGE])
            self.publish(ModeChanged(room.name, CHANSERV, changes, self.now()))
