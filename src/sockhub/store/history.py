"""SQLite history: a chat message is acknowledged only once it is stored.

One database file, ``chat.sqlite3`` under the data directory, in WAL mode
with ``synchronous=NORMAL``: every committed transaction is in the OS's
hands before the message is fanned out, so it survives ``kill -9`` of the
server (a power cut may lose the last moments; ``synchronous=FULL`` would
trade throughput for that). Bans live in the same file.

Writes are synchronous and small (one INSERT and a commit, tens of
microseconds), done on the event loop's thread: the ordering "stored, then
delivered" is then trivially true, with no queue in between to lose.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sockhub.hub.events import Message
from sockhub.hub.names import fold

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    room_key TEXT NOT NULL,
    room     TEXT NOT NULL,
    nick     TEXT NOT NULL,
    text     TEXT NOT NULL,
    action   INTEGER NOT NULL DEFAULT 0,
    ts       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_room ON messages (room_key, id);
CREATE TABLE IF NOT EXISTS bans (
    room_key TEXT NOT NULL,
    mask     TEXT NOT NULL,
    set_by   TEXT NOT NULL,
    ts       REAL NOT NULL,
    PRIMARY KEY (room_key, mask)
);
"""

#: The most messages one history request returns.
HISTORY_MAX = 1000


class ChatStore:
    """Messages and bans of one chat service, in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def append(self, message: Message) -> Message:
        """Store a room message; return it with its id. Committed on return."""
        cursor = self._db.execute(
            "INSERT INTO messages (room_key, room, nick, text, action, ts) VALUES (?,?,?,?,?,?)",
            (
                fold(message.room),
                message.room,
                message.nick,
                message.text,
                int(message.action),
                message.ts,
            ),
        )
        return Message(
            message.room, message.nick, message.text, message.ts, message.action, cursor.lastrowid
        )

    def recent(self, room: str, limit: int, *, before_id: int | None = None) -> list[Message]:
        """The last ``limit`` messages of a room (older than ``before_id``), oldest first."""
        limit = max(0, min(limit, HISTORY_MAX))
        rows = self._db.execute(
            "SELECT id, room, nick, text, action, ts FROM messages "
            "WHERE room_key = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (fold(room), before_id if before_id is not None else 2**63 - 1, limit),
        ).fetchall()
        return [
            Message(r[1], r[2], r[3], r[5], bool(r[4]), r[0], history=True) for r in reversed(rows)
        ]

    def between(self, room: str, start_ts: float, end_ts: float, limit: int) -> list[Message]:
        """Messages of a room with ``start_ts <= ts < end_ts``, oldest first."""
        rows = self._db.execute(
            "SELECT id, room, nick, text, action, ts FROM messages "
            "WHERE room_key = ? AND ts >= ? AND ts < ? ORDER BY id LIMIT ?",
            (fold(room), start_ts, end_ts, max(0, min(limit, HISTORY_MAX))),
        ).fetchall()
        return [Message(r[1], r[2], r[3], r[5], bool(r[4]), r[0], history=True) for r in rows]

    def add_ban(self, room: str, mask: str, set_by: str, ts: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO bans (room_key, mask, set_by, ts) VALUES (?,?,?,?)",
            (fold(room), mask, set_by, ts),
        )

    def remove_ban(self, room: str, mask: str) -> None:
        self._db.execute("DELETE FROM bans WHERE room_key = ? AND mask = ?", (fold(room), mask))

    def bans(self) -> dict[str, list[str]]:
        """Every room's ban masks, by room key."""
        result: dict[str, list[str]] = {}
        for room_key, mask in self._db.execute("SELECT room_key, mask FROM bans ORDER BY ts"):
            result.setdefault(room_key, []).append(mask)
        return result
