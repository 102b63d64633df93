"""sockhub: socket services on asyncio.

The public API for writing your own service::

    from sockhub import LineProtocol

    class Shout(LineProtocol):
        def line_received(self, line: str) -> None:
            self.send_line(line.upper() + "!")

then ``sockhub serve mymodule:Shout --port 7000``. See docs/writing-a-service.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sockhub._version import __version__
from sockhub.errors import (
    ConfigError,
    DecodeError,
    FrameTooLarge,
    LimitExceeded,
    LineTooLong,
    ProtocolError,
    SockhubError,
)

if TYPE_CHECKING:
    from sockhub.codec import FrameDecoder, LineDecoder, decode_utf8, encode_frame, encode_line
    from sockhub.config import ServiceConfig
    from sockhub.engine.server import Engine
    from sockhub.limits import Limits
    from sockhub.protocols.base import (
        ConnectionInfo,
        DatagramProtocol,
        LineProtocol,
        Protocol,
    )

#: Imported on first use (PEP 562), not with the package: the engine pulls in
#: asyncio, ~0.07 s that every client command (``sockhub send``, ``get``, ...)
#: would pay at start without using it.
_LAZY = {
    "FrameDecoder": "sockhub.codec", "LineDecoder": "sockhub.codec",
    "decode_utf8": "sockhub.codec", "encode_frame": "sockhub.codec",
    "encode_line": "sockhub.codec", "ServiceConfig": "sockhub.config",
    "Engine": "sockhub.engine.server", "Limits": "sockhub.limits",
    "ConnectionInfo": "sockhub.protocols.base", "DatagramProtocol": "sockhub.protocols.base",
    "LineProtocol": "sockhub.protocols.base", "Protocol": "sockhub.protocols.base",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sockhub' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
