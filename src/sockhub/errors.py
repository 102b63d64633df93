"""One exception tree for sockhub.

::

    SockhubError
    ├── ConfigError            bad settings, unknown service, unreadable TOML
    └── ProtocolError          the peer broke a protocol's rules
        ├── DecodeError        bytes that are not valid in the expected encoding
        └── LimitExceeded      the peer went past a configured cap
            ├── LineTooLong    a line longer than ``max_line``
            └── FrameTooLarge  a length prefix larger than ``max_frame``

Codecs raise these and never decide what to tell the peer: that is the
protocol's job, so each protocol turns an error into its own wire reply
(an error line, an IRC numeric, an exec error frame) in one place.
"""

from __future__ import annotations


class SockhubError(Exception):
    """Base class of every error sockhub raises on purpose."""


class ConfigError(SockhubError):
    """Settings that cannot be used: the message is meant for the operator."""


class StartError(SockhubError):
    """A service could not start for want of something outside it (Redis): exit 1."""


class ProtocolError(SockhubError):
    """The peer sent something the protocol does not allow."""


class DecodeError(ProtocolError):
    """Bytes that are not valid in the protocol's text encoding (UTF-8)."""


class LimitExceeded(ProtocolError):
    """The peer went past a configured limit.

    Attributes:
        limit: the configured maximum, in bytes.
        frames: whatever complete frames (or lines) were decoded from the
            same input before the limit was hit, so that nothing the peer
            sent correctly is lost along with the offending part.
    """

    def __init__(self, message: str, *, limit: int, frames: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.frames: list[bytes] = frames if frames is not None else []


class LineTooLong(LimitExceeded):
    """A line grew past ``max_line`` bytes before its line ending arrived."""


class FrameTooLarge(LimitExceeded):
    """A length prefix announced a frame larger than ``max_frame`` bytes."""
