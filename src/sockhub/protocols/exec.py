"""Remote command execution, sans-I/O: frame types and both sides' state machines.

Theory of operation
-------------------

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

The server side moves through::

    AUTH --AUTH--> CHECKING --ok--> READY --RUN--> RUNNING --EXIT--> READY --> ...
      \\               \\                 \\              \\
       +---------------+-- fatal ERROR --+--------------+--> CLOSED

* **AUTH.** The server sends a CHALLENGE holding a fresh 32-byte nonce; the
  client answers with ``HMAC-SHA256(token, LABEL + nonce)``. The token never
  crosses the wire, and an answer is worth nothing on another connection,
  whose nonce differs. Until READY the server accepts frames of at most
  :data:`PREAUTH_MAX_FRAME` bytes, so a stranger cannot make it buffer the
  1 MiB an authenticated client may send.
* **CHECKING.** The answer is with the service, which may take its time
  over a wrong one (a delay that makes guessing slow). Everything the
  client sends meanwhile is discarded unread: decoding it could answer
  sooner than the service does (a frame too large for AUTH, say, would
  show that the login had failed).
* **READY.** One RUN at a time. Stale STDIN, STDIN_EOF and CANCEL frames are
  discarded here: a command may end while its client is still sending input.
* **RUNNING.** Output and stdin flow; stdin is flow-controlled by a window:
  the client may have at most ``stdin_window`` bytes of STDIN unacknowledged
  (SSH channels work the same way), because the server cannot stop reading
  the socket without also stopping CANCEL and KEEPALIVE.

This module decides nothing about *what* may run, when a command times out
or whether a token is right: :class:`ExecServerProtocol` hands those
decisions to hook methods that ``sockhub.services.exec`` overrides, and
takes the answers back through :meth:`~ExecServerProtocol.accept_auth`,
:meth:`~ExecServerProtocol.refuse_run`, :meth:`~ExecServerProtocol.send_exit`
and friends. It imports no asyncio, socket or clock, so both sides are
tested by passing bytes between them.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from sockhub.codec.lenprefix import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame
from sockhub.errors import FrameTooLarge, ProtocolError
from sockhub.protocols.base import ConnectionInfo, Protocol

#: Mixed into every answer so that an HMAC made for another purpose (or a
#: later version of this protocol) with the same token is never accepted.
LABEL = b"sockhub-exec-v1"
VERSION = 1
NONCE_SIZE = 32
MAC_SIZE = 32  # SHA-256
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


class ExecProtocolError(ProtocolError):
    """A peer broke the protocol; carries the ERROR frame to answer with.

    Attributes:
        code: the ERROR frame's code.
        fatal: the connection is closed after the ERROR frame.
    """

    def __init__(self, code: ErrorCode, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal


# --- Authentication ------------------------------------------------------------------


def compute_answer(token: bytes, nonce: bytes) -> bytes:
    """The client's answer to a CHALLENGE: ``HMAC-SHA256(token, LABEL + nonce)``."""
    return hmac.new(token, LABEL + nonce, hashlib.sha256).digest()


def verify_answer(token: bytes, nonce: bytes, answer: bytes) -> bool:
    """Check an answer in constant time (``hmac.compare_digest``)."""
    return hmac.compare_digest(compute_answer(token, nonce), answer)


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


# --- Server side ---------------------------------------------------------------------


class ServerState(enum.Enum):
    AUTH = "auth"
    CHECKING = "checking"  # an AUTH was handed to the service; its verdict is pending
    READY = "ready"
    RUNNING = "running"
    CLOSED = "closed"


