"""SQLite history: a chat message is acknowledged only once it is stored.

One database file, ``chat.sqlite3`` under the data directory, in WAL mode
with ``synchronous=NORMAL``: every committed transaction is in the OS's
hands before the message is fanned out, so it survives ``kill -9`` of the
server (a power cut may lose the last moments; ``synchronous=FULL`` would
trade throughput for that). Bans live in the same file. The directory is
0700 and every file 0600 (``sockhub.paths``): history is the owner's alone.

Writes are synchronous, done on the event loop's thread, and grouped: the
chat service hands :meth:`ChatStore.append_many` the room messages that
arrived in one turn of the loop, stored in one transaction (one commit,
instead of one per message: group commit), and fans them out only once it
returns, so the ordering "stored, then delivered" stays true with nothing
in between to lose.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sockhub.hub.events import Message
from sockhub.hub.names import HISTORY_MAX, clean_text, fold
from sockhub.paths import private_dir, private_file, tighten

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    room_key TEXT NOT NULL,
    room     TEXT NOT NULL,
    nick     TEXT NOT NULL,
    text     TEXT NOT NULL,
    action   INTEGER NOT NULL DEFAULT 0,  -- 0 message, 1 /me action, 2 notice
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


#: ``action`` column value of a notice (0 is a message, 1 a /me action).
_KIND_NOTICE = 2

Bound = tuple[str, int]


def _message(row: tuple[Any, ...]) -> Message:
    kind = row[4]
    # The hub cleans text before it is stored; this covers files written
    # by versions that did not.
    return Message(
        row[1], row[2], clean_text(row[3]), row[5], kind == 1, row[0], history=True,
        notice=kind == _KIND_NOTICE,
    )


class ChatStore:
    """Messages and bans of one chat service, in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # History is private: the directory 0700, the file 0600 before SQLite
        # opens it, since SQLite gives its -wal, -shm and -journal files the
        # main file's mode (and keeps an old side file's own).
        private_dir(self.path.parent)
        private_file(self.path)
        for suffix in ("-wal", "-shm", "-journal"):
            tighten(f"{self.path}{suffix}")
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def count(self) -> int:
        """Messages stored (read once at start for ``GET /metrics``: a scan of the table)."""
        row = self._db.execute("SELECT count(*) FROM messages").fetchone()
        return int(row[0])

    def largest_id(self) -> int:
        """The largest message id stored, 0 if none (a Redis bus seeds its id counter with it)."""
        row = self._db.execute("SELECT max(id) FROM messages").fetchone()
        return int(row[0] or 0)

    def append(self, message: Message) -> Message:
        """Store a room message; return it with its id. Committed on return, but in append_many.

        A message that has an id already (given by the Redis bus) keeps it,
        and is stored once however often it arrives.
        """
        if message.id is not None:
            self._db.execute(
                "INSERT OR IGNORE INTO messages (id, room_key, room, nick, text, action, ts) "
                "VALUES (?,?,?,?,?,?,?)",
                (message.id, fold(message.room), message.room, message.nick, message.text,
                 _KIND_NOTICE if message.notice else int(message.action), message.ts),
            )
            return message
        cursor = self._db.execute(
            "INSERT INTO messages (room_key, room, nick, text, action, ts) VALUES (?,?,?,?,?,?)",
            (
                fold(message.room),
                message.room,
                message.nick,
                message.text,
                _KIND_NOTICE if message.notice else int(message.action),
                message.ts,
            ),
        )
        return Message(
            message.room, message.nick, message.text, message.ts, message.action,
            cursor.lastrowid, notice=message.notice, meta=message.meta,
        )

    def append_many(self, messages: list[Message]) -> list[Message]:
        """Store room messages in one transaction, in order; committed on return.

        Group commit: a commit costs more than the INSERTs it closes, so the
        messages of one loop turn share it. On an error nothing is stored
        (the transaction is rolled back) and the error is raised.
        """
        db = self._db
        db.execute("BEGIN")
        try:
            stored = [self.append(message) for message in messages]
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return stored

    def recent(self, room: str, limit: int, *, before_id: int | None = None) -> list[Message]:
        """The last ``limit`` messages of a room (older than ``before_id``), oldest first."""
        limit = max(0, min(limit, HISTORY_MAX))
        rows = self._db.execute(
            "SELECT id, room, nick, text, action, ts FROM messages "
            "WHERE room_key = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (fold(room), before_id if before_id is not None else 2**63 - 1, limit),
        ).fetchall()
        return [_message(r) for r in reversed(rows)]

    def between(self, room: str, start_ts: float, end_ts: float, limit: int) -> list[Message]:
        """Messages of a room with ``start_ts <= ts < end_ts``, oldest first."""
        rows = self._db.execute(
            "SELECT id, room, nick, text, action, ts FROM messages "
            "WHERE room_key = ? AND ts >= ? AND ts < ? ORDER BY id LIMIT ?",
            (fold(room), start_ts, end_ts, max(0, min(limit, HISTORY_MAX))),
        ).fetchall()
        return [_message(r) for r in rows]

    def page(
        self,
        room: str,
        limit: int,
        *,
        after: Bound | None = None,
        before: Bound | None = None,
        newest: bool = True,
    ) -> list[Message]:
        """Up to ``limit`` messages strictly between two bounds, oldest first.

        A bound is ``("id", n)`` or ``("ms", milliseconds)``; None leaves
        that side open. Times compare in whole milliseconds, truncated, as
        IRC's server-time tags show them. With ``newest`` the messages nearest ``before`` are
        kept when there are more than ``limit``, otherwise those nearest
        ``after`` (IRCv3 CHATHISTORY's BEFORE versus AFTER).
        """
        clauses = ["room_key = ?"]
        args: list[object] = [fold(room)]
        for bound, op in ((after, ">"), (before, "<")):
            if bound is not None:
                column = "id" if bound[0] == "id" else "CAST(ts * 1000 AS INTEGER)"
                clauses.append(f"{column} {op} ?")
                args.append(int(bound[1]))
        order = "DESC" if newest else "ASC"
        args.append(max(0, min(limit, HISTORY_MAX)))
        rows = self._db.execute(
            "SELECT id, room, nick, text, action, ts FROM messages "
            f"WHERE {' AND '.join(clauses)} ORDER BY id {order} LIMIT ?",
            args,
        ).fetchall()
        if newest:
            rows.reverse()
        return [_message(r) for r in rows]

    def find(self, room: str, message_id: int) -> Message | None:
        """One message of a room by id."""
        row = self._db.execute(
            "SELECT id, room, nick, text, action, ts FROM messages WHERE room_key = ? AND id = ?",
            (fold(room), message_id),
        ).fetchone()
        return _message(row) if row else None

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
