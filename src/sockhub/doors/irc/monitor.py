"""MONITOR: a client's list of nicks it is told about (IRCv3 monitor, extended-monitor).

https://ircv3.net/specs/extensions/monitor: ``MONITOR + a,b`` / ``- a,b`` /
``C`` / ``L`` / ``S``; 730 RPL_MONONLINE (``nick!user@host``), 731
RPL_MONOFFLINE, 732 RPL_MONLIST, 733 RPL_ENDOFMONLIST, 734 ERR_MONLISTFULL.
The list is this connection's (a :class:`Monitor`, made on the first MONITOR);
the server-wide index of who watches whom is the chat service's
:class:`~sockhub.hub.watch.Watchlist`, which calls the watcher back. Its
entries go when the connection does (:func:`connection_lost`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sockhub.codec.irc import ERR_ERRONEUSNICKNAME, IrcMessage
from sockhub.hub.events import AccountChanged, AwayChanged, RealnameChanged
from sockhub.hub.names import fold, nick_problem
from sockhub.protocols.irc.vocabulary import MONITOR_MAX  # the index: clients x this, at most

if TYPE_CHECKING:
    from sockhub.doors.irc.door import IrcDoor

# Numerics of the monitor spec ("Numerics" section).
RPL_MONONLINE = "730"
RPL_MONOFFLINE = "731"
RPL_MONLIST = "732"
RPL_ENDOFMONLIST = "733"
ERR_MONLISTFULL = "734"

#: Characters of targets in one reply line: well under 512 with the prefix,
#: numeric and nick (each target of 730 is ``nick!user@host``).
_LINE_BUDGET = 350


class Monitor:
    """One connection's monitor list: folded nick → the nick as added."""

    __slots__ = ("door", "nicks")

    def __init__(self, door: IrcDoor) -> None:
        self.door = door
        self.nicks: dict[str, str] = {}

    # Watcher (hub/watch.py) -----------------------------------------------------

    def came_online(self, nick: str) -> None:
        if self.door.user is None:  # leaving: its entries go in connection_lost
            return
        self.door.reply(RPL_MONONLINE, self.door.source_of(nick))
        self.door.wake()

    def went_offline(self, nick: str) -> None:
        if self.door.user is None:
            return
        self.door.reply(RPL_MONOFFLINE, nick)
        self.door.wake()

    def changed(self, event: AwayChanged | AccountChanged | RealnameChanged) -> None:
        """extended-monitor: the notification the watcher's caps ask for, unless it
        already had it through a shared room (the door's own ``deliver``)."""
        door, me = self.door, self.door.user
        if me is None or "extended-monitor" not in door.caps or fold(event.nick) == me.key:
            return
        cap = ("away-notify" if isinstance(event, AwayChanged) else
               "setname" if isinstance(event, RealnameChanged) else "account-notify")
        if cap not in door.caps:
            return
        them = door.chat.find_user(event.nick)
        if them is not None and not me.rooms.keys().isdisjoint(them.rooms.keys()):
            return  # a shared room delivered it already: never twice
        if isinstance(event, AwayChanged):
            params = (event.message,) if event.message else ()
            door.send_from(door.source_of(event.nick), "AWAY", *params)
        elif isinstance(event, RealnameChanged):
            door.send_from(door.source_of(event.nick), "SETNAME", event.realname)
        else:
            door.send_from(door.source_of(event.nick), "ACCOUNT", event.account or "*")
        door.wake()


def _send_lists(door: IrcDoor, numeric: str, items: list[str]) -> None:
    """``items`` comma-joined over as few lines as fit."""
    line: list[str] = []
    size = 0
    for item in items:
        if line and size + len(item) + 1 > _LINE_BUDGET:
            door.reply(numeric, ",".join(line))
            line, size = [], 0
        line.append(item)
        size += len(item) + 1
    if line:
        door.reply(numeric, ",".join(line))


def _status(door: IrcDoor, nicks: list[str]) -> None:
    """730 for the nicks online (their ``nick!user@host``), 731 for the rest."""
    online, offline = [], []
    for nick in nicks:
        user = door.chat.find_user(nick)
        if user is None:
            offline.append(nick)
        else:
            online.append(door.source_of(user.nick))
    _send_lists(door, RPL_MONONLINE, online)
    _send_lists(door, RPL_MONOFFLINE, offline)


def cmd_monitor(door: IrcDoor, message: IrcMessage) -> None:
    params = message.params
    op = params[0].upper() if params else ""
    if op in ("+", "-") and len(params) < 2:
        door.reply("461", "MONITOR", "Not enough parameters")
        return
    monitor = door.monitor
    if op == "+":
        if monitor is None:
            monitor = door.monitor = Monitor(door)
        watchlist = door.chat.watchlist
        added: list[str] = []
        targets = [t for t in params[1].split(",") if t]
        for i, nick in enumerate(targets):
            if nick_problem(nick) is not None:
                # "target MUST be a valid nick": no masks (privacy), so never online.
                door.reply(ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname")
                continue
            key = fold(nick)
            if key in monitor.nicks:
                continue
            if len(monitor.nicks) >= MONITOR_MAX:
                door.reply(ERR_MONLISTFULL, str(MONITOR_MAX), ",".join(targets[i:]),
                           "Monitor list is full.")
                break
            monitor.nicks[key] = nick
            watchlist.add(nick, monitor)
            added.append(nick)
        _status(door, added)
    elif op == "-":
        if monitor is not None:
            for nick in params[1].split(","):
                if monitor.nicks.pop(fold(nick), None) is not None:
                    door.chat.watchlist.remove(nick, monitor)
    elif op == "C":
        connection_lost(door)
    elif op == "L":
        _send_lists(door, RPL_MONLIST, list(monitor.nicks.values()) if monitor else [])
        door.reply(RPL_ENDOFMONLIST, "End of MONITOR list")
    elif op == "S":
        _status(door, list(monitor.nicks.values()) if monitor else [])
    else:
        door.reply("421", "MONITOR", "Unknown MONITOR subcommand")


def connection_lost(door: IrcDoor) -> None:
    """The connection's entries leave the server-wide index (and MONITOR C)."""
    monitor = door.monitor
    if monitor is not None:
        door.chat.watchlist.forget(list(monitor.nicks.values()), monitor)
        door.monitor = None
