"""Where an upload's bytes go: hashed in order as they arrive, written off the event loop.

A 256 KiB read costs the loop almost nothing to receive, but writing it to
the page cache costs several times that (~1 CPU-s per GiB); done on the
loop it would run one after the other with the next read (the upload
measured 0.56x a netcat pipe). :class:`UploadSink` hands each read to two
worker threads per upload, one that writes it (``os.write`` releases the
GIL) and one that hashes it, so receiving, writing and hashing overlap.

**Where the hash runs.** On its own thread, beside the writing one: both
read the same (lent) buffer, which comes back once both are done with it,
and :meth:`UploadSink.finish` waits for both. Hashing then writing on one
thread kept that thread busy throughout a send while the loop waited on it
(py-spy); hashing on the loop instead was measured no better (median
server CPU-s per GiB 2.76 against 2.84, then 3.80 against 2.64). Two
threads: a 1 GiB send at a paired median of 1.58x the ncat pipe against
1.09x for one thread, in the same run (``benchmarks/files.py --other-src``;
BENCHMARKS.md, issue 11).

At most ``limit`` bytes wait for the threads: past that the
sink asks the door to stop reading from the client (``Protocol.set_reading``,
the engine's back-pressure), and to read again once the threads have caught
up by half. A disk slower than the network then slows the client, and never
grows our memory.

Small uploads (at most ``INLINE_MAX`` bytes, most files of a tree) are hashed
and written on the loop: starting a thread would cost more than the work.

**Lent buffers.** The engine can read straight into memory the sink lends
(:meth:`UploadSink.get_buffer`, :meth:`UploadSink.filled`: asyncio's
``BufferedProtocol`` underneath), which saves the loop a fresh 256 KiB
``bytes`` per read (~1 CPU-second per GiB). A thread upload has a pool of at
most ``POOL_BUFFERS`` buffers of ``BUFFER_SIZE``; reads fill the current
one from where the last read stopped. The threads get a buffer once it
is full (or the upload ends or is cut) as one job: one hashes every byte
in it, the other writes them, and it comes back once both are done, never
sooner (one wake-up of each thread and two of the loop per buffer, not per
read). With every buffer lent,
reading stops until one comes back. The per-chunk work
(:mod:`sockhub.hashwrite`: ``write_all``, ``hash_and_write``) is shared with
the files client's downloads, whose :class:`~sockhub.hashwrite.HashWriter`
splits it over two threads the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sockhub.hashwrite import hash_and_write, write_all

if TYPE_CHECKING:
    from sockhub.protocols.files.digests import Hasher

#: Uploads of at most this many bytes are written on the event loop.
INLINE_MAX = 1024 * 1024
#: Bytes that may wait for the worker thread before reading stops.
QUEUE_LIMIT = 16 * 1024 * 1024
#: One lent buffer, and how many an upload may have (the most it holds in memory).
BUFFER_SIZE = 1024 * 1024
POOL_BUFFERS = 8
#: A buffer with less room than this left is full: the next read takes a fresh one.
MIN_READ = 64 * 1024


class UploadSink:
    """Hash and write one upload's bytes to ``fd`` in arrival order.

    The sink owns ``fd`` from here on: :meth:`close` closes it once the
    thread is done with it. Errors are reported once, through ``on_error``,
    with the message a client should see.
    """

    def __init__(self, fd: int, digest: Hasher, expected: int, *,
                 on_error: Callable[[str], None], set_reading: Callable[[bool], None],
                 limit: int = QUEUE_LIMIT, buffer_size: int = BUFFER_SIZE,
                 buffers: int = POOL_BUFFERS) -> None:
        self.fd = fd
        self._digest = digest
        self._on_error = on_error
        self._set_reading = set_reading
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self._pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="sockhub-upload")
                      if expected > INLINE_MAX else None)
        #: The hash's own thread, beside the writing one (a threaded upload).
        self._hash_pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="sockhub-hash")
                           if self._pool is not None else None)
        #: Bytes handed to the thread and not yet written.
        self.pending = 0
        self._held = False
        self._failed = False
        self._closed = False
        #: After close(): resolved once both threads have handed back every job (pending 0).
        self._released_all: asyncio.Future[None] | None = None
        #: Set on the loop, read by the thread: skip what is still queued.
        self._cancelled = False
        #: The first failed write's reason (the write thread's; nothing is written after it).
        self._write_error: str | None = None
        # Lent buffers (get_buffer/filled): the one being filled and how far,
        # the ones back from the thread, and how many exist.
        # A small upload needs no more than its size (its one buffer is reused).
        self._buffer_size = buffer_size if self._pool is not None else max(1, min(buffer_size,
                                                                                   expected))
        self._max_buffers = buffers
        self._current: bytearray | None = None
        self._fill = 0
        self._free: list[bytearray] = []
        self._allocated = 0
        self._starved = False

    @property
    def threaded(self) -> bool:
        return self._pool is not None

    def write(self, data: bytes | memoryview) -> None:
        """Queue ``data`` (the caller must not change it afterwards)."""
        if self._failed or self._closed:
            return
        if self._pool is None:
            error = self._consume(data)
            if error is not None:
                self._fail(error)
            return
        self.pending += len(data)
        self._queue(data, None, len(data))
        self._update_hold()

    def get_buffer(self, limit: int) -> memoryview:
        """Lend a writable buffer of 1 to ``limit`` bytes for the next read; see :meth:`filled`.

        Lending it again without a :meth:`filled` between (a read that got
        nothing) is fine: nothing was queued from it.
        """
        size = self._buffer_size
        if self._current is None or size - self._fill < min(MIN_READ, limit):
            self._seal()
            self._current = self._take()
        end = min(self._fill + limit, size)
        return memoryview(self._current)[self._fill:end]

    def filled(self, nbytes: int) -> None:
        """The first ``nbytes`` of the last :meth:`get_buffer` hold the next bytes: queue them."""
        current = self._current
        assert current is not None
        if self._failed or self._closed:
            return  # dropped: the buffer's next read may overwrite them
        start, self._fill = self._fill, self._fill + nbytes
        if self._pool is None:
            error = self._consume(memoryview(current)[start:self._fill])
            self._fill = 0  # written already: the inline buffer is free again
            if error is not None:
                self._fail(error)
            return
        self.pending += nbytes  # the thread gets them with the rest of the buffer (_seal)
        if self._buffer_size - self._fill < MIN_READ:
            self._seal()
            if not self._free and self._allocated >= self._max_buffers:
                self._starved = True
                self._update_hold()

    def finish(self) -> asyncio.Future[str]:
        """The hex digest of everything written, once it is all on disk."""
        if self._pool is None:
            future: asyncio.Future[str] = self._loop.create_future()
            future.set_result(self._digest.hexdigest())
            return future
        # Its release reaches the loop before the digest does: pending is 0
        # then, so close() closes the file at once and the name is free
        # again before the client hears DONE.
        self._seal()
        assert self._hash_pool is not None
        digest = asyncio.wrap_future(self._hash_pool.submit(self._digest.hexdigest),
                                     loop=self._loop)
        written = asyncio.wrap_future(self._pool.submit(_nothing), loop=self._loop)
        return asyncio.ensure_future(_after(written, digest))

    @property
    def failed(self) -> bool:
        return self._failed

    def close(self, *, discard: bool) -> asyncio.Future[None]:
        """Close the file once the thread lets go of it; resolves when it is closed
        and both threads have handed back every job (``pending`` is 0 by then).

        ``discard`` drops what is still queued (a failed or refused upload);
        otherwise the queue is written first, so a client that vanished
        mid-upload can resume from every byte that reached us. The hashing
        thread may report after the writing one has closed the file: its
        report is waited for too, so nothing is still counted as lent.
        """
        if not discard and self._pool is not None:
            self._seal()  # the bytes read into the current buffer are written too
        self._closed = True
        self._cancelled = discard
        if self._held:
            self._held = False
            self._set_reading(True)
        pool, self._pool = self._pool, None
        hash_pool, self._hash_pool = self._hash_pool, None
        if hash_pool is not None:
            hash_pool.shutdown(wait=False)  # what it still holds is skipped (discard) or hashed
        done: asyncio.Future[None] = self._loop.create_future()
        if pool is None or self.pending == 0:  # the thread, if any, is idle
            if pool is not None:
                pool.shutdown(wait=False)
            os.close(self.fd)
            done.set_result(None)
            return done
        closed = asyncio.wrap_future(pool.submit(os.close, self.fd), loop=self._loop)
        pool.shutdown(wait=False)
        released = self._released_all = self._loop.create_future()

        def settle(_: object) -> None:
            if done.done() or not (closed.done() and released.done()):
                return
            error = closed.exception()
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(None)

        closed.add_done_callback(settle)
        released.add_done_callback(settle)
        return done

    # Internals ------------------------------------------------------------------------

    def _take(self) -> bytearray:
        if self._free:
            return self._free.pop()
        # A new one: the pool is not full yet, or a read came while starved.
        self._allocated += 1
        return bytearray(self._buffer_size)

    def _seal(self) -> None:
        """The current buffer is done: it comes back once the thread has written it all."""
        current, self._current = self._current, None
        filled, self._fill = self._fill, 0
        if current is None:
            return
        if self._pool is None or filled == 0:
            self._free.append(current)
        else:
            # The whole buffer at once: one wake-up of the threads per buffer, not per read.
            self._queue(memoryview(current)[:filled], current, filled)

    def _queue(self, data: bytes | memoryview, buffer: bytearray | None, count: int) -> None:
        """Hash ``data`` on one thread while the other writes it; ``buffer`` comes back after."""
        assert self._pool is not None and self._hash_pool is not None
        job = _Job(buffer, count)
        self._hash_pool.submit(self._hash_stage, job, data)
        self._pool.submit(self._write_stage, job, data)

    # Each stage reports back whatever happens (an exception is an error, not a
    # dead job): a buffer left lent would hold reading until the idle timeout.

    def _hash_stage(self, job: _Job, data: bytes | memoryview) -> None:
        error = None
        if not self._cancelled:
            try:
                self._digest.update(data)
            except Exception as exc:
                error = f"cannot hash: {exc}"
        with contextlib.suppress(RuntimeError):  # the loop closed under us (shutdown)
            self._loop.call_soon_threadsafe(self._stage_done, job, error)

    def _write_stage(self, job: _Job, data: bytes | memoryview) -> None:
        # After a failed write nothing more is written: the part file must not
        # hold bytes past a hole (the resume's prefix check would refuse it).
        error = None
        if not self._cancelled and self._write_error is None:
            try:
                error = write_all(self.fd, data)
            except Exception as exc:
                error = f"cannot write: {exc}"
            self._write_error = error
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._stage_done, job, error)

    def _stage_done(self, job: _Job, error: str | None) -> None:
        """One thread is done with ``job``; the second one to finish releases it."""
        job.error = job.error or error
        job.left -= 1
        if not job.left:
            self._released(job.buffer, job.count, job.error)

    def _released(self, buffer: bytearray | None, count: int, error: str | None = None) -> None:
        self.pending -= count
        if self._closed:
            released = self._released_all
            if not self.pending and released is not None and not released.done():
                released.set_result(None)
            return
        if error is not None and not self._failed:
            self._fail(error)
            return
        if buffer is None:
            pass  # bytes of a plain read: nothing to give back
        elif self._allocated > self._max_buffers:
            self._allocated -= 1  # an extra one: let it go
        else:
            self._free.append(buffer)
        self._starved = False
        self._update_hold()

    def _update_hold(self) -> None:
        """Hold reading while every buffer is lent, or past ``limit`` queued bytes."""
        over = self._starved or self.pending > self._limit
        if over and not self._held:
            self._held = True
            self._set_reading(False)
        elif self._held and not self._starved and self.pending <= self._limit // 2:
            self._held = False
            self._set_reading(True)

    def _consume(self, data: bytes | memoryview) -> str | None:
        """Hash and write ``data`` (on the thread, or inline)."""
        if self._cancelled:
            return None
        return hash_and_write(self.fd, self._digest, data)

    def _fail(self, error: str) -> None:
        self._failed = True
        self._on_error(error)


class _Job:
    """A chunk on its way through both threads: released when ``left`` reaches 0."""

    __slots__ = ("buffer", "count", "error", "left")

    def __init__(self, buffer: bytearray | None, count: int) -> None:
        self.buffer = buffer
        self.count = count
        self.error: str | None = None
        self.left = 2


def _nothing() -> None:
    """A barrier: done once the writing thread has written everything queued before it."""


async def _after(written: asyncio.Future[None], digest: asyncio.Future[str]) -> str:
    await written
    return await digest
