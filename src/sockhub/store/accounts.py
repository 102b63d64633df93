"""Accounts, in the chat store's SQLite file: a table of their own.

One row per account: its name as registered, the folded name as the key
(so ``Alice`` and ``alice`` are one account, as nicks are one nick), an
scrypt hash for PLAIN and typed passwords (``sockhub.passwords``), and the
SCRAM-SHA-256 credentials (salt, iterations, StoredKey, ServerKey: RFC 5802
§3) for SASL SCRAM. No password is ever stored, and no address.

The table is created if missing (``CREATE TABLE IF NOT EXISTS``), which is
the whole migration: a chat.sqlite3 written before accounts existed gains
the table on the first start of a version that has them, and older
versions ignore it. The file is already 0600 (``store/history.py``).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sockhub.hub.names import fold
from sockhub.protocols.scram import ScramCredentials
from sockhub.store.checkpoint import leave_checkpoints_to_the_thread

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name_key   TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    password   TEXT NOT NULL,      -- scrypt$... (sockhub.passwords)
    scram_salt BLOB NOT NULL,
    scram_iter INTEGER NOT NULL,
    stored_key BLOB NOT NULL,
    server_key BLOB NOT NULL,
    created    REAL NOT NULL
);
"""


@dataclass(frozen=True)
class AccountRecord:
    """One stored account."""

    name: str
    password: str
    scram: ScramCredentials
    created: float
    rowid: int = 0

    @property
    def generation(self) -> str:
        """Which registration of the name this is: a dropped and registered-again
        account has another, so a login to the old one is not taken for the new."""
        return f"{self.rowid}:{self.created!r}"


class AccountStore:
    """The accounts table. Shares the chat store's file through a connection of its own."""

    def __init__(self, path: str | Path) -> None:
        # The file and its directory were made private by ChatStore, which is
        # opened first; WAL mode lets two connections share it.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        leave_checkpoints_to_the_thread(self._db)  # ChatStore's thread checkpoints
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def get(self, name: str) -> AccountRecord | None:
        row = self._db.execute(
            "SELECT name, password, scram_salt, scram_iter, stored_key, server_key, created, "
            "rowid FROM accounts WHERE name_key = ?", (fold(name),),
        ).fetchone()
        if row is None:
            return None
        return AccountRecord(row[0], row[1], ScramCredentials(row[2], row[3], row[4], row[5]),
                             row[6], row[7])

    def add(self, name: str, password: str, scram: ScramCredentials, now: float) -> bool:
        """Store a new account; False if the name is taken (folded)."""
        try:
            self._db.execute(
                "INSERT INTO accounts VALUES (?,?,?,?,?,?,?,?)",
                (fold(name), name, password, scram.salt, scram.iterations, scram.stored_key,
                 scram.server_key, now),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def set_password(self, name: str, password: str, scram: ScramCredentials) -> bool:
        cursor = self._db.execute(
            "UPDATE accounts SET password = ?, scram_salt = ?, scram_iter = ?, stored_key = ?, "
            "server_key = ? WHERE name_key = ?",
            (password, scram.salt, scram.iterations, scram.stored_key, scram.server_key,
             fold(name)),
        )
        return cursor.rowcount > 0

    def remove(self, name: str) -> bool:
        cursor = self._db.execute("DELETE FROM accounts WHERE name_key = ?", (fold(name),))
        return cursor.rowcount > 0

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM accounts").fetchone()[0])
