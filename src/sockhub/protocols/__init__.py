"""Sans-I/O protocols: one state machine per service, no sockets inside."""

from __future__ import annotations

from sockhub.protocols.base import (
    ConnectionInfo,
    DatagramProtocol,
    LineProtocol,
    Protocol,
)

__all__ = ["ConnectionInfo", "DatagramProtocol", "LineProtocol", "Protocol"]
