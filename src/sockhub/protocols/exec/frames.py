"""The exec protocol's wire: frame types, error codes, events and their bodies.

Seed 000 reads ``Ready|<length>``, answers ``Start`` and hands any text to
``Popen(..., shell=True)``. Here every message is a typed frame inside the
length-prefixed framing of :mod:`sockhub.codec.lenprefix`::

    +----------------+-----------+------------------------+
    | length: uint32 | type: u8  | body: length - 1 bytes |
    +----------------+-----------+------------------------+

Client-to-server types have the high bit clear, server-to-client types have
it set, so a frame sent the wrong way is obviously wrong. Output chunks and
stdin are raw bytes after the type byte (binary-safe, no encoding); the few
control frames with fields (READY, RUN, EXIT, ERROR) carry a UTF-8 JSON
object. docs/exec-protocol.md is the byte-exact specification.

A module of its own because both state machines (:mod:`.server`,
:mod:`.client`) and the service speak this vocabulary, and the byte format
is what docs/exec-protocol.md specifies, apart from who sends what when.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from typing import Any

from sockhub.codec.lenprefix import DEFAULT_MAX_FRAME, encode_frame
from sockhub.errors import CodedProtocolError, ProtocolError
from sockhub.protocols import challenge
from sockhub.protocols.challenge import MAC_SIZE as MAC_SIZE
from sockhub.protocols.challenge import NONCE_SIZE as NONCE_SIZE

#: Mixed into every answer so that an HMAC made for another purpose (or a
#: later version of this protocol) with the same token is never accepted.
LABEL = b"sockhub-exec-v1"
VERSION = 1
#: The largest frame accepted before authentication: an AUTH frame is 33
#: bytes; anything bigger from a stranger is refused without buffering it.
PREAUTH_MAX_FRAME = 64
#: Bytes of STDIN a client may send ahead of the server's STDIN_ACKs. 256 KiB
#: keeps a pipe busy on loopback and bounds what one client can park in memory.
DEFAULT_STDIN_WINDOW = 256 * 1024
#: The largest output chunk the server sends (data bytes, type byte excluded),
#: and the largest STDIN chunk the client sends: far below any max_frame
#: a peer should configure, so chunks never trip the peer's limit.
CHUNK_SIZE = 64 * 1024
#: A run request's argv may hold at most this many elements.
MAX_ARGS = 4096

_HEADER = struct.Struct("!IB")
_COUNT = struct.Struct("!I")


class FrameType(enum.IntEnum):
    """The first byte of every frame's payload."""

    # client -> server
    AUTH = 0x01
    RUN = 0x02
    STDIN = 0x03
    STDIN_EOF = 0x04
    CANCEL = 0x05
    KEEPALIVE = 0x06
    # server -> client
    CHALLENGE = 0x81
    READY = 0x82
    STDOUT = 0x83
    STDERR = 0x84
    EXIT = 0x85
    ERROR = 0x86
    STDIN_ACK = 0x87


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ERROR frame; see docs/exec-protocol.md for each."""

    AUTH_REQUIRED = "auth_required"
    AUTH_FAILED = "auth_failed"
    AUTH_TIMEOUT = "auth_timeout"
    RATE_LIMITED = "rate_limited"
    BAD_FRAME = "bad_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    BAD_REQUEST = "bad_request"
    NOT_ALLOWED = "not_allowed"
    NOT_FOUND = "not_found"
    SPAWN_FAILED = "spawn_failed"
    BUSY = "busy"
    STDIN_WINDOW = "stdin_window"
    CLOSING = "closing"
    REFUSED = "refused"


class Reason(enum.StrEnum):
    """Why a command ended, in its EXIT frame."""

    EXIT = "exit"  # on its own: it exited, or a signal from elsewhere killed it
    TIMEOUT = "timeout"
    OUTPUT_LIMIT = "output_limit"
    CANCELLED = "cancelled"


class ExecProtocolError(CodedProtocolError[ErrorCode]):
    """A peer broke the protocol; carries the ERROR frame to answer with."""


# --- Authentication ------------------------------------------------------------------


def compute_answer(token: bytes, nonce: bytes) -> bytes:
    """The client's answer to a CHALLENGE: ``HMAC-SHA256(token, LABEL + nonce)``."""
    return challenge.compute_answer(LABEL, token, nonce)


