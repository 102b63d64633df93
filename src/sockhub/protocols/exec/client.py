"""The exec client's half, sans-I/O (h11-style): bytes in, events out, bytes to send.

The client answers the CHALLENGE by itself, then runs one command at a time
and keeps within the server's stdin window (see :mod:`.server` for the
states they share). Apart from the server so that a client (``sockhub
exec``, a test, another program) needs none of the server's hooks.
"""

from __future__ import annotations

import enum

from sockhub.codec.lenprefix import DEFAULT_MAX_FRAME, FrameDecoder
from sockhub.errors import ProtocolError
from sockhub.protocols.exec.frames import (
    CHUNK_SIZE,
    DEFAULT_STDIN_WINDOW,
    NONCE_SIZE,
    VERSION,
    ErrorReport,
    ExitStatus,
    FrameType,
    Ready,
    RunRequest,
    ServerEvent,
    StdinAck,
    compute_answer,
    encode,
    parse_server_frame,
)


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
