"""The chat hub: rooms, users and fan-out, and nothing of any wire format.

Pure and synchronous: no sockets, no awaits, no clocks (time is passed in).
Front doors (line, IRC, web) translate their protocol into hub calls and
hub events back into their protocol.
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
from sockhub.hub.hub import Hub, HubError, Room, User

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