def verify_answer(token: bytes, nonce: bytes, answer: bytes) -> bool:
    """Check an answer in constant time (``hmac.compare_digest``)."""
    return challenge.verify_answer(LABEL, token, nonce, answer)


# --- Events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A RUN frame: the argv to execute directly (no shell) and whether stdin follows."""

    argv: tuple[str, ...]
    stdin: bool = False

    def to_body(self) -> bytes:
        return _json_body({"argv": list(self.argv), "stdin": self.stdin})


@dataclass(frozen=True, slots=True)
class Ready:
    """The READY frame: authenticated; the server's limits for this connection."""

    version: int = VERSION
    max_frame: int | None = DEFAULT_MAX_FRAME
    stdin_window: int = DEFAULT_STDIN_WINDOW
    #: Seconds of silence after which the server closes the connection;
    #: a client waiting on a long command sends KEEPALIVE more often than this.
    idle_timeout: float | None = None

    def to_body(self) -> bytes:
        return _json_body({
            "version": self.version,
            "max_frame": self.max_frame,
            "stdin_window": self.stdin_window,
            "idle_timeout": self.idle_timeout,
        })


@dataclass(frozen=True, slots=True)
class Output:
    """A STDOUT (``stream`` 1) or STDERR (``stream`` 2) chunk, raw bytes."""

    stream: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StdinAck:
    """STDIN_ACK: ``count`` more bytes of stdin were passed to the command."""

    count: int

    def to_body(self) -> bytes:
        return _COUNT.pack(self.count)


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """The EXIT frame: how a command ended.

    Attributes:
        code: the exit code, or None if a signal ended the process.
        signal: the signal number that ended it, or None.
        reason: why it ended (:class:`Reason`).
        duration: seconds from start to exit, as measured by the server.
        stdout_bytes, stderr_bytes: output bytes sent to the client.
    """

    code: int | None
    signal: int | None
    reason: str = Reason.EXIT
    duration: float = 0.0
    stdout_bytes: int = 0
    stderr_bytes: int = 0

    def to_body(self) -> bytes:
        return _json_body({
            "code": self.code,
            "signal": self.signal,
            "reason": str(self.reason),
            "duration": round(self.duration, 6),
            "stdout_bytes": self.stdout_bytes,
            "stderr_bytes": self.stderr_bytes,
        })


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """An ERROR frame: ``code`` for programs, ``message`` for people."""

    code: str
    message: str
    fatal: bool

    def to_body(self) -> bytes:
        return _json_body({"code": self.code, "message": self.message, "fatal": self.fatal})


ServerEvent = Ready | Output | StdinAck | ExitStatus | ErrorReport


# --- Encoding and decoding ---------------------------------------------------------


def encode(frame_type: FrameType, body: bytes = b"") -> bytes:
    """One frame: length, type byte, body."""
    return encode_frame(bytes([frame_type]) + body)


def frame_header(frame_type: FrameType, body_size: int) -> bytes:
    """Length and type of a frame whose body is sent as a separate buffer (no copy)."""
    return _HEADER.pack(body_size + 1, frame_type)


