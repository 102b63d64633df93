"""Pure-tier helpers: feed sans-I/O codecs and protocols without sockets."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from sockhub.protocols.base import ConnectionInfo, Protocol


def split_at_every_byte(data: bytes) -> list[list[bytes]]:
    """Ways to deliver ``data`` in reads, covering every byte boundary.

    The whole stream in one read, every cut into two reads, and one byte
    per read. No read is empty.
    """
    ways = [[data]] if data else [[]]
    ways += [[data[:i], data[i:]] for i in range(1, len(data))]
    if len(data) > 2:
        ways.append([data[i : i + 1] for i in range(len(data))])
    return ways


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates ignored), no empty reads."""
    bounds = [0, *sorted({p for p in points if 0 < p < len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def feed_all(decoder: Any, chunks: Sequence[bytes]) -> list[bytes]:
    """Feed every chunk to a LineDecoder or FrameDecoder; all frames it yields."""
    out: list[bytes] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def connected(protocol: Protocol, info: ConnectionInfo | None = None) -> Protocol:
    """Call ``connection_made`` as the engine does; return the protocol."""
    protocol.connection_made(info if info is not None else ConnectionInfo())
    return protocol


def run_protocol(protocol: Protocol, *chunks: bytes, eof: bool = False) -> bytes:
    """Feed ``chunks`` (then EOF if asked) and return everything it queued.

    Output queued before the call (a greeting from ``connection_made``) is
    included. Like the engine, output is collected after every call.
    """
    out = b"".join(protocol.data_to_send())
    for chunk in chunks:
        if chunk:
            protocol.receive_data(chunk)
            out += b"".join(protocol.data_to_send())
    if eof:
        protocol.receive_eof()
        out += b"".join(protocol.data_to_send())
    return out


class Broadcaster(Protocol):
    """Pushes 200 kB to every *other* client whenever one speaks, as chat fan-out does.

    Tests reset ``Broadcaster.members = []`` before serving it.
    """

    members: ClassVar[list[Broadcaster]] = []

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        self.members.append(self)

    def connection_lost(self) -> None:
        self.members.remove(self)

    def receive_data(self, data: bytes) -> None:
        for member in self.members:
            if member is not self:
                member.send(b"y" * 200_000)
                member.wake()
        self.send(b"ok")


def write_token(path: Path, token: bytes) -> Path:
    """A token file as servers accept it: the token and a newline, mode 0600."""
    path.write_bytes(token + b"\n")
    path.chmod(0o600)
    return path


class NoScan(dict):  # type: ignore[type-arg]
    """A big room's members that may be looked up but not listed (quiet-room joins).

    Put in place of ``room.members``, it makes any code that goes through
    every member fail: a join into a quiet room must cost O(operators).
    """

    def _scanned(self, *args: object) -> object:
        raise AssertionError("a join into a quiet room went through every member")

    __iter__ = values = items = keys = _scanned  # type: ignore[assignment]


def read_all(fd: int) -> bytes:
    """Everything until EOF from ``fd``, which it then closes."""
    parts = []
    while block := os.read(fd, 1 << 20):
        parts.append(block)
    os.close(fd)
    return b"".join(parts)


class BrokenDigest:
    """A digest whose update raises (a bug, not a disk error)."""

    def update(self, data: object) -> None:
        raise RuntimeError("digest bug")

    def hexdigest(self) -> str:
        return ""
