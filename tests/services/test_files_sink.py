"""UploadSink: an upload hashed and written on a worker thread, with back-pressure.

Real pipes, files and threads: a pipe nobody reads stands in for a disk that
cannot keep up, and /dev/full for a disk that is full.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading

import pytest

from helpers import BrokenDigest, read_all
from sockhub.services.files_sink import INLINE_MAX, UploadSink

STEP = 10.0
CHUNK = 64 * 1024


class Reading:
    """Records the sink's set_reading calls; ``changed`` fires on each."""

    def __init__(self) -> None:
        self.calls: list[bool] = []
        self.changed = asyncio.Event()

    def __call__(self, reading: bool) -> None:
        self.calls.append(reading)
        self.changed.set()

    async def next(self) -> bool:
        await asyncio.wait_for(self.changed.wait(), STEP)
        self.changed.clear()
        return self.calls[-1]


class Failures:
    """The sink's on_error: the reasons, and an event on the first."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.failed = asyncio.Event()

    def __call__(self, message: str) -> None:
        self.errors.append(message)
        self.failed.set()

    async def first(self) -> None:
        await asyncio.wait_for(self.failed.wait(), STEP)


def make_sink(fd: int, expected: int, reading: Reading, errors: list[str], **kwargs):
    return UploadSink(fd, hashlib.sha256(), expected, on_error=errors.append,
                      set_reading=reading, **kwargs)


async def test_a_large_upload_is_written_and_hashed_in_order_on_a_thread(tmp_path):
    path = tmp_path / "part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    data = os.urandom(3 * INLINE_MAX)
    reading, errors = Reading(), []
    sink = make_sink(fd, len(data), reading, errors)
    assert sink.threaded
    for start in range(0, len(data), CHUNK):
        sink.write(data[start:start + CHUNK])
    assert await asyncio.wait_for(sink.finish(), STEP) == hashlib.sha256(data).hexdigest()
    await asyncio.wait_for(sink.close(discard=False), STEP)
    assert path.read_bytes() == data
    assert errors == [] and reading.calls == []


async def test_a_small_upload_is_written_inline(tmp_path):
    fd = os.open(tmp_path / "part", os.O_WRONLY | os.O_CREAT, 0o600)
    reading, errors = Reading(), []
    sink = make_sink(fd, 5, reading, errors)
    assert not sink.threaded
    sink.write(b"hello")
    assert (tmp_path / "part").read_bytes() == b"hello"  # before any loop iteration
    assert sink.finish().result() == hashlib.sha256(b"hello").hexdigest()
    assert sink.close(discard=False).done()


async def test_a_disk_that_falls_behind_stops_reading_until_it_catches_up():
    read_end, write_end = os.pipe()  # a pipe nobody reads yet: a stalled disk
    reading, errors = Reading(), []
    limit = 4 * CHUNK
    sink = make_sink(write_end, 64 * INLINE_MAX, reading, errors, limit=limit)
    chunk = os.urandom(CHUNK)
    sent = 0
    while not reading.calls:  # the pipe takes ~64 KiB, then the thread blocks
        sink.write(chunk)
        sent += CHUNK
        assert sent < 64 * CHUNK, "reading was never held"
    assert reading.calls == [False] and sink.pending > limit
    reading.changed.clear()
    loop = asyncio.get_running_loop()
    drained = loop.run_in_executor(None, drain, read_end, sent)
    assert await reading.next() is True  # caught up by half: read again
    assert sink.pending <= limit // 2
    received = await asyncio.wait_for(drained, STEP)
    assert received == sent
    await asyncio.wait_for(sink.close(discard=False), STEP)
    os.close(read_end)
    assert errors == []


def drain(fd: int, count: int) -> int:
    got = 0
    while got < count:
        block = os.read(fd, 1 << 20)
        if not block:
            break
        got += len(block)
    return got


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
async def test_a_write_error_is_reported_once_with_its_reason():
    fd = os.open("/dev/full", os.O_WRONLY)
    failures = Failures()
    sink = UploadSink(fd, hashlib.sha256(), 8 * INLINE_MAX, on_error=failures,
                      set_reading=Reading())
    for _ in range(4):
        sink.write(os.urandom(CHUNK))
    await failures.first()
    assert sink.failed
    sink.write(b"more")  # ignored once failed
    await asyncio.wait_for(sink.close(discard=True), STEP)
    assert failures.errors == ["cannot write: No space left on device"]


async def test_closing_without_discard_writes_what_is_queued_first():
    read_end, write_end = os.pipe()
    reading, errors = Reading(), []
    sink = make_sink(write_end, 64 * INLINE_MAX, reading, errors)
    data = os.urandom(8 * CHUNK)  # more than a pipe holds: the thread is mid-queue
    for start in range(0, len(data), CHUNK):
        sink.write(data[start:start + CHUNK])
    closed = sink.close(discard=False)
    received = await asyncio.get_running_loop().run_in_executor(
        None, read_all, read_end)
    await asyncio.wait_for(closed, STEP)
    assert received == data and errors == []


async def test_lent_buffers_are_reused_only_after_the_thread_wrote_them():
    """Reads go into buffers the sink lends; none is lent again while its bytes still wait.

    A pipe nobody reads yet stalls the thread, so every buffer of a small
    pool is lent with its bytes queued, and reading must stop; then the
    pipe is drained while the rest arrives, each buffer reused many times
    over. Had a buffer been lent again early, the next read would overwrite
    bytes the thread had not written yet: what comes out of the pipe, and
    the hash, would differ from what went in.
    """
    read_end, write_end = os.pipe()
    reading, errors = Reading(), []
    data = os.urandom(8 * 1024 * 1024)
    buffer_size = 256 * 1024
    sink = make_sink(write_end, len(data), reading, errors, buffer_size=buffer_size, buffers=3)
    loop = asyncio.get_running_loop()
    drained: asyncio.Future[bytes] | None = None
    position, reads = 0, 0
    try:
        while position < len(data):
            if reading.calls and reading.calls[-1] is False:  # held, as the engine would be
                if drained is None:  # the first hold: every buffer is lent; now drain
                    assert sink.pending >= 3 * (buffer_size - 64 * 1024)
                    drained = loop.run_in_executor(None, read_all, read_end)
                while reading.calls[-1] is False:
                    await reading.next()
                continue
            view = sink.get_buffer(len(data) - position)
            # Reads of uneven sizes, as TCP delivers them.
            count = min(len(view), (reads % 7 + 1) * 37_000, len(data) - position)
            view[:count] = data[position:position + count]
            sink.filled(count)
            position += count
            reads += 1
        assert drained is not None, "reading was never held: the thread was not stalled"
        assert await asyncio.wait_for(sink.finish(), STEP) == hashlib.sha256(data).hexdigest()
    finally:
        if drained is None:
            os.close(read_end)  # a stalled thread gets EPIPE and lets go
        # Closes write_end once the thread is done: the drain sees EOF.
        await asyncio.wait_for(sink.close(discard=drained is None), STEP)
    received = await asyncio.wait_for(drained, STEP)
    assert received == data
    assert errors == []
    assert sink._allocated == 3  # the pool never grew


async def test_a_small_upload_into_a_lent_buffer_is_written_at_once(tmp_path):
    fd = os.open(tmp_path / "part", os.O_WRONLY | os.O_CREAT, 0o600)
    sink = make_sink(fd, 11, Reading(), [])
    for part in (b"hello", b" world"):
        view = sink.get_buffer(11)
        view[:len(part)] = part
        sink.filled(len(part))
    assert (tmp_path / "part").read_bytes() == b"hello world"
    assert sink.finish().result() == hashlib.sha256(b"hello world").hexdigest()
    assert sink.close(discard=False).done()


async def test_once_finished_the_file_is_closed_at_once(tmp_path):
    """After finish() nothing waits for the thread: close() is immediate (the name is free)."""
    fd = os.open(tmp_path / "part", os.O_WRONLY | os.O_CREAT, 0o600)
    data = os.urandom(3 * INLINE_MAX + 12345)  # ends in a part-filled buffer
    sink = make_sink(fd, len(data), Reading(), [])
    position = 0
    while position < len(data):
        view = sink.get_buffer(len(data) - position)
        count = min(len(view), 100_000)
        view[:count] = data[position:position + count]
        sink.filled(count)
        position += count
    assert await asyncio.wait_for(sink.finish(), STEP) == hashlib.sha256(data).hexdigest()
    assert sink.pending == 0
    assert sink.close(discard=False).done()
    assert (tmp_path / "part").read_bytes() == data


async def test_a_cut_upload_keeps_the_bytes_of_a_half_filled_buffer(tmp_path):
    """Reads sit in the current buffer until it is full; a cut (close, no discard) writes them."""
    path = tmp_path / "part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    reading, errors = Reading(), []
    sink = make_sink(fd, 10 * INLINE_MAX, reading, errors)
    data = os.urandom(300_000)  # less than one buffer: nothing sealed yet
    for start in range(0, len(data), 100_000):
        view = sink.get_buffer(100_000)
        view[:100_000] = data[start:start + 100_000]
        sink.filled(100_000)
    await asyncio.wait_for(sink.close(discard=False), STEP)
    assert path.read_bytes() == data and errors == []


async def test_finish_waits_for_the_writing_thread_not_only_the_hash():
    """The hash runs on its own thread, ahead of the writes: the digest alone is not done.

    A pipe nobody reads stalls the writing thread while the hashing one
    finishes; finish() must wait for the bytes, or the file would be
    renamed into place before they are in it.
    """
    read_end, write_end = os.pipe()
    reading, errors = Reading(), []
    sink = make_sink(write_end, 8 * INLINE_MAX, reading, errors, buffer_size=256 * 1024,
                     buffers=8)
    data = os.urandom(1024 * 1024)
    for start in range(0, len(data), 128 * 1024):
        view = sink.get_buffer(128 * 1024)
        view[:] = data[start:start + len(view)]
        sink.filled(len(view))
    finished = sink.finish()
    # A bounded check of a negative: not done while the writes cannot go out.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(finished), 0.2)
    drained = asyncio.get_running_loop().run_in_executor(None, read_all, read_end)
    assert await asyncio.wait_for(finished, STEP) == hashlib.sha256(data).hexdigest()
    assert sink.pending == 0
    await asyncio.wait_for(sink.close(discard=False), STEP)
    assert await asyncio.wait_for(drained, STEP) == data and errors == []


async def test_a_failing_hash_is_reported_and_gives_its_buffer_back(tmp_path):
    fd = os.open(tmp_path / "part", os.O_WRONLY | os.O_CREAT, 0o600)
    failures = Failures()
    reading = Reading()
    sink = UploadSink(fd, BrokenDigest(), 8 * INLINE_MAX, on_error=failures,  # type: ignore[arg-type]
                      set_reading=reading)
    for _ in range(4):
        sink.write(os.urandom(CHUNK))
    await failures.first()
    assert failures.errors == ["cannot hash: digest bug"] and sink.failed
    await asyncio.wait_for(sink.close(discard=True), STEP)  # nothing left lent or pending
    assert sink.pending == 0


class GatedDigest:
    """SHA-256 whose updates wait for the test: the hashing thread held back at will."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self._sha = hashlib.sha256()

    def update(self, data: bytes | memoryview) -> None:
        self.gate.wait(STEP)
        self._sha.update(data)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


