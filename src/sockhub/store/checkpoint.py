"""WAL checkpoints off the event loop: a daemon thread with its own SQLite connection.

The chat store commits on the loop's thread, and SQLite's automatic
checkpoint (once the WAL holds 1000 pages) runs inside whichever commit
crosses that line: it copies the WAL's pages into the database file and
syncs both before the commit returns, a stall of several milliseconds for
every client. SQLite's documentation offers the way out (wal.html,
"Checkpointing"): turn the automatic checkpoints off and "run checkpoints
during idle moments or in a separate thread or process". So the store sets
``PRAGMA wal_autocheckpoint=0`` and this thread checkpoints instead, on a
connection of its own; Python's sqlite3 lets go of the GIL while SQLite
works, so the loop no longer does the copy or the ``fsync`` (a commit can
still meet one: see the RESTART below).

**When.** Nothing runs while nothing is written: the thread blocks on an
event with no timeout. A commit arms it (``armed``, a plain bool the store
tests first, so a commit pays one attribute test while a checkpoint is
pending); once woken the thread waits :data:`CHECKPOINT_DELAY` so that the
commits of that time share one checkpoint, then disarms and checkpoints. It
disarms before checkpointing, so a commit that lands meanwhile arms the
next round: no write is left behind.

**PASSIVE, and the RESTART backstop.** ``wal_checkpoint(PASSIVE)`` copies
what it can "without waiting for any database readers or writers"
(pragma.html#pragma_wal_checkpoint): commits go on beside it. But a
checkpoint does not shrink the WAL; it lets the next writer "start
overwriting the WAL file from the beginning" (wal.html, "Avoiding
Excessively Large WAL Files"), and only if every frame was copied by the
time that writer starts. Under continuous writes a commit nearly always
lands during the copy, so PASSIVE alone may never let the WAL restart, and
it grows without bound (an earlier attempt reached its 64 MB safety limit).
So when the PASSIVE result row ``(busy, log, checkpointed)`` says the log
is over :data:`WAL_FRAMES_MAX` frames, the thread follows it with
``wal_checkpoint(RESTART)``, which "blocks (calls the busy-handler
callback)" until it has copied every frame and no reader is using the WAL,
"ensur[ing] that the next writer will restart the log file from the
beginning". It holds the write lock while it copies what is left and
syncs, so it comes after more PASSIVE passes, each copying what arrived
during the one before, until one finds at most :data:`CATCH_UP_FRAMES` new
frames: the RESTART then copies about that many. The loop's next commit may
still wait for it, about once per :data:`WAL_FRAMES_MAX` frames written:
for as long as the RESTART holds the write lock (at most
:data:`RESTART_WAIT` waiting for readers, then the copy of the last few
frames and two ``fsync``), rounded up to the next step of the loop
connection's busy handler (SQLite sleeps 1, 2, 5, 10, 15, ... ms between
tries: a lock held 5 ms costs a commit 8). The RESTART is skipped while a
reader holds an older snapshot (the PASSIVE left frames uncopied), which it
would wait for with the write lock held; a reader of the newest one it
waits for at most :data:`RESTART_WAIT`, then gives up until the next round. A WAL
past four times the bound that cannot restart in three rounds in a row is
logged. The WAL file on
disk is truncated back to ``journal_size_limit`` by the first commit after
it restarts (wal.html: a checkpoint "does not normally truncate the WAL
file (unless the journal_size_limit pragma is set)"); every connection to
the file sets it, to four times the bound
(:func:`leave_checkpoints_to_the_thread`).

**Failures.** An error (a full disk, a file that cannot be opened) is
logged once per distinct message, not per attempt, and the thread carries
on: the connection is opened again at the next round, and recovery is
logged too. Several processes on one file (``--workers``) each run one;
SQLite serialises checkpoints (a busy one reports ``busy`` and is retried
at the next round).

The connection opens the existing file read-write (``mode=rw``), never
creating one; by then the store has made the file and its ``-wal`` and
``-shm`` 0600, and SQLite reuses them.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("sockhub.checkpoint")

#: Seconds a woken checkpointer waits, so the commits of that time share one checkpoint.
CHECKPOINT_DELAY = 0.1
#: WAL frames (pages) past which a checkpoint restarts the log: 16 MiB at 4 KiB pages.
WAL_FRAMES_MAX = 4096
#: Seconds a RESTART waits for the write lock and then, holding it, for readers
#: (the thread's busy timeout). A commit that meets a RESTART waits this, the
#: copy and two fsyncs, at most (see the module's docstring).
RESTART_WAIT = 0.01
#: Seconds :meth:`Checkpointer.close` waits for the thread.
CLOSE_WAIT = 5.0
#: Before a RESTART, PASSIVE passes (at most this many) until one finds at most
#: CATCH_UP_FRAMES new frames: what the RESTART then copies under the write lock.
CATCH_UP_PASSES = 8
CATCH_UP_FRAMES = 16
#: Rounds in a row a WAL past four times the bound must fail to restart before
#: it is logged (a single busy RESTART is another checkpoint, not a stuck reader).
STUCK_ROUNDS = 3


def wal_bytes_kept(frames_max: int, page_size: int) -> int:
    """``journal_size_limit``: four times the RESTART bound (64 MiB at the defaults).

    Above what the WAL reaches in normal running (the bound and what comes
    during a round: 17 MiB at 500 one-message commits a second), so a
    restarted WAL is overwritten in place, which SQLite does "because it is
    normally faster to overwrite an existing file than to append": cutting
    tens of MiB off the file cost the truncating commit 3-10 ms here. A WAL
    grown past it (a failing disk, a reader that never lets go, or commits
    back to back in a tight loop, where it peaked at 40-90 MiB) is cut back
    to it. A WAL file is a 32-byte header and frames of a 24-byte header
    and a page.
    """
    return 32 + 4 * frames_max * (24 + page_size)


def leave_checkpoints_to_the_thread(db: sqlite3.Connection,
                                    frames_max: int = WAL_FRAMES_MAX) -> None:
    """Turn SQLite's automatic checkpoint off on ``db``, and have a WAL it
    restarts cut back to :func:`wal_bytes_kept`: every connection to the file."""
    db.execute("PRAGMA wal_autocheckpoint=0")
    page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    db.execute(f"PRAGMA journal_size_limit={wal_bytes_kept(frames_max, page_size)}")


def _identity(path: Path) -> tuple[int, int]:
    """Which file ``path`` names: its device and inode."""
    info = path.stat()
    return info.st_dev, info.st_ino


class Checkpointer:
    """Checkpoints one SQLite file's WAL in a daemon thread, when armed.

    ``rounds`` counts finished wake-ups, ``checkpoints`` the checkpoint
    statements run, ``restarts_tried`` the RESTARTs begun and ``restarts``
    those that completed, and ``last`` holds the last result row: for tests
    and measurements.
    """

    def __init__(self, path: str | Path, *, delay: float = CHECKPOINT_DELAY,
                 frames_max: int = WAL_FRAMES_MAX) -> None:
        # Absolute now: the thread opens the file by name (again after an
        # error), and must find the store's file, not one that has taken its place.
        self.path = Path(path).absolute()
        self._identity = _identity(self.path)
        self.delay = delay
        self.frames_max = frames_max
        #: True from a commit's :meth:`arm` until the thread starts on it.
        self.armed = False
        self.rounds = 0
        self.checkpoints = 0
        self.restarts_tried = self.restarts = 0
        self.last: tuple[int, int, int] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._db: sqlite3.Connection | None = None
        self._error: str | None = None
        self._in_round = False
        self._stuck = 0
        self._thread = threading.Thread(target=self._run, name="sockhub-checkpoint", daemon=True)
        self._thread.start()

    def arm(self) -> None:
        """Ask for a checkpoint soon. Callers test ``armed`` first (the commit path)."""
        self.armed = True
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def quiet(self) -> bool:
        """No checkpoint asked for or under way: every commit before now is checkpointed.

        For a caller that is the only writer (tests, measurements)."""
        return not self.armed and not self._in_round

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Stop the thread and wait for it (a checkpoint under way finishes first). Idempotent."""
        self._stop.set()
        self._wake.set()
        if self._thread is threading.current_thread():
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the checkpointer of %s did not stop within %.1f s", self.path, timeout)

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                if self._stop.wait(self.delay):
                    return
                # Clear, then disarm: a commit after this sets both again, and
                # one before it is in the checkpoint below.
                self._in_round = True
                self._wake.clear()
                self.armed = False
                if self._stop.is_set():  # close() came between the wait and the clear
                    return
                try:
                    self._checkpoint()
                finally:
                    self.rounds += 1
                    self._in_round = False
        finally:
            self._drop()

    def _drop(self) -> None:
        """Close the thread's connection (it is opened again when needed)."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: the store made the file (0600); this connection never creates one.
        db = sqlite3.connect(f"{self.path.as_uri()}?mode=rw", uri=True,
                             timeout=RESTART_WAIT, isolation_level=None)
        try:
            # Another file at the store's name (moved, restored over it): its WAL
            # is not ours to touch (sqlite.org/howtocorrupt.html, 2.4 and 2.6).
            if _identity(self.path) != self._identity:
                raise sqlite3.DatabaseError("it is no longer the file the store opened")
            leave_checkpoints_to_the_thread(db, self.frames_max)
        except BaseException:
            db.close()
            raise
        return db

    def _run_pragma(self, mode: str) -> tuple[int, int, int]:
        """``(busy, log, checkpointed)``: log is the WAL's frames when the checkpoint began."""
        assert self._db is not None
        row = self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        self.checkpoints += 1
        return int(row[0]), int(row[1]), int(row[2])

    def _checkpoint(self) -> None:
        """One PASSIVE checkpoint, and a RESTART if the WAL is past ``frames_max``; never raises."""
        try:
            if self._db is None:
                self._db = self._connect()
            busy, frames, copied = self._run_pragma("PASSIVE")
            if frames < 0:  # another connection's checkpoint is under way (--workers)
                return
            if frames > self.frames_max:
                # RESTART holds the write lock while it copies what is left: catch
                # up first without it, each pass copying what came during the last.
                for _ in range(CATCH_UP_PASSES):
                    before = frames
                    busy, frames, copied = self._run_pragma("PASSIVE")
                    if frames - before <= CATCH_UP_FRAMES:  # negative: the log restarted
                        break
                if frames < 0:  # another connection's checkpoint began meanwhile
                    return
            # Frames left uncopied: a reader holds an older snapshot, which the
            # RESTART would wait for holding the write lock. Not this round, then.
            if frames > self.frames_max and copied == frames:
                self.restarts_tried += 1
                busy, frames, copied = self._run_pragma("RESTART")
                if not busy:
                    self.restarts += 1
            self.last = (busy, frames, copied)
        except Exception as exc:  # a full disk, an unreadable file, a bug: the server goes on
            self._drop()  # opened again next round
            self._failed(f"{type(exc).__name__}: {exc}")
            return
        if frames > 4 * self.frames_max and (busy or copied < frames):
            # A reader that never lets go, unless it passes: another process's
            # checkpoint can hold a RESTART off once (and restarts the WAL itself).
            self._stuck += 1
            if self._stuck >= STUCK_ROUNDS:
                self._failed(f"the WAL is past {4 * self.frames_max} frames and has not "
                             f"restarted in {STUCK_ROUNDS} rounds: another connection keeps "
                             "a read open")
            return
        self._stuck = 0
        if self._error is not None:
            log.info("checkpoints of %s work again", self.path)
            self._error = None

    def _failed(self, message: str) -> None:
        """Log a failure once, not at every attempt, until the next success."""
        if message != self._error:
            log.error("could not checkpoint %s (%s); retrying at the next commit",
                      self.path, message)
            self._error = message
