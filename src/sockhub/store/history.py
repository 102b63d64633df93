"""SQLite history: a chat message is acknowledged only once it is stored.

One database file, ``chat.sqlite3`` under the data directory, in WAL mode
with ``synchronous=NORMAL``: every committed transaction is in the OS's
hands before the message is fanned out, so it survives ``kill -9`` of the
server (a power cut may lose the last moments; ``synchronous=FULL`` would
trade throughput for that). Bans live in the same file. The directory is
0700 and every file 0600 (``sockhub.paths``): history is the owner's alone.

Rooms keep their state (topic, settings) here while empty and across
restarts, and the ``seen`` table remembers up to which message each client
(by nick, user name and address) had seen a room when it left it, so that a
reconnecting client's automatic replay starts there.

For accounts (docs/accounts.md) it keeps private messages for the accounts
that took part, a read marker per account and target (IRCv3
``draft/read-marker``), and the web door's login sessions, by a hash.

Writes are synchronous, done on the event loop's thread, and grouped: the
chat service hands :meth:`ChatStore.append_many` the room messages that
arrived in one turn of the loop, stored in one transaction (one commit,
instead of one per message: group commit), and fans them out only once it
returns, so the ordering "stored, then delivered" stays true with nothing
in between to lose. SQLite's automatic checkpoints are off on this
connection: a thread of :mod:`sockhub.store.checkpoint` copies the WAL into
the file, armed by the commits, so the copy and its ``fsync`` never stall
the loop.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sockhub.hub.events import Message
from sockhub.hub.model import Registration, RoomState
from sockhub.hub.names import HISTORY_MAX, clean_text, fold
from sockhub.paths import private_dir, private_file, tighten
from sockhub.store.checkpoint import (
    CHECKPOINT_DELAY,
    WAL_FRAMES_MAX,
    Checkpointer,
    leave_checkpoints_to_the_thread,
)

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

#: Schema versions (``PRAGMA user_version``) and the steps from the one
#: before. A file written by an older version is brought up to date when
#: it is opened, in one transaction, keeping its history; version 0 is the
#: first release's (messages and bans only).
MIGRATIONS: tuple[str, ...] = (
    # 1: the sender's user name and address with each message (a replay
    # names them in full, nick!user@host; older messages say the address is
    # unknown); room state kept while a room is empty and across restarts;
    # where each client last left each room.
    """
    ALTER TABLE messages ADD COLUMN username TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN address TEXT NOT NULL DEFAULT 'unknown';
    CREATE TABLE rooms (
        room_key       TEXT PRIMARY KEY,
        name           TEXT NOT NULL,
        created        REAL NOT NULL,
        topic          TEXT NOT NULL,
        topic_by       TEXT NOT NULL,
        topic_username TEXT NOT NULL,
        topic_address  TEXT NOT NULL,
        topic_ts       REAL NOT NULL,
        topic_lock     INTEGER NOT NULL,
        no_external    INTEGER NOT NULL,
        moderated      INTEGER NOT NULL,
        invite_only    INTEGER NOT NULL,
        password       TEXT,
        member_limit   INTEGER,
        secret         INTEGER NOT NULL DEFAULT 0,
        private        INTEGER NOT NULL DEFAULT 0,
        no_ctcp        INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE seen (
        who      TEXT NOT NULL,  -- folded nick!user@address
        room_key TEXT NOT NULL,
        last_id  INTEGER NOT NULL,  -- the newest message of the room when they left
        ts       REAL NOT NULL,
        PRIMARY KEY (who, room_key)
    );
    """,
    # 2: registered rooms (docs/accounts.md): each room's founder account,
    # and the accounts given operator status in it. Account names are kept
    # folded for lookups and as registered for display.
    """
    CREATE TABLE registered_rooms (
        room_key    TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        founder_key TEXT NOT NULL,
        founder     TEXT NOT NULL,
        registered  REAL NOT NULL
    );
    CREATE TABLE room_operators (
        room_key    TEXT NOT NULL,
        account_key TEXT NOT NULL,
        account     TEXT NOT NULL,
        added_by    TEXT NOT NULL,
        ts          REAL NOT NULL,
        PRIMARY KEY (room_key, account_key)
    );
    """,
    # 3 (issue 14, history that follows the person): private messages kept
    # for the accounts that took part (the message in ``messages`` under the
    # room key ``*``, no room's; one index row per account that may read it,
    # by the other party's folded nick), read markers per account and target
    # (IRCv3 draft/read-marker, in Unix milliseconds), and the web door's
    # login sessions (a SHA-256 of the cookie's token, never the token).
    """
    CREATE TABLE private_index (
        owner     TEXT NOT NULL,     -- folded account name
        peer      TEXT NOT NULL,     -- folded nick of the other party
        peer_name TEXT NOT NULL,     -- that nick as it was spelled
        id        INTEGER NOT NULL,  -- messages.id
        PRIMARY KEY (owner, peer, id)
    );
    CREATE TABLE read_markers (
        account TEXT NOT NULL,       -- folded account name
        target  TEXT NOT NULL,       -- folded room name or nick
        ms      INTEGER NOT NULL,
        PRIMARY KEY (account, target)
    );
    CREATE TABLE web_sessions (
        token_hash BLOB PRIMARY KEY,
        account    TEXT NOT NULL,
        created    REAL NOT NULL,
        expires    REAL NOT NULL
    );
    CREATE INDEX web_sessions_account ON web_sessions (account);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
#: How long opening the file waits for other processes to let go of it (seconds).
WAL_WAIT = 10.0

_COLUMNS = "id, room, nick, text, action, ts, username, address"
_INSERT_NEW = (
    "INSERT INTO messages (room_key, room, nick, text, action, ts, username, address) "
    "VALUES (?,?,?,?,?,?,?,?)"
)
_ROW_VALUES = 8  # the values of one row in _INSERT_NEW
#: Rows one multi-row INSERT takes at most (``_ROWS_MAX * _ROW_VALUES`` values, far
#: below SQLite's 32,766 variables): each count has its own statement text, and
#: the connection's statement cache (``cached_statements``) keeps them all.
_ROWS_MAX = 64


@functools.cache
def _insert_rows(count: int) -> str:
    """``_INSERT_NEW`` for ``count`` rows in one statement."""
    return _INSERT_NEW + ",(?,?,?,?,?,?,?,?)" * (count - 1)
_MARK_SEEN = (
    "INSERT OR REPLACE INTO seen (who, room_key, last_id, ts) VALUES "
    "(?, ?, coalesce((SELECT max(id) FROM messages WHERE room_key = ?), 0), ?)"
)


#: ``action`` column value of a notice (0 is a message, 1 a /me action).
_KIND_NOTICE = 2
#: The room key of stored private messages: no room folds to it (rooms start with ``#``).
PRIVATE_KEY = "*"

Bound = tuple[str, int]


def _message(row: tuple[Any, ...]) -> Message:
    kind = row[4]
    # The hub cleans text before it is stored; this covers files written
    # by versions that did not.
    return Message(
        row[1], row[2], clean_text(row[3]), row[5], kind == 1, row[0], history=True,
        notice=kind == _KIND_NOTICE, username=row[6], address=row[7],
    )


class ChatStore:
    """Messages and bans of one chat service, in one SQLite file."""

    def __init__(self, path: str | Path, *, checkpoint_delay: float = CHECKPOINT_DELAY,
                 wal_frames_max: int = WAL_FRAMES_MAX) -> None:
        self.path = Path(path)
        # History is private: the directory 0700, the file 0600 before SQLite
        # opens it, since SQLite gives its -wal, -shm and -journal files the
        # main file's mode (and keeps an old side file's own).
        private_dir(self.path.parent)
        private_file(self.path)
        for suffix in ("-wal", "-shm", "-journal"):
            tighten(f"{self.path}{suffix}")
        # Room for every multi-row INSERT size (_insert_rows) beside the other statements.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   cached_statements=128 + _ROWS_MAX)
        self._use_wal()
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._migrate()
        leave_checkpoints_to_the_thread(self._db, wal_frames_max)  # store/checkpoint.py
        self._checkpointer = Checkpointer(self.path, delay=checkpoint_delay,
                                          frames_max=wal_frames_max)

    def _use_wal(self) -> None:
        """Put the file in WAL mode (kept in the file), waiting out other openers.

        Switching needs the file to itself, and SQLite answers "database is
        locked" at once, without its busy timeout, while another process
        (a sibling ``--workers`` process starting too) has it open: retry
        for a while, and skip the switch once someone has made it.
        """
        deadline = time.monotonic() + WAL_WAIT
        while True:
            try:
                mode = self._db.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # start-up only: nothing else runs yet

    def _migrate(self) -> None:
        """Bring a file of an older schema up to :data:`SCHEMA_VERSION`, in one transaction.

        The version is read inside the write transaction, so processes opening
        one file at once (``--workers``) migrate it once: the others wait for
        the lock (SQLite's busy timeout), then find it up to date.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"{self.path} has schema version {version}, newer than this sockhub's "
                    f"{SCHEMA_VERSION}: run the newer version"
                )
            # Statement by statement (executescript would commit each one):
            # the whole migration is all or nothing.
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
            if version != SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Stop the checkpointer, then close (SQLite's last close checkpoints, removes the WAL)."""
        self._checkpointer.close()
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
            self._wrote()
            return message
        cursor = self._db.execute(
            _INSERT_NEW,
            (
                fold(message.room),
                message.room,
                message.nick,
                message.text,
                _KIND_NOTICE if message.notice else int(message.action),
                message.ts,
                message.username,
                message.address,
            ),
        )
        self._wrote()
        return replace(message, id=cursor.lastrowid)

    def append_many(self, messages: list[Message]) -> list[Message]:
        """Store room messages in one transaction, in order; committed on return.

        Group commit: a commit costs more than the INSERTs it closes, so the
        messages of one loop turn share it. One multi-row INSERT for the batch
        (a Python ``execute`` call per message cost more than its INSERT);
        the ids are consecutive since the transaction holds the write lock
        from its first INSERT and the table is AUTOINCREMENT, so the batch's
        first id is the last one less the batch, and each message of a batch
        gets its id in place (see :meth:`_insert_new`). Messages that have
        ids (from the Redis bus) keep them. On an error nothing is stored (the
        transaction is rolled back) and the error is raised.
        """
        if not messages:
            return []
        db = self._db
        fresh = all(message.id is None for message in messages)
        if fresh and len(messages) <= _ROWS_MAX and not db.in_transaction:
            # One statement is its own transaction in autocommit mode (SQLite,
            # "Transaction": "any command that accesses the database ... will
            # start a transaction automatically"; it commits or rolls back as
            # a whole): BEGIN and COMMIT around it cost a quarter of a
            # one-message commit.
            last = self._insert_new(messages)
            self._number(messages, last)
            if not self._checkpointer.armed:  # after the commit: the checkpoint will include it
                self._checkpointer.arm()
            return messages
        db.execute("BEGIN")
        try:
            if fresh:
                last = self._insert_new(messages)
            else:
                stored = [self.append(message) for message in messages]
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._wrote()
        if not fresh:
            return stored
        self._number(messages, last)
        return messages

    def _wrote(self) -> None:
        """A write outside :meth:`append_many`'s fast path: have it checkpointed too.

        Every write method calls it (the accounts' connection, AccountStore,
        does not: its rare writes go with the next checkpoint, or the close).
        """
        if not self._checkpointer.armed:
            self._checkpointer.arm()

    @staticmethod
    def _number(messages: list[Message], last: int) -> None:
        """Give committed new messages their ids in place, the last one ``last``.

        A message without an id is one the chat service has just accepted and
        no one has seen yet (it is published after the commit), and building
        a second frozen Message per message cost as much as its INSERT
        (dataclasses.replace four times that).
        """
        set_field = object.__setattr__
        for message_id, message in enumerate(messages, last - len(messages) + 1):
            set_field(message, "id", message_id)

    def _insert_new(self, messages: list[Message]) -> int:
        """INSERT messages without ids inside the caller's transaction; the last one's id.

        Multi-row INSERTs of up to :data:`_ROWS_MAX` rows, not ``executemany``:
        SQLite runs one statement for many rows (AUTOINCREMENT's
        ``sqlite_sequence`` row is written once per statement, not per row),
        which took a third off the storing of a 37-message batch.
        """
        keys: dict[str, str] = {}  # a batch is mostly one room: fold it once
        values: list[object] = []
        add = values.extend
        for m in messages:
            room = m.room
            key = keys.get(room)
            if key is None:
                key = keys[room] = fold(room)
            add((key, room, m.nick, m.text, _KIND_NOTICE if m.notice else int(m.action),
                 m.ts, m.username, m.address))
        execute = self._db.execute
        count = len(messages)
        if count <= _ROWS_MAX:  # the usual batch: one statement
            return int(execute(_insert_rows(count), values).lastrowid or 0)
        width = _ROWS_MAX * _ROW_VALUES
        last = 0
        for start in range(0, count * _ROW_VALUES, width):
            chunk = values[start:start + width]
            last = int(execute(_insert_rows(len(chunk) // _ROW_VALUES), chunk).lastrowid or 0)
        return last

    def recent(self, room: str, limit: int, *, before_id: int | None = None) -> list[Message]:
        """The last ``limit`` messages of a room (older than ``before_id``), oldest first."""
        limit = max(0, min(limit, HISTORY_MAX))
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM messages "
            "WHERE room_key = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (fold(room), before_id if before_id is not None else 2**63 - 1, limit),
        ).fetchall()
        return [_message(r) for r in reversed(rows)]

    def between(self, room: str, start_ts: float, end_ts: float, limit: int) -> list[Message]:
        """Messages of a room with ``start_ts <= ts < end_ts``, oldest first."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM messages "
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
        return self._page("room_key = ?", [fold(room)], limit, after, before, newest)

    def _page(self, where: str, args: list[object], limit: int, after: Bound | None,
              before: Bound | None, newest: bool) -> list[Message]:
        clauses = [where]
        args = list(args)
        for bound, op in ((after, ">"), (before, "<")):
            if bound is not None:
                column = "id" if bound[0] == "id" else "CAST(ts * 1000 AS INTEGER)"
                clauses.append(f"{column} {op} ?")
                args.append(int(bound[1]))
        order = "DESC" if newest else "ASC"
        args.append(max(0, min(limit, HISTORY_MAX)))
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM messages "
            f"WHERE {' AND '.join(clauses)} ORDER BY id {order} LIMIT ?",
            args,
        ).fetchall()
        if newest:
            rows.reverse()
        return [_message(r) for r in rows]

    def find(self, room: str, message_id: int) -> Message | None:
        """One message of a room by id."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE room_key = ? AND id = ?",
            (fold(room), message_id),
        ).fetchone()
        return _message(row) if row else None

    def add_ban(self, room: str, mask: str, set_by: str, ts: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO bans (room_key, mask, set_by, ts) VALUES (?,?,?,?)",
            (fold(room), mask, set_by, ts),
        )
        self._wrote()

    def remove_ban(self, room: str, mask: str) -> None:
        self._db.execute("DELETE FROM bans WHERE room_key = ? AND mask = ?", (fold(room), mask))
        self._wrote()

    def bans(self) -> dict[str, list[str]]:
        """Every room's ban masks, by room key."""
        result: dict[str, list[str]] = {}
        for room_key, mask in self._db.execute("SELECT room_key, mask FROM bans ORDER BY ts"):
            result.setdefault(room_key, []).append(mask)
        return result

    # Room state ------------------------------------------------------------

    def save_room(self, state: RoomState) -> None:
        """Keep a room's state (replacing what was kept)."""
        self._db.execute(
            "INSERT OR REPLACE INTO rooms (room_key, name, created, topic, topic_by, "
            "topic_username, topic_address, topic_ts, topic_lock, no_external, moderated, "
            "invite_only, password, member_limit, secret, private, no_ctcp) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (fold(state.name), state.name, state.created, state.topic, state.topic_by,
             state.topic_username, state.topic_address, state.topic_ts, int(state.topic_lock),
             int(state.no_external), int(state.moderated), int(state.invite_only),
             state.password, state.limit, int(state.secret), int(state.private),
             int(state.no_ctcp)),
        )
        self._wrote()

    def forget_room(self, room: str) -> None:
        """A room back to a new room's state: nothing to keep."""
        self._db.execute("DELETE FROM rooms WHERE room_key = ?", (fold(room),))
        self._wrote()

    def rooms(self) -> dict[str, RoomState]:
        """Every kept room state, by room key."""
        rows = self._db.execute(
            "SELECT room_key, name, created, topic, topic_by, topic_username, topic_address, "
            "topic_ts, topic_lock, no_external, moderated, invite_only, password, member_limit, "
            "secret, private, no_ctcp FROM rooms"
        )
        return {
            row[0]: RoomState(
                row[1], row[2], clean_text(row[3]), row[4], row[5], row[6], row[7],
                bool(row[8]), bool(row[9]), bool(row[10]), bool(row[11]), row[12], row[13],
                bool(row[14]), bool(row[15]), bool(row[16]),
            )
            for row in rows
        }

    # Where clients left rooms ----------------------------------------------

    def mark_seen(self, who: str, room_keys: list[str], ts: float) -> None:
        """``who`` leaves these rooms now, having seen each up to its newest message."""
        rows = [(who, key, key, ts) for key in room_keys]
        if len(rows) == 1:  # a PART: one statement is its own transaction
            self._db.execute(_MARK_SEEN, rows[0])
            self._wrote()
            return
        self._db.execute("BEGIN")  # a QUIT from several rooms: one commit
        try:
            self._db.executemany(_MARK_SEEN, rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._wrote()

    def last_seen(self, who: str, room: str) -> int | None:
        """The newest message id of ``room`` when ``who`` last left it; None: never seen."""
        row = self._db.execute(
            "SELECT last_id FROM seen WHERE who = ? AND room_key = ?", (who, fold(room))
        ).fetchone()
        return int(row[0]) if row else None

    def forget_seen_before(self, ts: float) -> None:
        """Drop departures older than ``ts`` (a client gone that long gets the usual replay)."""
        self._db.execute("DELETE FROM seen WHERE ts < ?", (ts,))
        self._wrote()

    # Registered rooms ------------------------------------------------------

    def register_room(self, registration: Registration, state: RoomState) -> None:
        """Record a room's registration, and its state as it is now, in one transaction."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.execute(
                "INSERT INTO registered_rooms (room_key, name, founder_key, founder, registered) "
                "VALUES (?,?,?,?,?)",
                (fold(registration.name), registration.name, fold(registration.founder),
                 registration.founder, registration.registered),
            )
            self.save_room(state)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._wrote()

    def unregister_room(self, room: str) -> None:
        """Forget a room's registration and its operator accounts (its state stays)."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.execute("DELETE FROM registered_rooms WHERE room_key = ?", (fold(room),))
            db.execute("DELETE FROM room_operators WHERE room_key = ?", (fold(room),))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._wrote()

    def set_room_founder(self, room: str, founder: str) -> None:
        self._db.execute(
            "UPDATE registered_rooms SET founder_key = ?, founder = ? WHERE room_key = ?",
            (fold(founder), founder, fold(room)),
        )
        self._wrote()

    def add_room_operator(self, room: str, account: str, added_by: str, ts: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO room_operators (room_key, account_key, account, added_by, ts) "
            "VALUES (?,?,?,?,?)",
            (fold(room), fold(account), account, added_by, ts),
        )
        self._wrote()

    def remove_room_operator(self, room: str, account: str) -> None:
        self._db.execute(
            "DELETE FROM room_operators WHERE room_key = ? AND account_key = ?",
            (fold(room), fold(account)),
        )
        self._wrote()

    def registrations(self) -> dict[str, Registration]:
        """Every registered room, by room key, with its operator accounts."""
        found = {
            key: Registration(name, founder, registered)
            for key, name, founder, registered in self._db.execute(
                "SELECT room_key, name, founder, registered FROM registered_rooms")
        }
        for key, account in self._db.execute(
                "SELECT room_key, account FROM room_operators ORDER BY ts"):
            registration = found.get(key)
            if registration is not None:
                registration.operators[fold(account)] = account
        return found

    # Private messages (kept for the accounts that took part) -------------

    def append_private(self, message: Message, readers: list[tuple[str, str, str]]) -> Message:
        """Store a private message (``room`` is its target) for ``readers``; return it with its id.

        Each reader is (folded account, folded nick of the other party, that
        nick as spelled): who may page it back, and under which conversation.
        One transaction, committed on return. A message that has an id
        already (given by the Redis bus) keeps it, and is stored once however
        often it arrives.
        """
        db = self._db
        db.execute("BEGIN")
        try:
            cursor = db.execute(
                f"INSERT {'OR IGNORE ' if message.id is not None else ''}INTO messages "
                "(id, room_key, room, nick, text, action, ts, username, address) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (message.id, PRIVATE_KEY, message.room, message.nick, message.text,
                 _KIND_NOTICE if message.notice else int(message.action), message.ts,
                 message.username, message.address),
            )
            stored = message if message.id is not None else replace(message, id=cursor.lastrowid)
            db.executemany(
                "INSERT OR IGNORE INTO private_index (owner, peer, peer_name, id) VALUES (?,?,?,?)",
                [(owner, peer, name, stored.id) for owner, peer, name in readers],
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._wrote()
        return stored

    def private_page(self, owner: str, peer: str, limit: int, *, after: Bound | None = None,
                     before: Bound | None = None, newest: bool = True) -> list[Message]:
        """Account ``owner``'s conversation with nick ``peer`` (both folded), as :meth:`page`."""
        return self._page(
            "room_key = ? AND id IN (SELECT id FROM private_index WHERE owner = ? AND peer = ?)",
            [PRIVATE_KEY, owner, peer], limit, after, before, newest)

    def find_private(self, owner: str, peer: str, message_id: int) -> Message | None:
        found = self._page(
            "room_key = ? AND id = ? AND id IN "
            "(SELECT id FROM private_index WHERE owner = ? AND peer = ?)",
            [PRIVATE_KEY, message_id, owner, peer], 1, None, None, True)
        return found[0] if found else None

    def latest(self, owner: str, rooms: list[str]) -> list[tuple[str, float]]:
        """Each conversation's newest message time: the ``rooms``, and ``owner``'s private ones.

        The name is the room's as stored, or the other party's nick as last
        spelled (IRCv3 CHATHISTORY TARGETS).
        """
        result: list[tuple[str, float]] = []
        if rooms:
            marks = ",".join("?" * len(rooms))
            result += self._db.execute(
                f"SELECT room, max(ts) FROM messages WHERE room_key IN ({marks}) "
                "GROUP BY room_key", [fold(r) for r in rooms]).fetchall()
        if owner:
            # SQLite: the bare column comes from the row holding max(...).
            result += [(row[0], row[1]) for row in self._db.execute(
                "SELECT p.peer_name, max(m.ts) FROM private_index p JOIN messages m "
                "ON m.id = p.id WHERE p.owner = ? GROUP BY p.peer", (owner,))]
        return result

    def forget_account(self, owner: str) -> None:
        """A dropped account: its private index, read markers and web sessions go."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.execute("DELETE FROM private_index WHERE owner = ?", (owner,))
            db.execute("DELETE FROM read_markers WHERE account = ?", (owner,))
            db.execute("DELETE FROM web_sessions WHERE account = ?", (owner,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._wrote()

    # Read markers (IRCv3 draft/read-marker) -------------------------------

    def read_marker(self, account: str, target: str) -> int | None:
        """Up to when (Unix milliseconds) ``account`` read ``target`` (both folded); None: never."""
        row = self._db.execute(
            "SELECT ms FROM read_markers WHERE account = ? AND target = ?", (account, target)
        ).fetchone()
        return int(row[0]) if row else None

    def mark_read(self, account: str, target: str, ms: int) -> int:
        """Move the marker to ``ms`` unless it is past it already ("MUST only ever increase").

        Returns the marker as stored.
        """
        self._db.execute(
            "INSERT INTO read_markers (account, target, ms) VALUES (?,?,?) "
            "ON CONFLICT (account, target) DO UPDATE SET ms = max(ms, excluded.ms)",
            (account, target, ms))
        self._wrote()
        stored = self.read_marker(account, target)
        assert stored is not None
        return stored

    def newest_ms(self, room: str) -> int | None:
        """The time (Unix ms) of a room's newest message, None if it has none."""
        row = self._db.execute(
            "SELECT CAST(ts * 1000 AS INTEGER) FROM messages WHERE room_key = ? "
            "ORDER BY id DESC LIMIT 1", (fold(room),)).fetchone()
        return int(row[0]) if row else None

    # Web sessions (doors/web; only a hash of each token is kept) ----------

    def add_session(self, token_hash: bytes, account: str, now: float, expires: float,
                    *, keep: int = 20) -> None:
        """A new login session; past ``keep`` of one account, its oldest end (a password
        in someone's hands cannot grow the table without bound)."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.execute("INSERT OR REPLACE INTO web_sessions VALUES (?,?,?,?)",
                       (token_hash, account, now, expires))
            db.execute(
                "DELETE FROM web_sessions WHERE account = ? AND token_hash NOT IN (SELECT "
                "token_hash FROM web_sessions WHERE account = ? ORDER BY created DESC LIMIT ?)",
                (account, account, keep))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._wrote()

    def session(self, token_hash: bytes, now: float) -> str | None:
        """The account of a live session (folded), None if unknown or expired."""
        row = self._db.execute(
            "SELECT account FROM web_sessions WHERE token_hash = ? AND expires > ?",
            (token_hash, now)).fetchone()
        return str(row[0]) if row else None

    def drop_session(self, token_hash: bytes) -> None:
        self._db.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))
        self._wrote()

    def drop_sessions(self, account: str) -> None:
        """Every session of an account (its password changed)."""
        self._db.execute("DELETE FROM web_sessions WHERE account = ?", (account,))
        self._wrote()

    def forget_sessions_before(self, now: float) -> None:
        self._db.execute("DELETE FROM web_sessions WHERE expires <= ?", (now,))
        self._wrote()