async def test_close_waits_for_the_hashing_thread_too(tmp_path):
    """The writing thread closes the file; the hashing one may still hold a job. close()
    resolves only once both have handed every job back, so nothing is counted as lent
    after it (CI once saw pending 131072 right after close: the hash's report came last)."""
    fd = os.open(tmp_path / "part", os.O_WRONLY | os.O_CREAT, 0o600)
    digest, failures = GatedDigest(), Failures()
    sink = UploadSink(fd, digest, 8 * INLINE_MAX, on_error=failures,  # type: ignore[arg-type]
                      set_reading=Reading())
    for _ in range(2):
        sink.write(os.urandom(CHUNK))
    closed = sink.close(discard=False)
    # A bounded check of a negative: not done while the hash holds its jobs.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(closed), 0.2)
    digest.gate.set()
    await asyncio.wait_for(closed, STEP)
    assert sink.pending == 0 and failures.errors == []
    assert (tmp_path / "part").stat().st_size == 2 * CHUNK


async def test_after_a_failed_write_nothing_more_is_written(tmp_path, monkeypatch):
    """A part file must not hold bytes past a hole. The disk error is simulated (a write
    function that fails once, then would succeed): a real one that heals is not to be had."""
    from sockhub.services import files_sink

    calls: list[int] = []

    def flaky(fd: int, data: bytes | memoryview) -> str | None:
        calls.append(len(data))
        return "cannot write: Input/output error" if len(calls) == 1 else None

    monkeypatch.setattr(files_sink, "write_all", flaky)
    fd = os.open(tmp_path / "part", os.O_WRONLY | os.O_CREAT, 0o600)
    failures = Failures()
    sink = UploadSink(fd, hashlib.sha256(), 8 * INLINE_MAX, on_error=failures,
                      set_reading=Reading())
    for _ in range(6):  # five more queued behind the failing first one
        sink.write(os.urandom(CHUNK))
    await failures.first()
    await asyncio.wait_for(sink.close(discard=True), STEP)
    assert calls == [CHUNK]  # the first write failed; none after it
    assert failures.errors == ["cannot write: Input/output error"]
