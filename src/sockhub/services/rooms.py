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
from dataclasses import replace

from sockhub.hub import HubError, Room, User
from sockhub.hub.events import ROOM_FLAGS, HubEvent, ModeChange, ModeChanged, TopicChanged
from sockhub.hub.model import Registration, RoomState
from sockhub.hub.modes import apply_modes
from sockhub.hub.names import fold
from sockhub.hub.state import HubState
from sockhub.services.accounts import Accounts
from sockhub.store.bus_rooms import RedisRoomStore
from sockhub.store.history import ChatStore

log = logging.getLogger("sockhub.chat")

#: Who gives operator status by account: the name mode changes carry, and a
#: nick no user may take (``hub/names.py: RESERVED_NICKS``).
CHANSERV = "ChanServ"
#: Operator grants per mode change: IRC's MODE line carries a few (ISUPPORT ``MODES``).
MODES_PER_CHANGE = 3
#: Reads and writes of one change before a busy registration is refused
#: (``--bus``: each try lost to another node's change of the same room).
CHANGE_TRIES = 5


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


class _Unchanged(Exception):
    """A change found nothing to do (the registration changed meanwhile)."""


def _nobody(key: str, version: int, registration: Registration | None) -> None:
    """Announce a change to no one: a node alone."""


def _registered(room: str, registration: Registration | None) -> Registration:
    if registration is None:
        raise HubError("not_registered", f"{room} is not registered")
    return registration


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

    With ``--bus``, :meth:`share` moves the registrations to the cluster's
    Redis hash (``store/bus_rooms.py``); ``state.registered`` is then this
    node's copy, kept current by the other nodes' announcements (:meth:`took`).
    """

    def __init__(self, store: ChatStore, state: HubState, accounts: Accounts,
                 publish: Callable[[HubEvent], None], now: Callable[[], float]) -> None:
        self.store, self.state, self.accounts = store, state, accounts
        self.publish, self.now = publish, now
        state.registered.update(store.registrations())
        #: The cluster's registrations (None: this node's SQLite) and how a
        #: change is told to the other nodes: (room key, version, registration).
        self.shared: RedisRoomStore | None = None
        self._announce: Callable[[str, int, Registration | None], None] = _nobody
        #: The version of each room's registration this node has (shared only).
        self._versions: dict[str, int] = {}

    def share(self, shared: RedisRoomStore,
              announce: Callable[[str, int, Registration | None], None]) -> None:
        """Use the cluster's registrations from now on (HubError ``bus_down`` if unreachable)."""
        loaded = shared.load()
        self.shared, self._announce = shared, announce
        self.state.registered.clear()
        for key, (version, registration) in loaded.items():
            self.took(key, version, registration)

    def took(self, key: str, version: int, registration: Registration | None) -> None:
        """A registration as the cluster has it now, unless this node has a newer one."""
        if version <= self._versions.get(key, 0):
            return  # announcements may arrive out of order: the newest stays
        self._versions[key] = version
        if registration is None:
            self.state.registered.pop(key, None)
            return
        self.state.registered[key] = registration
        room = self.state.rooms.get(key)
        if room is not None:
            self.state.keep(room)

    # Queries -------------------------------------------------------------------

    def info(self, room: str) -> Registration:
        """A room's registration. Raises HubError ``not_registered``.

        With ``--bus``, as Redis has it now: this node's copy may be a stream
        read behind a change just made on another node.
        """
        return _registered(room, self._current(room))

    def _current(self, room: str) -> Registration | None:
        if self.shared is not None:
            return self.shared.get(room)[1]
        return self.state.registered.get(fold(room))

    def _managed(self, user: User, room: str, current: Registration | None) -> Registration:
        """A registration its founder (or a server operator) may change."""
        registration = _registered(room, current)
        if not user.is_oper and not registration.is_founder(_account(user)):
            raise HubError("not_founder",
                           f"only the founder of {registration.name} ({registration.founder}) "
                           "may do that")
        return registration

    # Changes -----------------------------------------------------------------------

    def _change(self, key: str, change: Callable[[Registration | None], Registration | None],
                *, by: str, state: RoomState | None = None
                ) -> tuple[Registration | None, Registration | None]:
        """Apply ``change`` (which raises HubError to refuse) to a room's registration.

        Alone, the change is stored in SQLite, then kept in memory. With
        ``--bus`` it is made in Redis, atomically against the registration
        it was worked out from (read again and retried if another node
        changed it meanwhile), then announced: acknowledged only once the
        cluster has it. Returns the registration before and after.
        """
        shared = self.shared
        if shared is None:
            old = self.state.registered.get(key)
            new = change(old)
            self._keep(old, new, by, state)
            if new is None:
                self.state.registered.pop(key, None)
            else:
                self.state.registered[key] = new
            return old, new
        for _ in range(CHANGE_TRIES):
            read, old = shared.get(key)
            new = change(old)
            if read is None:
                assert new is not None
                version = shared.add(new)
            else:
                version = shared.replace(key, read, new)
            if version:
                break
        else:
            raise HubError("unavailable", "the registration is being changed; try again")
        if state is not None:
            self.store.save_room(state)  # the room's state is still kept by each node
        self.took(key, version, new)
        self._announce(key, version, new)
        return old, new

    def _keep(self, old: Registration | None, new: Registration | None, by: str,
              state: RoomState | None) -> None:
        """Store in SQLite what changed from ``old`` to ``new``."""
        store = self.store
        if new is None:
            if old is not None:
                store.unregister_room(old.name)
            return
        if old is None:
            assert state is not None
            store.register_room(new, state)
            return
        if not new.is_founder(old.founder):
            store.set_room_founder(new.name, new.founder)
        for key, account in old.operators.items():
            if key not in new.operators:
                store.remove_room_operator(new.name, account)
        for key, account in new.operators.items():
            if key not in old.operators:
                store.add_room_operator(new.name, account, by, self.now())

    # Commands --------------------------------------------------------------------

    def register(self, user: User, name: str) -> Registration:
        """Register a room its caller operates, to the account they are logged in to."""
        account = _account(user)
        key = fold(name)
        room = self.state.rooms.get(key)

        def register(existing: Registration | None) -> Registration:
            if existing is not None:
                raise HubError("room_registered",
                               f"{existing.name} is already registered, to {existing.founder}")
            if room is None:
                raise HubError("no_such_room", f"no such room: {name} (join it first)")
            if key in self.state.protected:
                raise HubError("not_privileged", f"{room.name} belongs to the server's operators")
            if user.key not in room.operators and not user.is_oper:
                raise HubError("not_operator",
                               f"you must be an operator of {room.name} to register it")
            return Registration(room.name, account, self.now())

        _, registration = self._change(key, register, by=user.nick,
                                       state=RoomState.of(room) if room is not None else None)
        assert registration is not None and room is not None
        self.state.keep(room)
        log.info("rooms: %s registered %s to %s", user.nick, room.name, account)
        return registration

    def drop(self, user: User, name: str) -> Registration:
        """Unregister a room: it goes back to an ordinary room (state kept while not default)."""
        def drop(current: Registration | None) -> None:
            self._managed(user, name, current)

        registration, _ = self._change(fold(name), drop, by=user.nick)
        assert registration is not None
        key = fold(registration.name)
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
        self._managed(user, name, self._current(name))  # before the account's look-up
        account = self.accounts.name_of(account_name)
        if account is None:
            raise HubError("no_such_account", f"no such account: {account_name}")
        key = fold(account)

        def set_operator(current: Registration | None) -> Registration:
            registration = self._managed(user, name, current)
            if registration.is_founder(account):
                raise HubError("invalid_text",
                               f"{account} is the founder of {registration.name}")
            operators = dict(registration.operators)
            if add:
                if key in operators:
                    raise HubError("invalid_text",
                                   f"{account} is already an operator of {registration.name}")
                operators[key] = account
            else:
                if key not in operators:
                    raise HubError("invalid_text",
                                   f"{account} is not an operator of {registration.name}")
                del operators[key]
            return replace(registration, operators=operators)

        _, registration = self._change(fold(name), set_operator, by=user.nick)
        assert registration is not None
        room = self.state.rooms.get(fold(registration.name))
        if room is not None:
            self._give(room, [member for member in room.members.values()
                              if member.account is not None and fold(member.account) == key
                              and (member.key in room.operators) != add], on=add)
        return account

    def transfer(self, user: User, name: str, account_name: str) -> str:
        """Make another account the founder; the old founder stays an operator account."""
        self._managed(user, name, self._current(name))  # before the account's look-up
        account = self.accounts.name_of(account_name)
        if account is None:
            raise HubError("no_such_account", f"no such account: {account_name}")

        def transfer(current: Registration | None) -> Registration:
            registration = self._managed(user, name, current)
            if registration.is_founder(account):
                raise HubError("invalid_text", f"{account} is already the founder")
            operators = dict(registration.operators)
            operators.pop(fold(account), None)
            operators[fold(registration.founder)] = registration.founder
            return replace(registration, founder=account, operators=operators)

        old, registration = self._change(fold(name), transfer, by=user.nick)
        assert old is not None and registration is not None
        log.info("rooms: %s transferred %s from %s to %s", user.nick, registration.name,
                 old.founder, account)
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

        Otherwise whoever registered the name next would inherit them. With
        ``--bus`` this runs on the node where the account was dropped, against
        the cluster's registrations.
        """
        key = fold(account)
        if self.shared is None:
            registrations = list(self.state.registered.values())
        else:
            registrations = [found for _, found in self.shared.load().values()]

        def without(current: Registration | None) -> Registration | None:
            if current is None:
                raise _Unchanged
            if current.is_founder(account):
                return None
            if key not in current.operators:
                raise _Unchanged
            return replace(current, operators={k: name for k, name in current.operators.items()
                                               if k != key})

        for registration in registrations:
            if not registration.is_operator(account):
                continue
            try:
                _, after = self._change(fold(registration.name), without, by=account)
            except _Unchanged:
                continue
            if after is None:
                log.info("rooms: %s is no longer registered (account %s dropped)",
                         registration.name, account)

    def _give(self, room: Room, users: list[User], *, on: bool) -> None:
        """ChanServ gives (or takes) operator status: one MODE everyone in the room sees."""
        for start in range(0, len(users), MODES_PER_CHANGE):
            changes = tuple(ModeChange("operator", on, user.nick)
                            for user in users[start:start + MODES_PER_CHANGE])
            self.publish(ModeChanged(room.name, CHANSERV, changes, self.now()))
