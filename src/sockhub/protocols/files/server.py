"""The files server's half, sans-I/O: login, one request at a time, raw file bytes.

Theory of operation
-------------------

::

    AUTH --AUTH--> CHECKING --ok--> READY --PUT--> WORKING --accept--> WAIT_START
                                      ^  \\                              | START
                                      |   GET/LIST/DELETE                v
                                      |      \\--> WORKING          RECEIVING (raw bytes)
                                      |             | answer            | size - offset bytes
                                      +-------------+------ DONE <-- WAIT_END <--+
                                                           or ERROR       END

* **AUTH / CHECKING** are the exec protocol's login (the shared
  :mod:`sockhub.protocols.challenge` scheme with this protocol's label):
  input is discarded while the service weighs an answer.
* **WORKING.** The service has a request and is deciding, or sending a
  file. Frames the client sends meanwhile stay buffered (at most one control
  frame's worth) and are read once the answer is out; a client that sends
  more than that ahead is broken.
* **RECEIVING.** After START the next ``size - offset`` bytes are file
  contents, not frames. The protocol asks the engine to read them into
  buffers the service lends (``read_into(True)``: :meth:`raw_buffer`, then
  :meth:`raw_filled`; no allocation or copy per read), never past the last
  file byte, so END is read as a frame again. Bytes of a read that also
  held START go to :meth:`FilesServerProtocol.data_received`.

The service decides everything that needs the filesystem (names against
symlinks, quota, the part already there) and answers through
:meth:`~FilesServerProtocol.accept_put`, :meth:`~FilesServerProtocol.refuse`
and friends. This module imports no asyncio, socket or clock.
"""

from __future__ import annotations

import enum
import os
import struct

from sockhub.protocols.base import ConnectionInfo, Protocol
from sockhub.protocols.challenge import MAC_SIZE, NONCE_SIZE
from sockhub.protocols.files.digests import SHA256
from sockhub.protocols.files.frames import (
    MAX_CONTROL_FRAME,
    PREAUTH_MAX_FRAME,
    VERSION,
    Accept,
    DeleteRequest,
    Digest,
    Done,
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
    encode,
    parse_digest,
    parse_start,
)

_LENGTH = struct.Struct("!I")
#: Bytes per read of the default :meth:`FilesServerProtocol.raw_buffer`.
RAW_READ = 256 * 1024


class ServerState(enum.Enum):
    AUTH = "auth"
    CHECKING = "checking"
    READY = "ready"
    WORKING = "working"
    WAIT_START = "wait_start"
    RECEIVING = "receiving"
    WAIT_END = "wait_end"
    CLOSED = "closed"


