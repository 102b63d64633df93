"""What the client knows, sans-I/O: own nick, current room, who is in which room.

:class:`ChatState` learns from parsed server lines; the prompt, the Tab
completer and reconnection read it. On a lost connection it gives a
:class:`Resume` (the nick and rooms to restore on the next one). Apart from
the I/O so that it is tested by feeding it lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sockhub.client.chat.lines import Kind, ServerLine
from sockhub.hub.names import fold

#: The server's answer to the nick it accepted (``-- you are NICK``).
YOU_ARE = re.compile(r"you are (\S+)\Z")
_TALKING_IN = re.compile(r"talking in (#\S+)\Z")
_IN_ROOM = re.compile(r"in (#\S+)( \(\d+\))?: (.*)\Z")  # the count only in /who replies
_ROOM_LIST = re.compile(r"\s+(#\S+) \(\d+\)")


@dataclass(frozen=True)
class Resume:
    """Where the user was when a connection broke: what to restore on the next one."""

    nick: str
    rooms: tuple[str, ...]
    current: str | None

    def rejoin_lines(self) -> list[str]:
        """``/join`` lines that put the user back, the current room last so it is current again."""
        lines = [f"/join {room}" for room in self.rooms if room != self.current]
        if self.current:
            lines.append(f"/join {self.current}")
        return lines


@dataclass
class ChatState:
    """What the client has learnt from the server's lines on this connection.

    Keys are folded names (``fold``), values as the server spells them.
    ``known_rooms`` and ``seen`` survive reconnection: they only feed completion.
    """

    nick: str | None = None
    current: str | None = None
    rooms: dict[str, str] = field(default_factory=dict)  # rooms we are in, in join order
    members: dict[str, dict[str, str]] = field(default_factory=dict)
    known_rooms: dict[str, str] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)

    def is_me(self, nick: str) -> bool:
        return self.nick is not None and fold(nick) == fold(self.nick)

    def apply(self, line: ServerLine) -> None:
        """Learn from one server line."""
        kind = line.kind
        if kind is Kind.INFO:
            self._apply_info(line.text)
        elif kind is Kind.JOIN:
            self._add_member(line.room, line.nick)
            if self.is_me(line.nick):
                self._enter(line.room)
        elif kind in (Kind.PART, Kind.KICK):
            if self.is_me(line.nick):
                self._leave(line.room)
            else:
                self.members.get(fold(line.room), {}).pop(fold(line.nick), None)
        elif kind is Kind.QUIT:
            for members in self.members.values():
                members.pop(fold(line.nick), None)
            self.seen.pop(fold(line.nick), None)
        elif kind is Kind.NICK:
            self._rename(line.nick, line.other)
        elif kind is Kind.MESSAGE:
            self._add_member(line.room, line.nick)
        elif kind is Kind.PRIVATE:
            self.seen[fold(line.nick)] = line.nick
        elif kind is Kind.PRIVATE_SENT:
            self.seen[fold(line.other)] = line.other
        elif kind is Kind.HISTORY:
            self.known_rooms.setdefault(fold(line.room), line.room)

    def _apply_info(self, text: str) -> None:
        if m := YOU_ARE.match(text):
            self.nick = m.group(1)
        elif m := _TALKING_IN.match(text):
            self._enter(m.group(1))
        elif m := _IN_ROOM.match(text):
            room, is_who, names = m.groups()
            nicks = [name.lstrip("@") for name in names.split()]
            if not is_who:  # the reply to our own join: we are in, and it is current
                self._enter(room)
            self.members[fold(room)] = {fold(n): n for n in nicks}
            self.seen.update((fold(n), n) for n in nicks)
            self.known_rooms.setdefault(fold(room), room)
        elif m := _ROOM_LIST.match(text):
            self.known_rooms.setdefault(fold(m.group(1)), m.group(1))

    def _enter(self, room: str) -> None:
        self.rooms.setdefault(fold(room), room)
        self.known_rooms.setdefault(fold(room), room)
        self.current = self.rooms[fold(room)]

    def _leave(self, room: str) -> None:
        self.rooms.pop(fold(room), None)
        self.members.pop(fold(room), None)
        if self.current is not None and fold(self.current) == fold(room):
            # As the server does: the most recently joined room becomes current.
            self.current = list(self.rooms.values())[-1] if self.rooms else None

    def _add_member(self, room: str, nick: str) -> None:
        self.known_rooms.setdefault(fold(room), room)
        self.seen[fold(nick)] = nick
        if fold(room) in self.rooms:
            self.members.setdefault(fold(room), {})[fold(nick)] = nick

    def _rename(self, old: str, new: str) -> None:
        if self.is_me(old):
            self.nick = new
        for members in self.members.values():
            if members.pop(fold(old), None) is not None:
                members[fold(new)] = new
        self.seen.pop(fold(old), None)
        self.seen[fold(new)] = new

    def connection_lost(self) -> Resume | None:
        """Forget the connection; return what to restore, or None if not registered."""
        resume = None
        if self.nick is not None:
            resume = Resume(self.nick, tuple(self.rooms.values()), self.current)
        self.nick = None
        self.rooms.clear()
        self.members.clear()
        return resume

    def nicks(self, room: str | None = None) -> list[str]:
        """Nicks to complete: a room's members, or everyone seen; never our own."""
        pool = self.members.get(fold(room), {}) if room else self.seen
        return sorted((n for n in pool.values() if not self.is_me(n)), key=fold)

    def room_names(self, *, mine: bool = False) -> list[str]:
        return sorted((self.rooms if mine else self.known_rooms).values(), key=fold)
