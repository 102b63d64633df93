"""The client's reading half, sans-I/O: server frames, and a file's raw bytes after FILE.

A client sends requests with :func:`~.frames.encode` and reads answers
through :class:`ClientDecoder`, which knows that a FILE frame is followed
by ``size - offset`` raw bytes and hands those on as :class:`RawData`
instead of parsing them as frames.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sockhub.errors import ProtocolError
from sockhub.protocols.files.frames import (
    MAX_CONTROL_FRAME,
    FileHeader,
    ServerEvent,
    parse_server_frame,
)

_LENGTH = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class RawData:
    """File contents following a FILE frame."""

    data: bytes


class ClientDecoder:
    """Turns the server's byte stream into events.

    Args:
        max_frame: the largest control frame accepted from the server.
    """

    __slots__ = ("_buffer", "max_frame", "remaining")

    def __init__(self, max_frame: int = MAX_CONTROL_FRAME) -> None:
        self.max_frame = max_frame
        self.remaining = 0
        self._buffer = bytearray()

    def raw_taken(self, count: int) -> None:
        """``count`` raw bytes of the current file were read past the decoder.

        A client that reads a file's bytes straight into its own buffers
        (no copy, no :class:`RawData`) says so here; only while raw bytes
        are due and nothing is buffered, so no frame byte can be skipped.

        Raises:
            ValueError: more than the raw bytes still due, or bytes buffered.
        """
        if count < 0 or count > self.remaining or self._buffer:
            raise ValueError(f"{count} raw bytes taken, {self.remaining} due, "
                             f"{len(self._buffer)} buffered")
        self.remaining -= count

    def feed(self, data: bytes) -> list[ServerEvent | RawData]:
        """Events completed by ``data``.

        Raises:
            ProtocolError: a malformed or oversized frame.
        """
        events: list[ServerEvent | RawData] = []
        if self.remaining and not self._buffer:
            take = min(self.remaining, len(data))
            self.remaining -= take
            events.append(RawData(data if take == len(data) else data[:take]))
            data = data[take:]
        buffer = self._buffer
        buffer += data
        while buffer:
            if self.remaining:
                chunk = bytes(buffer[: self.remaining])
                del buffer[: len(chunk)]
                self.remaining -= len(chunk)
                events.append(RawData(chunk))
                continue
            if len(buffer) < _LENGTH.size:
                break
            (length,) = _LENGTH.unpack_from(buffer)
            if length > self.max_frame:
                raise ProtocolError(f"frame of {length} bytes from server exceeds {self.max_frame}")
            if len(buffer) < _LENGTH.size + length:
                break
            frame = bytes(buffer[_LENGTH.size : _LENGTH.size + length])
            del buffer[: _LENGTH.size + length]
            event = parse_server_frame(frame)
            if isinstance(event, FileHeader):
                self.remaining = event.remaining
            events.append(event)
        return events
