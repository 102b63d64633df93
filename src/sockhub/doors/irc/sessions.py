"""The IRC door's side of multiclient: one account, several connections (docs/accounts.md).

The hub keeps one user for all of them (``hub/sessions.py``); here is what
an IRC connection is shown of what the others do, as Ergo shows it: a
connection that attaches to a user already in channels gets a JOIN, the
topic and the names of each (as if it had joined them itself), and a JOIN
made by another connection comes with its topic and names too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sockhub.doors.irc.channels import send_names, send_topic
from sockhub.hub import User
from sockhub.hub.events import Joined
from sockhub.hub.names import fold
from sockhub.protocols.irc.vocabulary import render_event

if TYPE_CHECKING:
    from sockhub.doors.irc.door import IrcDoor


def joined_elsewhere(door: IrcDoor, room_name: str) -> None:
    """Another connection of this user joined ``room_name``: the replies a JOIN gets."""
    user = door.user
    room = user.rooms.get(fold(room_name)) if user is not None else None
    if room is None:  # left again meanwhile
        return
    send_topic(door, room, explicit=False)
    send_names(door, room, brief=door.chat.is_quiet(room))


def attached(door: IrcDoor, user: User) -> None:
    """This connection joined a user already present: show it the user's channels."""
    source = door.source_of(user.nick)
    for room in list(user.rooms.values()):
        joined = Joined(room.name, user.nick, door.clock.wall())
        door.emit(render_event(joined, source, door.profile, realname=user.realname,
                               account=user.account))
        send_topic(door, room, explicit=False)
        send_names(door, room, brief=door.chat.is_quiet(room))