class ExecServerProtocol(Protocol):
    """The server's half: framing, state and flow control, no policy.

    Subclasses override the ``*_received`` hooks and answer through the
    ``accept_auth``/``fail``/``refuse_run``/``send_*`` methods. Used as is,
    it refuses every login (useful only as the registry's door type, for
    :meth:`refusal`).

    Args:
        nonce: this connection's challenge; fresh random bytes by default.
        stdin_window: see :data:`DEFAULT_STDIN_WINDOW`.
    """

    __slots__ = ("_decoder", "_stdin_open", "_stdin_unacked", "nonce", "state", "stdin_window")

    def __init__(self, nonce: bytes | None = None, *,
                 stdin_window: int = DEFAULT_STDIN_WINDOW) -> None:
        super().__init__()
        self.nonce = nonce if nonce is not None else os.urandom(NONCE_SIZE)
        if len(self.nonce) != NONCE_SIZE:
            raise ValueError(f"a nonce is {NONCE_SIZE} bytes")
        self.stdin_window = stdin_window
        self.state = ServerState.AUTH
        self._decoder = FrameDecoder(PREAUTH_MAX_FRAME)
        self._stdin_open = False
        self._stdin_unacked = 0

    @classmethod
    def refusal(cls, reason: str) -> bytes:
        """An ERROR frame, not a text line: exec clients read frames."""
        return encode(FrameType.ERROR, ErrorReport(ErrorCode.REFUSED, reason, True).to_body())

    # Hooks for the service -------------------------------------------------------

    def auth_received(self, answer: bytes) -> None:
        """An AUTH frame arrived (state is CHECKING): call :meth:`accept_auth` or :meth:`fail`.

        Now or later: until then the client's input is discarded.
        """
        self.fail(ErrorCode.AUTH_FAILED, "authentication failed")

    def run_received(self, request: RunRequest) -> None:
        """A RUN arrived (state is RUNNING): start it, or :meth:`refuse_run`."""
        self.refuse_run(ErrorCode.NOT_ALLOWED, "this server runs nothing")

    def stdin_received(self, data: bytes) -> None:
        """Input for the running command; call :meth:`ack_stdin` once passed on."""

    def stdin_ended(self) -> None:
        """STDIN_EOF (or the client's EOF): close the command's stdin."""

    def cancel_received(self) -> None:
        """CANCEL: the client wants the running command stopped."""

    def bad_run_received(self, body: bytes, error: ExecProtocolError) -> None:
        """A RUN this protocol refuses by itself (malformed, before login, while
        running); ``error`` is about to be sent. The service audits it here, so
        that every RUN frame read gets one audit line.
        """

    # Answers from the service -------------------------------------------------------

    def accept_auth(self, ready: Ready) -> None:
        """The answer was right: lift the pre-auth frame limit and send READY."""
        self.state = ServerState.READY
        self._decoder.max_frame = self.info.limits.max_frame
        self.send(encode(FrameType.READY, ready.to_body()))

    def fail(self, code: ErrorCode, message: str) -> None:
        """A fatal ERROR, then a close."""
        if self.state is ServerState.CLOSED:
            return
        self.send_error(code, message, fatal=True)
        self.state = ServerState.CLOSED
        self.close()

    def send_error(self, code: ErrorCode, message: str, *, fatal: bool = False) -> None:
        self.send(encode(FrameType.ERROR, ErrorReport(code, message, fatal).to_body()))

    def refuse_run(self, code: ErrorCode, message: str) -> None:
        """The RUN will not run: a non-fatal ERROR, back to READY."""
        if self.state is ServerState.RUNNING:
            self.state = ServerState.READY
            self._stdin_open = False
            self.send_error(code, message)

    def send_output(self, stream: int, data: bytes) -> None:
        """Queue command output as STDOUT/STDERR frames of at most CHUNK_SIZE bytes."""
        if self.state is not ServerState.RUNNING:
            return
        kind = FrameType.STDOUT if stream == 1 else FrameType.STDERR
        view = memoryview(data)
        for start in range(0, len(data), CHUNK_SIZE):
            piece = view[start : start + CHUNK_SIZE]
            # Header and data as separate buffers: the engine writelines()
            # them, so a 64 KiB chunk is not copied to prepend 5 bytes.
            self.send(frame_header(kind, len(piece)))
            self.send(bytes(piece) if len(data) > CHUNK_SIZE else data)

    def ack_stdin(self, count: int) -> None:
        """``count`` bytes of stdin were handed to the command: open the window again."""
        if self.state is ServerState.RUNNING and count > 0:
            count = min(count, self._stdin_unacked)
            self._stdin_unacked -= count
            if count:
                self.send(encode(FrameType.STDIN_ACK, _COUNT.pack(count)))

    def send_exit(self, status: ExitStatus) -> None:
        """The command ended: EXIT, back to READY."""
        if self.state is not ServerState.RUNNING:
            return
        self.send(encode(FrameType.EXIT, status.to_body()))
        self.state = ServerState.READY
        self._stdin_open = False
        self._stdin_unacked = 0

    # Engine side -----------------------------------------------------------------------

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        self.send(encode(FrameType.CHALLENGE, bytes([VERSION]) + self.nonce))

    def receive_data(self, data: bytes) -> None:
        if self.state in (ServerState.CLOSED, ServerState.CHECKING):
            return
        try:
            frames = self._decoder.feed(data)
        except FrameTooLarge as exc:
            self._dispatch(exc.frames)
            when = " before authentication" if self.state is ServerState.AUTH else ""
            self.fail(ErrorCode.FRAME_TOO_LARGE, f"frame larger than {exc.limit} bytes{when}")
            return
        self._dispatch(frames)

    def receive_eof(self) -> None:
        """The client is gone: close, which kills a running command.

        A client that dies mid-command closes its socket, and the server
        sees the same FIN as from a polite half-close; killing is the only
        safe reading (ssh sends SIGHUP alike). Input ends with STDIN_EOF.
        """
        self.state = ServerState.CLOSED
        self.close()

    def closing_notice(self, reason: str) -> None:
        self.send_error(ErrorCode.CLOSING, reason, fatal=True)
        self.state = ServerState.CLOSED

    # Internals -------------------------------------------------------------------------

    def _dispatch(self, frames: list[bytes]) -> None:
        for frame in frames:
            if self.state in (ServerState.CLOSED, ServerState.CHECKING):
                return
            try:
                self._handle(frame)
            except ExecProtocolError as exc:
                if frame[:1] == bytes([FrameType.RUN]):
                    self.bad_run_received(frame[1:], exc)
                if exc.fatal:
                    self.fail(exc.code, str(exc))
                else:
                    self.send_error(exc.code, str(exc))

    def _handle(self, frame: bytes) -> None:
        if not frame:
            raise ExecProtocolError(ErrorCode.BAD_FRAME, "empty frame", fatal=True)
        kind, body = frame[0], frame[1:]
        state = self.state
        if state is ServerState.AUTH:
            if kind != FrameType.AUTH:
                raise ExecProtocolError(
                    ErrorCode.AUTH_REQUIRED, "authenticate first: expected an AUTH frame",
                    fatal=True,
                )
            if len(body) != MAC_SIZE:
                raise ExecProtocolError(
                    ErrorCode.AUTH_FAILED, f"an AUTH body is {MAC_SIZE} bytes", fatal=True
                )
            self.state = ServerState.CHECKING
            self.auth_received(body)
            return
        if kind == FrameType.KEEPALIVE:
            return
        if kind == FrameType.RUN:
            if state is ServerState.RUNNING:
                raise ExecProtocolError(
                    ErrorCode.BAD_FRAME, "a command is already running; wait for its EXIT",
                    fatal=True,
                )
            request = parse_run_request(body)
            self.state = ServerState.RUNNING
            self._stdin_open = request.stdin
            self._stdin_unacked = 0
            self.run_received(request)
        elif kind == FrameType.STDIN:
            if state is ServerState.READY:
                return  # the command ended before all its input arrived
            if not self._stdin_open:
                raise ExecProtocolError(
                    ErrorCode.BAD_FRAME, "STDIN without a run request asking for stdin, "
                    "or after STDIN_EOF", fatal=True,
                )
            self._stdin_unacked += len(body)
            if self._stdin_unacked > self.stdin_window:
                raise ExecProtocolError(
                    ErrorCode.STDIN_WINDOW,
                    f"more than {self.stdin_window} bytes of stdin unacknowledged", fatal=True,
                )
            if body:
                self.stdin_received(body)
        elif kind == FrameType.STDIN_EOF:
            if state is ServerState.RUNNING and self._stdin_open:
                self._stdin_open = False
                self.stdin_ended()
        elif kind == FrameType.CANCEL:
            if state is ServerState.RUNNING:
                self.cancel_received()
        elif kind == FrameType.AUTH:
            raise ExecProtocolError(ErrorCode.BAD_FRAME, "already authenticated", fatal=True)
        else:
            # Fatal although framing is intact: that way every non-fatal ERROR
            # answers a RUN, which keeps clients simple. Versions are agreed
            # in the CHALLENGE, not by trying frame types.
            raise ExecProtocolError(
                ErrorCode.BAD_FRAME, f"unknown frame type 0x{kind:02x}", fatal=True
            )


