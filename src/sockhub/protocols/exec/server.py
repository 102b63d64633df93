"""The exec server's half, sans-I/O: login, one command at a time, the stdin window.

Theory of operation
-------------------

The server side moves through::

    AUTH --AUTH--> CHECKING --ok--> READY --RUN--> RUNNING --EXIT--> READY --> ...
      \\               \\                 \\              \\
       +---------------+-- fatal ERROR --+--------------+--> CLOSED

* **AUTH.** The server sends a CHALLENGE holding a fresh 32-byte nonce; the
  client answers with ``HMAC-SHA256(token, LABEL + nonce)``. The token never
  crosses the wire, and an answer is worth nothing on another connection,
  whose nonce differs. Until READY the server accepts frames of at most
  :data:`~.frames.PREAUTH_MAX_FRAME` bytes, so a stranger cannot make it buffer the
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
and friends. It imports no asyncio, socket or clock.
"""

from __future__ import annotations

import enum
import os

from sockhub.codec.lenprefix import FrameDecoder
from sockhub.errors import FrameTooLarge
from sockhub.protocols.base import ConnectionInfo, Protocol
from sockhub.protocols.exec.frames import (
    CHUNK_SIZE,
    DEFAULT_STDIN_WINDOW,
    MAC_SIZE,
    NONCE_SIZE,
    PREAUTH_MAX_FRAME,
    VERSION,
    ErrorCode,
    ErrorReport,
    ExecProtocolError,
    ExitStatus,
    FrameType,
    Ready,
    RunRequest,
    StdinAck,
    encode,
    frame_header,
    parse_run_request,
)


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
    it refuses every login (useful only as the registry's protocol class for
    exec, for :meth:`refusal`).

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
                self.send(encode(FrameType.STDIN_ACK, StdinAck(count).to_body()))

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
