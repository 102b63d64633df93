"""Remote command execution, sans-I/O: the wire format and both sides' state machines.

Three modules, one job each:

* :mod:`.frames`: frame types, error codes, the events and their bodies,
  encoding and decoding, and the HMAC login answer (docs/exec-protocol.md
  in code);
* :mod:`.server`: :class:`ExecServerProtocol`, the server's state machine
  (AUTH → CHECKING → READY ⇄ RUNNING), with hooks for the service's policy;
* :mod:`.client`: :class:`ExecClientProtocol`, the client's state machine.

None imports asyncio, socket or a clock, so both sides are tested by
passing bytes between them. The names below are the public API; import
them from here.
"""

from __future__ import annotations

from sockhub.protocols.exec.client import ClientState, ExecClientProtocol
from sockhub.protocols.exec.frames import (
    CHUNK_SIZE,
    DEFAULT_STDIN_WINDOW,
    LABEL,
    MAC_SIZE,
    MAX_ARGS,
    NONCE_SIZE,
    PREAUTH_MAX_FRAME,
    VERSION,
    ErrorCode,
    ErrorReport,
    ExecProtocolError,
    ExitStatus,
    FrameType,
    Output,
    Ready,
    Reason,
    RunRequest,
    ServerEvent,
    StdinAck,
    compute_answer,
    encode,
    frame_header,
    parse_run_request,
    parse_server_frame,
    verify_answer,
)
from sockhub.protocols.exec.server import ExecServerProtocol, ServerState

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_STDIN_WINDOW",
    "LABEL",
    "MAC_SIZE",
    "MAX_ARGS",
    "NONCE_SIZE",
    "PREAUTH_MAX_FRAME",
    "VERSION",
    "ClientState",
    "ErrorCode",
    "ErrorReport",
    "ExecClientProtocol",
    "ExecProtocolError",
    "ExecServerProtocol",
    "ExitStatus",
    "FrameType",
    "Output",
    "Ready",
    "Reason",
    "RunRequest",
    "ServerEvent",
    "ServerState",
    "StdinAck",
    "compute_answer",
    "encode",
    "frame_header",
    "parse_run_request",
    "parse_server_frame",
    "verify_answer",
]
