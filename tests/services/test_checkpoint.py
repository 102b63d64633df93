"""The WAL checkpointer (store/checkpoint.py): off the loop, armed by commits, bounded, quiet.

Real SQLite files in tmp_path. Nothing sleeps to synchronise: each test
waits for a counter the checkpointer keeps, with a deadline; the one
negative check (no wake-ups while idle) watches over a short window.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from net import chat_client
from proc import start_sockhub
from sockhub.hub.events import Message
from sockhub.store.checkpoint import Checkpointer, wal_bytes_kept
from sockhub.store.history import ChatStore

DEADLINE = 10.0
FAST = 0.005  # the checkpointer's delay in these tests (100 ms in the server)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)  # polling a condition, with a deadline


def message(i: int, room: str = "#a") -> Message:
    return Message(room, "ann", f"message {i} with some padding text", 1.0 + i,
                   username="u", address="127.0.0.1")


def checkpointer(store: ChatStore) -> Checkpointer:
    return store._checkpointer


def wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "chat.sqlite3"


@pytest.fixture
def stores() -> Iterator[list[ChatStore]]:
    opened: list[ChatStore] = []
    yield opened
    for store in opened:
        store.close()


def test_commits_wake_it_and_the_pages_reach_the_database_file(path, stores):
    store = ChatStore(path, checkpoint_delay=FAST)
    stores.append(store)
    ckpt = checkpointer(store)
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert ckpt.rounds == 0 and not ckpt.armed
    store.append_many([message(1), message(2)])
    wait_for(lambda: ckpt.checkpoints >= 1 and ckpt.quiet, "a checkpoint")
    busy, frames, copied = ckpt.last or (1, 0, 0)
    assert busy == 0 and frames > 0 and copied == frames
    # The database file alone (no WAL beside it) has the messages.
    alone = path.with_name("alone.sqlite3")
    shutil.copyfile(path, alone)
    db = sqlite3.connect(alone)
    try:
        assert [r[0] for r in db.execute("SELECT text FROM messages ORDER BY id")] == [
            "message 1 with some padding text", "message 2 with some padding text"]
    finally:
        db.close()


def test_other_client_writes_wake_it_too(path, stores):
    store = ChatStore(path, checkpoint_delay=FAST)
    stores.append(store)
    ckpt = checkpointer(store)
    store.mark_seen("ann!u@127.0.0.1", ["#a"], 5.0)
    wait_for(lambda: ckpt.checkpoints >= 1, "a checkpoint after a departure")
    store.mark_read("ann", "#a", 1000)
    wait_for(lambda: ckpt.checkpoints >= 2, "a checkpoint after a read marker")


def test_idle_it_blocks_instead_of_polling(path, stores):
    store = ChatStore(path, checkpoint_delay=FAST)
    stores.append(store)
    ckpt = checkpointer(store)
    store.append_many([message(1)])
    wait_for(lambda: ckpt.checkpoints >= 1 and ckpt.quiet, "a checkpoint")
    rounds, checkpoints = ckpt.rounds, ckpt.checkpoints
    # A negative check over a window of 60 delays: a polling thread would have woken.
    threading.Event().wait(60 * FAST)
    assert (ckpt.rounds, ckpt.checkpoints) == (rounds, checkpoints)
    assert ckpt.running
    store.append_many([message(2)])  # and it still answers
    wait_for(lambda: ckpt.rounds > rounds, "a round after the next commit")


def test_a_commit_while_armed_pays_one_test_and_is_not_lost(path, stores):
    store = ChatStore(path, checkpoint_delay=2.0)  # long enough to commit inside it
    stores.append(store)
    ckpt = checkpointer(store)
    store.append_many([message(1)])
    assert ckpt.armed
    store.append_many([message(2)])  # armed already: no second wake-up
    assert ckpt.armed and ckpt.rounds == 0  # both inside the first round's delay
    wait_for(lambda: ckpt.checkpoints >= 1 and ckpt.quiet, "a checkpoint")
    assert ckpt.rounds == 1
    busy, frames, copied = ckpt.last or (1, 0, 0)
    assert busy == 0 and copied == frames


def test_continuous_commits_keep_the_wal_bounded(path, stores):
    """PASSIVE alone never finds a quiet moment here; the RESTART backstop must."""
    frames_max = 64
    store = ChatStore(path, checkpoint_delay=FAST, wal_frames_max=frames_max)
    stores.append(store)
    ckpt = checkpointer(store)
    kept = wal_bytes_kept(frames_max, 4096)  # journal_size_limit: about 1 MiB
    assert store._db.execute("PRAGMA journal_size_limit").fetchone()[0] == kept
    largest = commits = 0
    deadline = time.monotonic() + 3 * DEADLINE
    # Each commit writes at least three 4 KiB pages (the table's leaf, the
    # index's, sqlite_sequence): 8,000 of them put >= 96 MiB through the WAL,
    # which would hold all of it without a restart.
    while commits < 8000 or ckpt.restarts < 3:
        assert time.monotonic() < deadline, f"{ckpt.restarts} restarts in {commits} commits"
        store.append_many([message(commits)])
        commits += 1
        if commits % 50 == 0:
            largest = max(largest, wal(path).stat().st_size)
    written = commits * 3 * 4096
    # Without the restarts the WAL would hold everything written; with them
    # it peaked at 12-14 MiB here (a tight loop, where the thread waits for
    # the GIL), under a seventh of it.
    assert largest < written // 3, (largest, kept, written)
    assert ckpt.restarts >= 3
    # Quiet again: the next round copies everything, the next commit starts
    # the WAL over and cuts the file back to journal_size_limit.
    store.append_many([message(commits)])
    wait_for(lambda: ckpt.quiet, "a quiet round")
    assert ckpt.last is not None and ckpt.last[1] == ckpt.last[2]  # all copied
    store.append_many([message(commits + 1)])
    assert wal(path).stat().st_size <= kept
    count = store._db.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert count == commits + 2


def test_close_joins_the_thread_and_removes_the_wal(path):
    store = ChatStore(path, checkpoint_delay=FAST)
    ckpt = checkpointer(store)
    store.append_many([message(1)])
    wait_for(lambda: ckpt.checkpoints >= 1, "a checkpoint")
    assert wal(path).exists()
    store.close()
    assert not ckpt.running
    assert ckpt._thread not in threading.enumerate()
    assert not wal(path).exists()
    store.close()  # twice: harmless
    ckpt.close()


def test_close_while_armed_does_not_wait_out_the_delay(path):
    store = ChatStore(path, checkpoint_delay=30.0)
    store.append_many([message(1)])
    assert checkpointer(store).armed
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started < 5.0
    assert not checkpointer(store).running
    assert not wal(path).exists()  # the last close checkpointed
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    finally:
        db.close()


def test_an_error_is_logged_once_and_the_thread_goes_on(path, stores, caplog):
    """The file vanishes from under its name (renamed away): the checkpointer
    cannot open it, says so once however often it tries, and recovers."""
    caplog.set_level(logging.INFO, logger="sockhub.checkpoint")
    store = ChatStore(path, checkpoint_delay=FAST)
    stores.append(store)
    ckpt = checkpointer(store)
    away = path.with_name("away.sqlite3")
    os.rename(path, away)
    try:
        for attempt in (1, 2, 3):
            store.append_many([message(attempt)])  # the store's own connection goes on
            wait_for(lambda n=attempt: ckpt.rounds >= n and ckpt.quiet, f"round {attempt}")
    finally:
        os.rename(away, path)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert str(path) in errors[0].getMessage()
    assert "unable to open database file" in errors[0].getMessage()
    assert ckpt.checkpoints == 0 and ckpt.running
    store.append_many([message(4)])
    wait_for(lambda: ckpt.checkpoints >= 1 and ckpt.quiet, "a checkpoint once the file is back")
    assert any("work again" in r.getMessage() for r in caplog.records)
    assert store.recent("#a", 10)[-1].text.startswith("message 4")


def test_a_reader_that_never_lets_go_is_logged_and_commits_wait_little(path, stores, caplog):
    """A read transaction held open (another process, say) pins the WAL: the
    RESTART gives up after its short busy timeout each round, the commits it
    made wait stay short, the stuck WAL is logged once, and it restarts once
    the reader lets go."""
    caplog.set_level(logging.INFO, logger="sockhub.checkpoint")
    store = ChatStore(path, checkpoint_delay=FAST, wal_frames_max=16)
    stores.append(store)
    ckpt = checkpointer(store)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM messages").fetchone()  # a snapshot, held
        longest = 0.0
        deadline = time.monotonic() + DEADLINE
        commits = 0
        while commits < 200 or ckpt._error is None:  # past 4 x 16 frames, 3 rounds stuck
            assert time.monotonic() < deadline
            started = time.monotonic()
            store.append_many([message(commits)])
            longest = max(longest, time.monotonic() - started)
            commits += 1
        assert ckpt.restarts_tried == 0  # never waits for this reader holding the write lock
        assert longest < 0.5
        wait_for(lambda: ckpt.quiet, "the last round")
        stuck = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(stuck) == 1 and "has not restarted" in stuck[0], stuck
    finally:
        reader.close()
    store.append_many([message(commits)])
    wait_for(lambda: ckpt.restarts >= 1 and ckpt.quiet, "a restart once the reader is gone")
    assert any("work again" in r.getMessage() for r in caplog.records)


def test_files_stay_private_with_a_loose_umask(path, stores):
    old = os.umask(0)
    try:
        store = ChatStore(path, checkpoint_delay=FAST, wal_frames_max=16)
        stores.append(store)
        ckpt = checkpointer(store)
        commits = 0
        deadline = time.monotonic() + DEADLINE
        while ckpt.restarts < 1 or commits < 100:  # through a restart, on both connections
            assert time.monotonic() < deadline
            store.append_many([message(commits)])
            commits += 1
        store.append_many([message(commits)])
        wait_for(lambda: ckpt.checkpoints >= 2 and ckpt.quiet, "checkpoints")
    finally:
        os.umask(old)
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["chat.sqlite3", "chat.sqlite3-shm", "chat.sqlite3-wal"]
    for name in names:
        assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name


def test_two_processes_worth_of_stores_share_one_file(path, stores):
    """``--workers``: one checkpointer per store on the same file; SQLite serialises them."""
    first = ChatStore(path, checkpoint_delay=FAST, wal_frames_max=32)
    second = ChatStore(path, checkpoint_delay=FAST, wal_frames_max=32)
    stores.extend([first, second])
    ids = []
    for i in range(600):
        ids += [m.id for m in (first if i % 2 else second).append_many([message(i)])]
    assert ids == list(range(1, 601))
    for store in (first, second):
        wait_for(lambda s=store: checkpointer(s).checkpoints >= 1 and checkpointer(s).quiet,
                 "a checkpoint by each")
        assert checkpointer(store)._error is None


async def test_a_server_checkpoints_while_running_and_leaves_no_wal(tmp_path):
    """The real server: messages reach chat.sqlite3 itself while it runs, and a
    stop joins the thread and leaves the file alone, no -wal or -shm beside it."""
    served = await start_sockhub("chat", "--port", "0", "--data-dir", str(tmp_path))
    try:
        alice = await chat_client(served.ports["chat"], "alice")
        for i in range(8):  # under the flood limit
            await alice.send(f"line {i}")
        await alice.expect("<alice> line 7")
        path = tmp_path / "chat.sqlite3"
        copy = tmp_path / "copy.sqlite3"

        def in_the_file_alone() -> bool:
            shutil.copyfile(path, copy)  # without the WAL: what the checkpoints copied
            db = sqlite3.connect(copy)
            try:
                return int(db.execute("SELECT count(*) FROM messages").fetchone()[0]) == 8
            except sqlite3.DatabaseError:  # a copy taken mid-checkpoint
                return False
            finally:
                db.close()

        deadline = asyncio.get_running_loop().time() + DEADLINE
        while not in_the_file_alone():
            assert asyncio.get_running_loop().time() < deadline, "never checkpointed"
            await asyncio.sleep(0.05)  # polling a condition, with a deadline
        copy.unlink()
    finally:
        assert await served.stop() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.sqlite3"]
    assert not any("could not checkpoint" in line for line in served.log)
