"""ChatStore.append_many: multi-row INSERTs, and the ids it hands back are the stored ones.

The batch's ids are computed (the last rowid less the batch), not read per
row, so these check them against the rows themselves: across rooms, after
deleted rows, beside a second connection writing the same file (``--workers``),
and that a failed batch stores nothing and numbers nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sockhub.hub.events import Message
from sockhub.store.history import _ROWS_MAX, ChatStore


def rows(path: Path) -> list[tuple[int, str, str, str]]:
    db = sqlite3.connect(path)
    try:
        return list(db.execute("SELECT id, room, nick, text FROM messages ORDER BY id"))
    finally:
        db.close()


def batch(texts: list[str], room: str = "#a") -> list[Message]:
    return [Message(room, "ann", text, 1.0 + i, username="u", address="127.0.0.1")
            for i, text in enumerate(texts)]


def test_the_ids_handed_back_are_the_stored_rows_in_order(tmp_path):
    path = tmp_path / "chat.sqlite3"
    store = ChatStore(path)
    try:
        given = batch(["one", "two"]) + batch(["three"], room="#B")
        first = store.append_many(given)
        second = store.append_many(batch(["four"]))
        assert store.append_many([]) == []
    finally:
        store.close()
    stored = [(m.id, m.room, m.nick, m.text) for m in first + second]
    assert stored == rows(path)
    assert [m.id for m in first + second] == [1, 2, 3, 4]
    assert first == given  # seen by no one yet: they get their ids in place
    assert first[0].username == "u" and first[0].address == "127.0.0.1"
    assert first[0].ts == 1.0


def test_ids_keep_counting_after_deleted_rows_and_another_writer(tmp_path):
    path = tmp_path / "chat.sqlite3"
    store = ChatStore(path)
    other = ChatStore(path)  # a sibling worker on the same file
    try:
        store.append_many(batch(["a", "b", "c"]))
        db = sqlite3.connect(path)
        db.execute("DELETE FROM messages WHERE id = 3")  # AUTOINCREMENT: 3 is never reused
        db.commit()
        db.close()
        mine = store.append_many(batch(["d"]))
        theirs = other.append_many(batch(["e", "f"]))
        mine += store.append_many(batch(["g"]))
    finally:
        store.close()
        other.close()
    assert [m.id for m in mine] == [4, 7]
    assert [m.id for m in theirs] == [5, 6]
    assert [(i, text) for i, _, _, text in rows(path)] == [
        (1, "a"), (2, "b"), (4, "d"), (5, "e"), (6, "f"), (7, "g")]


@pytest.mark.parametrize("size", [1, 2, _ROWS_MAX - 1, _ROWS_MAX, _ROWS_MAX + 1, 2 * _ROWS_MAX + 5])
def test_a_batch_of_any_size_is_stored_in_order_with_its_fields(tmp_path, size):
    """A batch is cut into statements of at most _ROWS_MAX rows: none lost, none out of order."""
    path = tmp_path / "chat.sqlite3"
    store = ChatStore(path)
    try:
        store.append_many(batch(["before"]))
        given = [Message("#a" if i % 3 else "#B", f"n{i}", f"text {i}", 10.0 + i,
                         action=i % 5 == 1, notice=i % 5 == 2, username=f"u{i}",
                         address=f"10.0.0.{i % 250}") for i in range(size)]
        stored = store.append_many(given)
        again = store.recent("#a", 3 * _ROWS_MAX) + store.recent("#b", 3 * _ROWS_MAX)
    finally:
        store.close()
    assert [m.id for m in stored] == list(range(2, size + 2))
    assert [(m.id, m.room, m.nick, m.text) for m in stored] == rows(path)[1:]
    read = {m.id: m for m in again}
    for m in stored:  # every column of every row, read back through the store
        back = read[m.id]
        assert (back.room, back.nick, back.text, back.ts, back.action, back.notice,
                back.username, back.address) == (m.room, m.nick, m.text, m.ts, m.action,
                                                 m.notice, m.username, m.address)


def test_messages_with_ids_keep_them_and_are_stored_once(tmp_path):
    path = tmp_path / "chat.sqlite3"
    store = ChatStore(path)
    try:
        given = [Message("#a", "ann", "x", 1.0, id=40), Message("#a", "ann", "y", 2.0, id=41)]
        assert store.append_many(given) == given
        store.append_many(given[:1])  # the bus delivers it again: ignored
    finally:
        store.close()
    assert [(i, text) for i, _, _, text in rows(path)] == [(40, "x"), (41, "y")]


@pytest.mark.parametrize("good", [1, _ROWS_MAX + 1])  # one statement (autocommit), several
def test_a_failed_batch_stores_nothing_and_the_next_one_works(tmp_path, good):
    path = tmp_path / "chat.sqlite3"
    store = ChatStore(path)
    try:
        bad = [*batch(["kept out"] * good), Message("#a", "ann", None, 2.0)]  # type: ignore[arg-type]
        with pytest.raises(sqlite3.IntegrityError):
            store.append_many(bad)
        assert {m.id for m in bad} == {None}  # rolled back: no ids handed out
        assert store.append_many(batch(["fine"]))[0].id == 1
    finally:
        store.close()
    assert [text for _, _, _, text in rows(path)] == ["fine"]
