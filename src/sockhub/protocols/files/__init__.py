"""File transfer, sans-I/O: the wire format and the server's state machine.

* :mod:`.digests`: SHA-256 and BLAKE3, and which one a transfer uses;
* :mod:`.frames`: frame types, error codes, requests and answers, name
  checks, the login answer (docs/files-protocol.md in code);
* :mod:`.server`: :class:`FilesServerProtocol`, with hooks for the service;
* :mod:`.client`: :class:`ClientDecoder`, server frames and raw file bytes.

None imports asyncio, socket or a clock.
"""

from __future__ import annotations

from sockhub.protocols.files import digests
from sockhub.protocols.files.client import ClientDecoder, RawData
from sockhub.protocols.files.frames import (
    LABEL,
    MAX_CONTROL_FRAME,
    PREAUTH_MAX_FRAME,
    VERSION,
    Accept,
    Challenge,
    DeleteRequest,
    Digest,
    Done,
    Entry,
    ErrorCode,
    ErrorReport,
    FileHeader,
    FilesProtocolError,
    FrameType,
    GetRequest,
    Listing,
    ListRequest,
    PutRequest,
    Ready,
    ServerEvent,
    check_name,
    compute_answer,
    encode,
    parse_server_frame,
    verify_answer,
)
from sockhub.protocols.files.server import FilesServerProtocol, ServerState

__all__ = [
    "LABEL",
    "MAX_CONTROL_FRAME",
    "PREAUTH_MAX_FRAME",
    "VERSION",
    "Accept",
    "Challenge",
    "ClientDecoder",
    "DeleteRequest",
    "Digest",
    "Done",
    "Entry",
    "ErrorCode",
    "ErrorReport",
    "FileHeader",
    "FilesProtocolError",
    "FilesServerProtocol",
    "FrameType",
    "GetRequest",
    "ListRequest",
    "Listing",
    "PutRequest",
    "RawData",
    "Ready",
    "ServerEvent",
    "ServerState",
    "check_name",
    "compute_answer",
    "digests",
    "encode",
    "parse_server_frame",
    "verify_answer",
]
