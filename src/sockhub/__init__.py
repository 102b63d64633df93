"""sockhub: socket services on asyncio.

The public API for writing your own service::

    from sockhub import LineProtocol

    class Shout(LineProtocol):
        def line_received(self, line: str) -> None:
            self.send_line(line.upper() + "!")

then ``sockhub serve mymodule:Shout --port 7000``. See docs/writing-a-service.md.
"""

from __future__ import annotations

from sockhub._version import __version__
from sockhub.codec import FrameDecoder, LineDecoder, decode_utf8, encode_frame, encode_line
from sockhub.config import ServiceConfig
from sockhub.engine.server import Engine
from sockhub.errors import (
    ConfigError,
    DecodeError,
    FrameTooLarge,
    LimitExceeded,
    LineTooLong,
    ProtocolError,
    SockhubError,
)
from sockhub.limits import Limits
from sockhub.protocols.base import ConnectionInfo, DatagramProtocol, LineProtocol, Protocol

__all__ = [
    "ConfigError",
    "ConnectionInfo",
    "DatagramProtocol",
    "DecodeError",
    "Engine",
    "FrameDecoder",
    "FrameTooLarge",
    "LimitExceeded",
    "Limits",
    "LineDecoder",
    "LineProtocol",
    "LineTooLong",
    "Protocol",
    "ProtocolError",
    "ServiceConfig",
    "SockhubError",
    "__version__",
    "decode_utf8",
    "encode_frame",
    "encode_line",
]
