"""IRCv3 ``draft/read-marker``: MARKREAD, where a user's reading of each target stands.

https://ircv3.net/specs/extensions/read-marker. A client sends
``MARKREAD <target> timestamp=YYYY-MM-DDThh:mm:ss.sssZ`` to say it has read
``target`` up to that time, or ``MARKREAD <target>`` to ask; the server
answers ``MARKREAD <target> timestamp=...`` (or ``*``: nothing stored). The
stored time "MUST only ever increase", so a set older than the marker is
answered with the newer one; after a JOIN the server sends the room's
marker "before RPL_ENDOFNAMES"; and it "SHOULD" tell the user's other
clients when one moves it.

For a user logged in to an account the marker is the account's, kept in
the chat store, and the same marker the line door and the web page read
and move (docs/accounts.md). A user without an account has markers for
this connection only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sockhub.codec.irc import parse_time
from sockhub.hub import HubError
from sockhub.hub.names import fold

if TYPE_CHECKING:
    from sockhub.codec.irc import IrcMessage
    from sockhub.doors.irc.door import IrcDoor

CAP = "draft/read-marker"
#: Targets a connection without an account keeps markers for (then the oldest go).
LOCAL_MAX = 256


def ms_time(ms: int) -> str:
    """Unix milliseconds in server-time's format, ``YYYY-MM-DDThh:mm:ss.sssZ``."""
    seconds, millis = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


def format_ms(ms: int) -> str:
    """Unix milliseconds as the spec's ``timestamp=`` value."""
    return "timestamp=" + ms_time(ms)


def marker_of(door: IrcDoor, target: str) -> int | None:
    user = door.user
    if user is not None and user.account is not None:
        return door.chat.read_marker(user, target)
    markers = door.markers
    return markers.get(fold(target)) if markers is not None else None


def send_marker(door: IrcDoor, target: str, ms: int | None = None) -> None:
    """``MARKREAD target timestamp=...`` (or ``*``) to this client, if it asked for them."""
    if CAP not in door.caps:
        return
    if ms is None:
        try:
            ms = marker_of(door, target)
        except HubError:  # the cluster's markers unreachable: no answer rather than a wrong one
            return
    door.emit(door.line("MARKREAD", target, format_ms(ms) if ms is not None else "*"))


def cmd_markread(door: IrcDoor, message: IrcMessage) -> None:
    """MARKREAD <target> [timestamp=...]: ask for, or move, a read marker."""
    user = door.user
    assert user is not None
    params = message.params
    if not params or not params[0]:
        door.emit(door.line("FAIL", "MARKREAD", "NEED_MORE_PARAMS", "Missing parameters"))
        return
    target = params[0]
    if len(params) < 2:
        try:
            ms = marker_of(door, target)
        except HubError as exc:
            door.emit(door.line("FAIL", "MARKREAD", "TEMPORARILY_UNAVAILABLE", target, str(exc)))
            return
        send_marker(door, target, ms)
        return
    kind, _, value = params[1].partition("=")
    ts = parse_time(value) if kind == "timestamp" else None
    if ts is None:  # "*" included: only the server says "*"
        door.emit(door.line("FAIL", "MARKREAD", "INVALID_PARAMS", target,
                            "A timestamp=YYYY-MM-DDThh:mm:ss.sssZ is required"))
        return
    ms = round(ts * 1000)
    if user.account is not None:
        try:
            stored = door.chat.mark_read(user, target, ms, via=door)
        except HubError as exc:  # with a Redis bus: its markers unreachable, said (no hang)
            door.emit(door.line("FAIL", "MARKREAD", "TEMPORARILY_UNAVAILABLE", target, str(exc)))
            return
        assert stored is not None
    else:
        key = fold(target)
        markers = door.markers
        if markers is None:
            markers = door.markers = {}
        stored = max(ms, markers.pop(key, ms))
        if len(markers) >= LOCAL_MAX:
            del markers[next(iter(markers))]
        markers[key] = stored
    send_marker(door, target, stored)
