"""The shared hash-and-write thread behind the files client's downloads (sockhub/hashwrite.py).

Real files and real pipes: a pipe nobody reads stands for a disk that
falls behind.
"""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from helpers import BrokenDigest, read_all
from sockhub.hashwrite import HashWriter, hash_and_write

STEP = 10.0


def test_bytes_are_written_in_order_and_hashed(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 5)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    writer = HashWriter(fd, hashlib.sha256(), buffer_size=256 * 1024, buffers=2)
    writer.put(data[:100], 100)  # bytes that arrived another way go first
    position = 100
    while position < len(data):
        buffer = writer.take()
        count = min(len(buffer), len(data) - position, 70_000 + position % 3)
        buffer[:count] = data[position:position + count]
        writer.put(buffer, count)
        position += count
    assert writer.finish() == hashlib.sha256(data).hexdigest()
    os.close(fd)
    assert (tmp_path / "out").read_bytes() == data


def test_a_slow_disk_blocks_take_and_no_buffer_is_lent_again_early():
    """Every buffer lent with its bytes still unwritten: take() waits, and the bytes survive.

    The pipe holds 64 KiB, each fill is more, and nobody reads it yet: the thread is stuck
    in its first write; the receiver gets its three buffers and then
    waits in take(). Each buffer it gets is scribbled over whole before
    it is filled (as a read would overwrite it): had one come back before
    the thread wrote it, what comes out of the pipe would differ.
    """
    read_end, write_end = os.pipe()
    data = os.urandom(4 * 1024 * 1024)
    writer = HashWriter(write_end, hashlib.sha256(), buffer_size=128 * 1024, buffers=3)
    fourth_asked, fourth_got = threading.Event(), threading.Event()

    def receive() -> None:
        position, takes = 0, 0
        while position < len(data):
            if takes == 3:
                fourth_asked.set()
            buffer = writer.take()
            takes += 1
            if takes == 4:
                fourth_got.set()
            buffer[:] = b"\xff" * len(buffer)
            count = min(len(buffer), len(data) - position, 100_000 + 13 * takes)
            buffer[:count] = data[position:position + count]
            writer.put(buffer, count)
            position += count

    receiver = threading.Thread(target=receive)
    receiver.start()
    try:
        assert fourth_asked.wait(STEP)
        # A bounded check of a negative: the fourth buffer is not lent while the pipe is full.
        assert not fourth_got.wait(0.2)
    finally:
        drained: list[bytes] = []
        drain = threading.Thread(target=lambda: drained.append(read_all(read_end)))
        drain.start()
    receiver.join(STEP)
    assert not receiver.is_alive()
    assert writer.finish() == hashlib.sha256(data).hexdigest()
    os.close(write_end)
    drain.join(STEP)
    assert drained == [data]


def test_a_write_error_stops_the_writing_and_finish_says_why():
    read_end, write_end = os.pipe()
    os.close(read_end)  # EPIPE on the first write (Python ignores SIGPIPE)
    writer = HashWriter(write_end, hashlib.sha256(), buffer_size=1024, buffers=1)
    for _ in range(5):  # buffers still come back: the receiver never hangs
        buffer = writer.take()
        writer.put(buffer, 10)
    with pytest.raises(OSError, match="cannot write: Broken pipe"):
        writer.finish()
    assert writer.error == "cannot write: Broken pipe"
    with pytest.raises(ValueError):
        writer.put(b"late", 4)
    os.close(write_end)


def test_hash_and_write_reports_the_reason(tmp_path):
    fd = os.open(tmp_path / "ro", os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        assert hash_and_write(fd, hashlib.sha256(), b"x") == "cannot write: Bad file descriptor"
    finally:
        os.close(fd)


def test_a_failing_digest_is_an_error_and_neither_thread_hangs(tmp_path):
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    writer = HashWriter(fd, BrokenDigest(), buffer_size=1024, buffers=1)  # type: ignore[arg-type]
    for _ in range(5):  # the one buffer keeps coming back: take() would block for ever else
        buffer = writer.take()
        writer.put(buffer, 10)
    with pytest.raises(OSError, match="cannot hash: digest bug"):
        writer.finish()  # the threads ended: close() joined them
    assert os.fstat(fd).st_size == 0  # nothing unhashed was written
    os.close(fd)
