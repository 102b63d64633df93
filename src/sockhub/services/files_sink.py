"""Where an upload's bytes go: hashed and written in order, off the event loop.

A 256 KiB read costs the loop almost nothing to receive, but hashing it and
writing it to the page cache cost several times that; done on the loop they
run one after the other with the next read (the upload measured 0.56x a
netcat pipe). :class:`UploadSink` hands each read to one worker thread per
upload, which hashes it and writes it (``hashlib`` and ``os.write`` release
the GIL on buffers this size), so receiving, hashing and writing overlap on
separate cores. At most ``limit`` bytes wait for the thread: past that the
sink asks the door to stop reading from the client (``Protocol.set_reading``,
the engine's back-pressure), and to read again once the thread has caught
up by half. A disk slower than the network then slows the client, and never
grows our memory.

Small uploads (at most ``INLINE_MAX`` bytes, most files of a tree) are hashed
and written on the loop: starting a thread would cost more than the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import hashlib

#: Uploads of at most this many bytes are written on the event loop.
INLINE_MAX = 1024 * 1024
#: Bytes that may wait for the worker thread before reading stops.
QUEUE_LIMIT = 16 * 1024 * 1024


class UploadSink:
    """Hash and write one upload's bytes to ``fd`` in arrival order.

    The sink owns ``fd`` from here on: :meth:`close` closes it once the
    thread is done with it. Errors are reported once, through ``on_error``,
    with the message a client should see.
    """

    def __init__(self, fd: int, digest: hashlib._Hash, expected: int, *,
                 on_error: Callable[[str], None], set_reading: Callable[[bool], None],
                 limit: int = QUEUE_LIMIT) -> None:
        self.fd = fd
        self._digest = digest
        self._on_error = on_error
        self._set_reading = set_reading
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self._pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="sockhub-upload")
                      if expected > INLINE_MAX else None)
        #: Bytes handed to the thread and not yet written.
        self.pending = 0
        self._held = False
        self._failed = False
        self._closed = False
        #: Set on the loop, read by the thread: skip what is still queued.
        self._cancelled = False

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
        self._pool.submit(self._consume_threaded, data)
        if not self._held and self.pending > self._limit:
            self._held = True
            self._set_reading(False)

    def finish(self) -> asyncio.Future[str]:
        """The hex SHA-256 of everything written, once it is all on disk."""
        if self._pool is None:
            future: asyncio.Future[str] = self._loop.create_future()
            future.set_result(self._digest.hexdigest())
            return future
        return asyncio.wrap_future(self._pool.submit(self._digest.hexdigest), loop=self._loop)

    @property
    def failed(self) -> bool:
        return self._failed

    def close(self, *, discard: bool) -> asyncio.Future[None]:
        """Close the file once the thread lets go of it; resolves when it is closed.

        ``discard`` drops what is still queued (a failed or refused upload);
        otherwise the queue is written first, so a client that vanished
        mid-upload can resume from every byte that reached us.
        """
        self._closed = True
        self._cancelled = discard
        if self._held:
            self._held = False
            self._set_reading(True)
        pool, self._pool = self._pool, None
        if pool is None or self.pending == 0:  # the thread, if any, is idle
            if pool is not None:
                pool.shutdown(wait=False)
            os.close(self.fd)
            done: asyncio.Future[None] = self._loop.create_future()
            done.set_result(None)
            return done
        closed = asyncio.wrap_future(pool.submit(os.close, self.fd), loop=self._loop)
        pool.shutdown(wait=False)
        return closed

    # Internals ------------------------------------------------------------------------

    def _consume(self, data: bytes | memoryview) -> str | None:
        """Hash and write ``data`` (on the worker thread, or inline for small uploads)."""
        if self._cancelled:
            return None
        self._digest.update(data)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            return f"cannot write: {exc.strerror}"
        return None

    def _consume_threaded(self, data: bytes | memoryview) -> None:
        error = self._consume(data)
        with contextlib.suppress(RuntimeError):  # the loop closed under us (shutdown)
            self._loop.call_soon_threadsafe(self._written, len(data), error)

    def _written(self, count: int, error: str | None) -> None:
        self.pending -= count
        if self._closed:
            return
        if error is not None and not self._failed:
            self._fail(error)
            return
        if self._held and self.pending <= self._limit // 2:
            self._held = False
            self._set_reading(True)

    def _fail(self, error: str) -> None:
        self._failed = True
        self._on_error(error)