# --- Client side ---------------------------------------------------------------------


class ClientState(enum.Enum):
    CHALLENGE = "challenge"  # waiting for the server's nonce
    AUTH_SENT = "auth_sent"
    READY = "ready"
    RUNNING = "running"
    CLOSED = "closed"


class ExecClientProtocol:
    """The client's half, h11-style: bytes in, events out, bytes to send.

    Feed received bytes to :meth:`receive_data`, which answers the challenge
    by itself and returns the events for the caller (:class:`Ready`,
    :class:`Output`, :class:`StdinAck`, :class:`ExitStatus`,
    :class:`ErrorReport`); write :meth:`data_to_send` to the socket after
    every call.

    Args:
        token: the shared secret.
        max_frame: the largest frame accepted from the server.
    """

    def __init__(self, token: bytes, *, max_frame: int | None = DEFAULT_MAX_FRAME) -> None:
        self.token = token
        self.state = ClientState.CHALLENGE
        self.ready: Ready | None = None
        self._decoder = FrameDecoder(max_frame)
        self._out: list[bytes] = []
        self._stdin_unacked = 0

    def data_to_send(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    @property
    def stdin_credit(self) -> int:
        """Bytes of stdin that may be sent now without waiting for an ack."""
        window = self.ready.stdin_window if self.ready else DEFAULT_STDIN_WINDOW
        return max(0, window - self._stdin_unacked)

    @property
    def stdin_chunk(self) -> int:
        """The largest STDIN body to send: CHUNK_SIZE, or less if the server's max_frame is."""
        limit = self.ready.max_frame if self.ready and self.ready.max_frame else None
        return CHUNK_SIZE if limit is None else max(1, min(CHUNK_SIZE, limit - 1))

    def run(self, argv: list[str] | tuple[str, ...], *, stdin: bool = False) -> None:
        """Queue a RUN. Only in READY."""
        self._require(ClientState.READY, "run")
        self._out.append(encode(FrameType.RUN, RunRequest(tuple(argv), stdin).to_body()))
        self.state = ClientState.RUNNING
        self._stdin_unacked = 0

    def send_stdin(self, data: bytes) -> None:
        """Queue stdin for the running command, at most :attr:`stdin_credit` bytes."""
        self._require(ClientState.RUNNING, "send stdin")
        if len(data) > self.stdin_credit:
            raise ValueError(f"{len(data)} bytes of stdin exceed the credit {self.stdin_credit}")
        step = self.stdin_chunk
        for start in range(0, len(data), step):
            self._out.append(encode(FrameType.STDIN, data[start : start + step]))
        self._stdin_unacked += len(data)

    def end_stdin(self) -> None:
        if self.state is ClientState.RUNNING:
            self._out.append(encode(FrameType.STDIN_EOF))

    def cancel(self) -> None:
        if self.state is ClientState.RUNNING:
            self._out.append(encode(FrameType.CANCEL))

    def keepalive(self) -> None:
        if self.state in (ClientState.READY, ClientState.RUNNING):
            self._out.append(encode(FrameType.KEEPALIVE))

    def receive_data(self, data: bytes) -> list[ServerEvent]:
        """Decode server bytes into events.

        Raises:
            ProtocolError: the server broke the protocol (or FrameTooLarge).
        """
        events: list[ServerEvent] = []
        for frame in self._decoder.feed(data):
            parsed = parse_server_frame(frame)
            if isinstance(parsed, tuple):
                self._challenge(parsed[1])
                continue
            if isinstance(parsed, Ready):
                if self.state is not ClientState.AUTH_SENT:
                    raise ProtocolError("READY before authentication")
                self.ready = parsed
                self.state = ClientState.READY
            elif isinstance(parsed, ErrorReport):
                if parsed.fatal:
                    self.state = ClientState.CLOSED
                elif self.state is ClientState.RUNNING:
                    self.state = ClientState.READY  # the run was refused
            elif isinstance(parsed, ExitStatus):
                if self.state is not ClientState.RUNNING:
                    raise ProtocolError("EXIT with no command running")
                self.state = ClientState.READY
            elif isinstance(parsed, StdinAck):
                self._stdin_unacked = max(0, self._stdin_unacked - parsed.count)
            elif self.state is not ClientState.RUNNING:
                raise ProtocolError("output with no command running")
            events.append(parsed)
        return events

    def _challenge(self, body: bytes) -> None:
        if self.state is not ClientState.CHALLENGE:
            raise ProtocolError("a second CHALLENGE")
        if len(body) != 1 + NONCE_SIZE or body[0] != VERSION:
            raise ProtocolError(
                f"unsupported CHALLENGE (version {body[:1].hex() or 'none'}, want {VERSION})"
            )
        self._out.append(encode(FrameType.AUTH, compute_answer(self.token, body[1:])))
        self.state = ClientState.AUTH_SENT

    def _require(self, state: ClientState, action: str) -> None:
        if self.state is not state:
            raise ProtocolError(f"cannot {action} in state {self.state.value}")