class FilesServerProtocol(Protocol):
    """The server's half: framing, state and the raw-byte count, no policy.

    Subclasses override the ``*_received`` hooks and answer through the
    methods below them. Used as is, it refuses every login.
    """

    __slots__ = ("_buffer", "_digest", "_lent", "_offered", "_put", "_scratch", "max_frame",
                 "nonce", "remaining", "state")

    def __init__(self, nonce: bytes | None = None, *,
                 max_frame: int = MAX_CONTROL_FRAME) -> None:
        super().__init__()
        self.nonce = nonce if nonce is not None else os.urandom(NONCE_SIZE)
        if len(self.nonce) != NONCE_SIZE:
            raise ValueError(f"a nonce is {NONCE_SIZE} bytes")
        self.state = ServerState.AUTH
        self.max_frame = max_frame
        #: Raw bytes of the current upload still to come (RECEIVING).
        self.remaining = 0
        self._buffer = bytearray()
        self._put: PutRequest | None = None
        self._offered = 0
        #: The digest of the upload in progress (picked by the service in its ACCEPT).
        self._digest = SHA256
        #: The last get_buffer lent a raw_buffer (True) or the scratch buffer.
        self._lent = False
        self._scratch: bytearray | None = None

    @classmethod
    def refusal(cls, reason: str) -> bytes:
        """An ERROR frame, not a text line: files clients read frames."""
        return encode(FrameType.ERROR, ErrorReport(ErrorCode.REFUSED, reason, True).to_body())

    # Hooks for the service -------------------------------------------------------

    def auth_received(self, answer: bytes) -> None:
        """An AUTH arrived (CHECKING): call :meth:`accept_auth` or :meth:`fail`, now or later."""
        self.fail(ErrorCode.AUTH_FAILED, "authentication failed")

    def put_received(self, request: PutRequest) -> None:
        """PUT (WORKING): :meth:`accept_put` or :meth:`refuse`."""
        self.refuse(ErrorCode.READ_ONLY, "this server stores nothing")

    def start_received(self, offset: int) -> None:
        """START: raw bytes from ``offset`` follow (0, or the offset offered)."""

    def data_received(self, data: bytes | memoryview) -> None:
        """File contents of the current upload, in order; valid only during the call."""

    def raw_buffer(self, limit: int) -> memoryview | bytearray:
        """Where the next upload bytes go: a writable buffer of 1 to ``limit`` bytes.

        By default one reused buffer, handed to :meth:`data_received`, which
        must be done with it before returning; a service that keeps the
        bytes longer (a worker thread) lends its own buffers.
        """
        if self._scratch is None:
            self._scratch = bytearray(RAW_READ)
        return memoryview(self._scratch)[:limit]

    def raw_filled(self, nbytes: int) -> None:
        """The first ``nbytes`` of the last :meth:`raw_buffer` hold the next file bytes."""
        assert self._scratch is not None
        self.data_received(memoryview(self._scratch)[:nbytes])

    def end_received(self, digest: Digest) -> None:
        """END (WORKING): every byte arrived; verify, then :meth:`send_done` or :meth:`refuse`."""

    def get_received(self, request: GetRequest) -> None:
        """GET (WORKING): :meth:`send_file_header`, the bytes, :meth:`send_file_end`; or refuse."""
        self.refuse(ErrorCode.NOT_FOUND, "this server has no files")

    def list_received(self, request: ListRequest) -> None:
        """LIST (WORKING): :meth:`send_listing` or :meth:`refuse`."""
        self.send_listing(Listing())

    def delete_received(self, request: DeleteRequest) -> None:
        """DELETE (WORKING): :meth:`send_done` or :meth:`refuse`."""
        self.refuse(ErrorCode.NOT_FOUND, "this server has no files")

    def bad_request_received(self, kind: int, body: bytes, error: FilesProtocolError) -> None:
        """A request refused by the protocol itself: the service audits it here."""

    # Answers from the service -------------------------------------------------------

    def accept_auth(self, ready: Ready) -> None:
        self.state = ServerState.READY
        self._buffer.clear()
        self.send(encode(FrameType.READY, ready.to_body()))

    def fail(self, code: ErrorCode, message: str) -> None:
        """A fatal ERROR, then a close."""
        if self.state is ServerState.CLOSED:
            return
        self.send(encode(FrameType.ERROR, ErrorReport(code, message, True).to_body()))
        self.state = ServerState.CLOSED
        self._buffer.clear()
        self.close()

    def refuse(self, code: ErrorCode, message: str) -> None:
        """The request is refused or failed: a non-fatal ERROR, back to READY.

        Not while raw bytes are due (WAIT_START, RECEIVING): the stream
        cannot be resynchronised there, so that is a :meth:`fail`.
        """
        if self.state in (ServerState.WAIT_START, ServerState.RECEIVING):
            self.fail(code, message)
            return
        if self.state is not ServerState.WORKING:
            return
        self.send(encode(FrameType.ERROR, ErrorReport(code, message, False).to_body()))
        self._ready_again()

    def accept_put(self, accept: Accept) -> None:
        """Take the PUT: ACCEPT, then wait for START."""
        if self.state is not ServerState.WORKING or self._put is None:
            return
        self._offered = accept.offset
        self._digest = accept.digest
        self.state = ServerState.WAIT_START
        self.send(encode(FrameType.ACCEPT, accept.to_body()))
        self._drain()

    def send_done(self, done: Done) -> None:
        if self.state is ServerState.WORKING:
            self.send(encode(FrameType.DONE, done.to_body()))
            self._ready_again()

    def send_listing(self, listing: Listing) -> None:
        if self.state is ServerState.WORKING:
            self.send(encode(FrameType.LISTING, listing.to_body()))
            self._ready_again()

    def send_file_header(self, header: FileHeader) -> None:
        """FILE; the service has ``header.remaining`` raw bytes sent, then :meth:`send_file_end`."""
        if self.state is ServerState.WORKING:
            self.send(encode(FrameType.FILE, header.to_body()))

    def send_file_end(self, digest: Digest) -> None:
        if self.state is ServerState.WORKING:
            self.send(encode(FrameType.FILE_END, digest.to_body()))
            self._ready_again()

    # Engine side -----------------------------------------------------------------------

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        self.send(encode(FrameType.CHALLENGE, bytes([VERSION]) + self.nonce))

    def receive_data(self, data: bytes) -> None:
        state = self.state
        if state in (ServerState.CLOSED, ServerState.CHECKING):
            return
        if state is ServerState.RECEIVING and not self._buffer:
            # The common case of a big upload: pass the read on without a copy.
            take = min(self.remaining, len(data))
            self._receive_raw(data if take == len(data) else memoryview(data)[:take])
            data = data[take:]
        self._buffer += data
        self._drain()

    def get_buffer(self, sizehint: int) -> bytearray | memoryview:
        if self.state is ServerState.RECEIVING and self.remaining:
            self._lent = True
            return self.raw_buffer(self.remaining)  # never past the file's last byte
        # Frames (the engine has not switched back yet, or we failed): copied out.
        self._lent = False
        if self._scratch is None:
            self._scratch = bytearray(RAW_READ)
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        if not self._lent:
            assert self._scratch is not None
            self.receive_data(bytes(memoryview(self._scratch)[:nbytes]))
            return
        self._lent = False
        if self.state is not ServerState.RECEIVING:
            return  # failed meanwhile: the bytes have nowhere to go
        self.remaining -= nbytes
        self.raw_filled(nbytes)
        if self.remaining == 0:
            self._raw_done()

    def receive_eof(self) -> None:
        """The client is gone or done: close (an upload cut short is the service's to drop)."""
        self.state = ServerState.CLOSED
        self.close()

    def closing_notice(self, reason: str) -> None:
        self.send(encode(FrameType.ERROR, ErrorReport(ErrorCode.CLOSING, reason, True).to_body()))
        self.state = ServerState.CLOSED

    # Internals -------------------------------------------------------------------------

    def _ready_again(self) -> None:
        self.state = ServerState.READY
        self._put = None
        self._drain()

    def _receive_raw(self, data: bytes | memoryview) -> None:
        """Pass file bytes on (at most ``remaining``)."""
        if data:
            self.remaining -= len(data)
            self.data_received(data)
        if self.remaining == 0:
            self._raw_done()

    def _raw_done(self) -> None:
        self.state = ServerState.WAIT_END
        self.read_into(False)

    def _drain(self) -> None:
        """Handle what is buffered, as far as the state allows."""
        buffer = self._buffer
        while buffer:
            state = self.state
            if state is ServerState.RECEIVING:
                chunk = bytes(buffer[: self.remaining])
                del buffer[: len(chunk)]
                self._receive_raw(chunk)
                continue
            if state in (ServerState.CLOSED, ServerState.CHECKING, ServerState.WORKING):
                limit = self.max_frame + _LENGTH.size
                if state is ServerState.WORKING and len(buffer) > limit:
                    self.fail(ErrorCode.BAD_FRAME, "sent more than one request ahead of an answer")
                return
            limit = PREAUTH_MAX_FRAME if state is ServerState.AUTH else self.max_frame
            if len(buffer) < _LENGTH.size:
                return
            (length,) = _LENGTH.unpack_from(buffer)
            if length > limit:
                when = " before authentication" if state is ServerState.AUTH else ""
                self.fail(ErrorCode.FRAME_TOO_LARGE, f"frame larger than {limit} bytes{when}")
                return
            if len(buffer) < _LENGTH.size + length:
                return
            frame = bytes(buffer[_LENGTH.size : _LENGTH.size + length])
            del buffer[: _LENGTH.size + length]
            try:
                self._handle(frame)
            except FilesProtocolError as exc:
                if frame[:1] and frame[0] in _REQUESTS:
                    self.bad_request_received(frame[0], frame[1:], exc)
                if exc.fatal or self.state is not ServerState.READY:
                    self.fail(exc.code, str(exc))
                    return
                self.send(encode(FrameType.ERROR, ErrorReport(exc.code, str(exc), False).to_body()))

    def _handle(self, frame: bytes) -> None:
        if not frame:
            raise FilesProtocolError(ErrorCode.BAD_FRAME, "empty frame", fatal=True)
        kind, body = frame[0], frame[1:]
        state = self.state
        if state is ServerState.AUTH:
            if kind != FrameType.AUTH:
                raise FilesProtocolError(ErrorCode.AUTH_REQUIRED,
                                         "authenticate first: expected an AUTH frame", fatal=True)
            if len(body) != MAC_SIZE:
                raise FilesProtocolError(ErrorCode.AUTH_FAILED,
                                         f"an AUTH body is {MAC_SIZE} bytes", fatal=True)
            self.state = ServerState.CHECKING
            self._buffer.clear()
            self.auth_received(body)
            return
        if kind == FrameType.KEEPALIVE:
            return
        if state is ServerState.WAIT_START:
            if kind != FrameType.START:
                raise FilesProtocolError(ErrorCode.BAD_FRAME, "expected START after ACCEPT",
                                         fatal=True)
            offset = parse_start(body)
            if offset not in (0, self._offered):
                raise FilesProtocolError(
                    ErrorCode.BAD_REQUEST,
                    f"START offset must be 0 or the {self._offered} offered", fatal=True,
                )
            assert self._put is not None
            self.remaining = self._put.size - offset
            self.state = ServerState.RECEIVING if self.remaining else ServerState.WAIT_END
            self.start_received(offset)
            if self.state is ServerState.RECEIVING:
                self.read_into(True)
            return
        if state is ServerState.WAIT_END:
            if kind != FrameType.END:
                raise FilesProtocolError(ErrorCode.BAD_FRAME, "expected END after the file's bytes",
                                         fatal=True)
            digest = parse_digest(body, "END")
            if digest.name != self._digest:
                raise FilesProtocolError(
                    ErrorCode.BAD_REQUEST, f"END carries {digest.name}, but this upload's "
                    f"digest is {self._digest} (ACCEPT's digest)", fatal=True,
                )
            self.state = ServerState.WORKING
            self.end_received(digest)
            return
        # READY
        if kind == FrameType.PUT:
            request = PutRequest.from_body(body)
            self._put = request
            self.state = ServerState.WORKING
            self.put_received(request)
        elif kind == FrameType.GET:
            get = GetRequest.from_body(body)
            self.state = ServerState.WORKING
            self.get_received(get)
        elif kind == FrameType.LIST:
            listing = ListRequest.from_body(body)
            self.state = ServerState.WORKING
            self.list_received(listing)
        elif kind == FrameType.DELETE:
            delete = DeleteRequest.from_body(body)
            self.state = ServerState.WORKING
            self.delete_received(delete)
        elif kind == FrameType.AUTH:
            raise FilesProtocolError(ErrorCode.BAD_FRAME, "already authenticated", fatal=True)
        else:
            raise FilesProtocolError(ErrorCode.BAD_FRAME,
                                     f"unexpected frame type 0x{kind:02x}", fatal=True)


_REQUESTS = frozenset({FrameType.PUT, FrameType.GET, FrameType.LIST, FrameType.DELETE})
