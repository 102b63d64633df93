"""Sans-I/O framing: bytes in, frames out; no sockets, no asyncio, no clocks."""

from __future__ import annotations

from sockhub.codec.lenprefix import HEADER_SIZE, FrameDecoder, encode_frame
from sockhub.codec.lines import LineDecoder, decode_utf8, encode_line

__all__ = [
    "HEADER_SIZE",
    "FrameDecoder",
    "LineDecoder",
    "decode_utf8",
    "encode_frame",
    "encode_line",
]
