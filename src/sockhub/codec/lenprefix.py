"""Length-prefixed frames: a 4-byte big-endian length, then that many bytes.

The seeds solve the "sticky packet" problem with a ``Ready|<length>`` header
and a ``Start`` acknowledgement, a round trip per message. A binary length
prefix needs no round trip and no text parsing. Wire format::

    +----------------+----------------------+
    | length: uint32 | payload: length bytes|
    | big-endian     |                      |
    +----------------+----------------------+

The decoder checks the announced length against ``max_frame`` the moment the
4 header bytes are in, *before* buffering any payload (as Twisted's
IntNStringReceiver does), so a peer announcing 4 GiB costs nothing.
A zero-length frame is valid and yields ``b""``.
"""

from __future__ import annotations

import struct

from sockhub.errors import FrameTooLarge

_HEADER = struct.Struct("!I")
HEADER_SIZE = _HEADER.size

#: 1 MiB: enough for a command's output chunk or a file block; 2**32-1 is
#: the format's own limit. websockets uses the same default max_size.
DEFAULT_MAX_FRAME = 1024 * 1024


def encode_frame(payload: bytes, max_frame: int | None = None) -> bytes:
    """Prefix ``payload`` with its length.

    Raises:
        FrameTooLarge: the payload exceeds ``max_frame`` (or 2**32 - 1).
    """
    limit = 0xFFFFFFFF if max_frame is None else min(max_frame, 0xFFFFFFFF)
    if len(payload) > limit:
        raise FrameTooLarge(f"frame of {len(payload)} bytes exceeds {limit}", limit=limit)
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Split a byte stream into length-prefixed frames.

    Args:
        max_frame: the largest payload accepted, in bytes; ``None`` means the
            format's own limit of 2**32 - 1 (only for trusted input).
    """

    __slots__ = ("_buffer", "_failed", "max_frame")

    def __init__(self, max_frame: int | None = DEFAULT_MAX_FRAME) -> None:
        if max_frame is not None and max_frame < 0:
            raise ValueError("max_frame must not be negative")
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame (header included) held so far."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the payloads of the frames they complete.

        Raises:
            FrameTooLarge: a header announces more than ``max_frame`` bytes.
                Its ``frames`` attribute holds the frames completed before it.
        """
        limit = self.max_frame
        if self._failed:
            raise FrameTooLarge("frame decoder already failed", limit=limit or 0)
        buffer = self._buffer
        frames: list[bytes] = []
        view = memoryview(data)
        while view:
            if len(buffer) < HEADER_SIZE:
                take = HEADER_SIZE - len(buffer)
                buffer += view[:take]
                view = view[take:]
                if len(buffer) < HEADER_SIZE:
                    break
                (length,) = _HEADER.unpack_from(buffer)
                if limit is not None and length > limit:
                    self._failed = True
                    buffer.clear()
                    raise FrameTooLarge(
                        f"frame of {length} bytes exceeds {limit}", limit=limit, frames=frames
                    )
            else:
                (length,) = _HEADER.unpack_from(buffer)
            need = HEADER_SIZE + length - len(buffer)
            buffer += view[:need]
            view = view[need:]
            if len(buffer) == HEADER_SIZE + length:
                frames.append(bytes(buffer[HEADER_SIZE:]))
                buffer.clear()
        return frames