def _json_body(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    """Parse a control frame's body; raises ExecProtocolError(BAD_REQUEST)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExecProtocolError(
            ErrorCode.BAD_REQUEST, f"{what} is not valid UTF-8 (byte {exc.start})"
        ) from None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ExecProtocolError(ErrorCode.BAD_REQUEST, f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ExecProtocolError(ErrorCode.BAD_REQUEST, f"{what} must be a JSON object")
    return obj


def parse_run_request(body: bytes) -> RunRequest:
    """Validate a RUN body.

    Raises:
        ExecProtocolError: BAD_REQUEST with a message saying what is wrong.
    """
    obj = _json_object(body, "run request")
    unknown = set(obj) - {"argv", "stdin"}
    if unknown:
        # Refuse rather than ignore: a client asking for "env" or "cwd" must
        # not believe it got them.
        raise ExecProtocolError(
            ErrorCode.BAD_REQUEST, f"unknown field(s) in run request: {', '.join(sorted(unknown))}"
        )
    argv = obj.get("argv")
    if not isinstance(argv, list) or not argv:
        raise ExecProtocolError(ErrorCode.BAD_REQUEST, "argv must be a non-empty list of strings")
    if len(argv) > MAX_ARGS:
        raise ExecProtocolError(ErrorCode.BAD_REQUEST, f"argv has more than {MAX_ARGS} elements")
    for index, arg in enumerate(argv):
        if not isinstance(arg, str):
            raise ExecProtocolError(ErrorCode.BAD_REQUEST, f"argv[{index}] is not a string")
        if "\0" in arg:
            raise ExecProtocolError(ErrorCode.BAD_REQUEST, f"argv[{index}] contains a NUL byte")
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
            raise ExecProtocolError(
                ErrorCode.BAD_REQUEST, f"argv[{index}] is not valid Unicode"
            ) from None
    if not argv[0]:
        raise ExecProtocolError(ErrorCode.BAD_REQUEST, "argv[0] is empty")
    stdin = obj.get("stdin", False)
    if not isinstance(stdin, bool):
        raise ExecProtocolError(ErrorCode.BAD_REQUEST, "stdin must be true or false")
    return RunRequest(tuple(argv), stdin)


def _optional_number(obj: dict[str, Any], key: str) -> Any:
    value = obj.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f"{key} must be a number or null")
    return value


def parse_server_frame(frame: bytes) -> ServerEvent | tuple[FrameType, bytes]:
    """Decode one server frame for a client.

    CHALLENGE is returned as ``(FrameType.CHALLENGE, body)``; everything else
    as an event.

    Raises:
        ProtocolError: an empty or unknown frame, or a malformed body.
    """
    if not frame:
        raise ProtocolError("empty frame from server")
    kind, body = frame[0], frame[1:]
    try:
        if kind == FrameType.STDOUT:
            return Output(1, body)
        if kind == FrameType.STDERR:
            return Output(2, body)
        if kind == FrameType.CHALLENGE:
            return FrameType.CHALLENGE, body
        if kind == FrameType.STDIN_ACK:
            (count,) = _COUNT.unpack(body)
            return StdinAck(count)
        if kind == FrameType.READY:
            obj = _json_object(body, "READY")
            window = obj.get("stdin_window", DEFAULT_STDIN_WINDOW)
            if not isinstance(window, int) or window < 1:
                raise ValueError("stdin_window must be a positive integer")
            max_frame = _optional_number(obj, "max_frame")
            return Ready(
                version=int(obj.get("version", VERSION)),
                max_frame=None if max_frame is None else int(max_frame),
                stdin_window=window,
                idle_timeout=_optional_number(obj, "idle_timeout"),
            )
        if kind == FrameType.EXIT:
            obj = _json_object(body, "EXIT")
            return ExitStatus(
                code=_optional_number(obj, "code"),
                signal=_optional_number(obj, "signal"),
                reason=str(obj.get("reason", Reason.EXIT)),
                duration=float(obj.get("duration", 0.0)),
                stdout_bytes=int(obj.get("stdout_bytes", 0)),
                stderr_bytes=int(obj.get("stderr_bytes", 0)),
            )
        if kind == FrameType.ERROR:
            obj = _json_object(body, "ERROR")
            return ErrorReport(
                str(obj.get("code", "")), str(obj.get("message", "")), bool(obj.get("fatal"))
            )
    except (ExecProtocolError, ValueError, TypeError, struct.error) as exc:
        raise ProtocolError(f"malformed frame 0x{kind:02x} from server: {exc}") from None
    raise ProtocolError(f"unknown frame type 0x{kind:02x} from server")
