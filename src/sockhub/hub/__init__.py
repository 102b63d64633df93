"""The chat hub: rooms, users and fan-out, and nothing of any wire format.

Pure and synchronous: no sockets, no awaits, no clocks (time is passed in).
Front doors (line, IRC, web) translate their protocol into hub calls and
hub events back into their protocol.

:class:`Hub` (:mod:`.hub`) is the facade: its commands check a change and
describe it as an event (:mod:`.events`); :mod:`.state` applies events and
delivers them; :mod:`.model` holds users and rooms, :mod:`.modes` room
settings and bans, :mod:`.names` the rules for names and text, and
:mod:`.sessions` one user's several connections (multiclient).
"""

from __future__ import annotations

from sockhub.hub.events import (
    HubEvent,
    Joined,
    Kicked,
    Member,
    Message,
    NickChanged,
    Parted,
    Private,
    Quit,
    TopicChanged,
)
from sockhub.hub.hub import Hub
from sockhub.hub.model import HubError, Room, User

__all__ = [
    "Hub",
    "HubError",
    "HubEvent",
    "Joined",
    "Kicked",
    "Member",
    "Message",
    "NickChanged",
    "Parted",
    "Private",
    "Quit",
    "Room",
    "TopicChanged",
    "User",
]
