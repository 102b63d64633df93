"""Hash and write received file bytes in order, off the thread that receives them.

Both receivers of the files protocol do the same work per chunk:
:func:`write_all` and a digest's ``update`` (:func:`hash_and_write` does
both). The server's upload (``services/files_sink.py``) runs them on two
threads of its own, fed from the event loop. The client's
download uses :class:`HashWriter`: its main thread ``recv_into``\\ s one of a
few reused buffers while two more hash and write the ones already
filled, so receiving, hashing and writing overlap (``recv_into``,
``os.write`` and a large BLAKE3 or SHA-256 update all release the GIL).
Done one after the other on one thread, with a fresh ``bytes`` per read,
a download cost its client 4.6-4.9 CPU-s per GiB and ran at half the
speed of a netcat pipe (BENCHMARKS.md, issue 11).

**Lent buffers.** A buffer the receiver fills goes to the threads and comes
back (:meth:`HashWriter.take`) only after every byte in it is hashed and
written; with every buffer lent, :meth:`HashWriter.take` blocks, so a disk
slower than the network slows the receiving and never grows memory.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sockhub.protocols.files.digests import Hasher

#: One buffer, and how many a writer lends at most (the most it holds in memory).
BUFFER_SIZE = 1024 * 1024
BUFFERS = 4
#: The most one ``write(2)`` is given. On the benchmark machine (Linux 6.18,
#: ext4, a VM), writing 1 GiB into the page cache 1 MiB per call cost 0.58-1.73
#: CPU-s in 6 of 15 runs (the kernel's copy into fresh page-cache folios,
#: ``copy_folio_from_iter_atomic``, up to 7x slower: perf) and 0.23-0.33 in the
#: rest; 256 KiB per call cost 0.25-0.30 in all 18 runs. Both ends of a
#: transfer wrote 1 MiB per call before, and that slow path set their pace.
WRITE_CHUNK = 256 * 1024


def write_all(fd: int, data: bytes | bytearray | memoryview) -> str | None:
    """Write all of ``data`` to ``fd``, at most :data:`WRITE_CHUNK` per call; why it failed."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view[:WRITE_CHUNK]):]
    except OSError as exc:
        return f"cannot write: {exc.strerror}"
    return None


def hash_and_write(fd: int, digest: Hasher, data: bytes | bytearray | memoryview) -> str | None:
    """Hash ``data``, then write all of it to ``fd``; the reason if the write failed."""
    digest.update(data)
    return write_all(fd, data)


class HashWriter:
    """A blocking receiver's other half: hashes and writes what it is handed, on two threads.

    Use :meth:`take` for a buffer, fill part of it, hand it over with
    :meth:`put`; :meth:`finish` waits for the rest and gives the hex
    digest. One thread hashes each buffer and passes it on to a second,
    which writes it and hands it back: hashing one buffer overlaps writing
    the one before (measured: a 1 GiB download's median 5.0 s with hash
    and write on one thread, 3.8 s on two, on the shared 2-core machine).
    After a write error nothing more is written (:attr:`error` says why;
    :meth:`finish` raises it). The caller owns ``fd``: it may close it once
    :meth:`finish` or :meth:`close` has returned.
    """

    def __init__(self, fd: int, digest: Hasher, *, buffer_size: int = BUFFER_SIZE,
                 buffers: int = BUFFERS) -> None:
        self.fd = fd
        self._digest = digest
        self.buffer_size = buffer_size
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._to_hash: queue.SimpleQueue[tuple[bytes | bytearray, int] | None] = (
            queue.SimpleQueue())
        self._to_write: queue.SimpleQueue[tuple[bytes | bytearray, int] | None] = (
            queue.SimpleQueue())
        self._unmade = buffers
        self._closed = False
        #: Why a write failed (then nothing more is written), else None.
        self.error: str | None = None
        self._threads = [threading.Thread(target=self._hash, name="sockhub-hash", daemon=True),
                         threading.Thread(target=self._write, name="sockhub-write", daemon=True)]
        for thread in self._threads:
            thread.start()

    def take(self) -> bytearray:
        """A free buffer; blocks while every buffer is lent (the disk is behind)."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            if self._unmade:
                self._unmade -= 1
                return bytearray(self.buffer_size)
        return self._free.get()

    def put(self, buffer: bytes | bytearray, count: int) -> None:
        """Hash and write ``buffer[:count]``; a buffer from :meth:`take` comes back afterwards.

        ``bytes`` (data that arrived another way) are written and dropped.
        """
        if self._closed:
            raise ValueError("the writer is closed")
        self._to_hash.put((buffer, count))

    def finish(self) -> str:
        """Wait until everything handed over is written; its hex digest.

        Raises:
            OSError: a write failed (:attr:`error`).
        """
        self.close()
        if self.error is not None:
            raise OSError(self.error)
        return self._digest.hexdigest()

    def close(self) -> None:
        """Write what was handed over (a cut download resumes from all of it), then stop."""
        if not self._closed:
            self._closed = True
            self._to_hash.put(None)
        for thread in self._threads:
            thread.join()

    def _hash(self) -> None:
        # Every item goes on to the writer, whatever happens here: it hands the
        # buffer back and ends with the None, so take() and close() never wait
        # on a thread that died.
        try:
            while (item := self._to_hash.get()) is not None:
                if self.error is None:
                    try:
                        self._digest.update(memoryview(item[0])[:item[1]])
                    except Exception as exc:
                        self.error = f"cannot hash: {exc}"
                self._to_write.put(item)
        finally:
            self._to_write.put(None)

    def _write(self) -> None:
        while (item := self._to_write.get()) is not None:
            buffer, count = item
            if self.error is None:
                try:
                    self.error = write_all(self.fd, memoryview(buffer)[:count])
                except Exception as exc:  # the buffer still goes back: take() never hangs
                    self.error = f"cannot write: {exc}"
            if isinstance(buffer, bytearray):
                self._free.put(buffer)  # hashed and written: free to fill again
