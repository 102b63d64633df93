"""The files protocol's wire: frame types, error codes, requests and their bodies.

Control messages are typed frames in the length-prefixed framing of
:mod:`sockhub.codec.lenprefix` (uint32 length, a type byte, a body), as in
the exec protocol; a file's contents are *not* framed: after the frame that
announces them (START from a client, FILE from the server) exactly
``size - offset`` raw bytes follow. That is what lets a sender hand the
file to the kernel (``sendfile``) instead of copying it through user space
in chunks. docs/files-protocol.md is the byte-exact specification.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from sockhub.codec.lenprefix import encode_frame
from sockhub.errors import CodedProtocolError, ProtocolError
from sockhub.protocols import challenge
from sockhub.protocols.files import digests as dg
from sockhub.protocols.files.digests import SHA256

#: Mixed into the login answer: an answer made for exec is no answer here.
LABEL = b"sockhub-files-v1"
VERSION = 1
#: The largest frame accepted before authentication (an AUTH frame is 33).
PREAUTH_MAX_FRAME = 64
#: The largest control frame after login: requests are small JSON objects.
MAX_CONTROL_FRAME = 64 * 1024
#: A name is at most this many bytes of UTF-8 (Linux's PATH_MAX).
MAX_NAME_BYTES = 4096
#: One path component is at most this many bytes (NAME_MAX).
MAX_COMPONENT_BYTES = 255
#: The largest size the protocol can announce (an off_t).
MAX_SIZE = 2**63 - 1

_HEADER = struct.Struct("!IB")


class FrameType(enum.IntEnum):
    """The first byte of every frame's payload."""

    # client -> server
    AUTH = 0x01
    PUT = 0x02
    START = 0x03
    END = 0x04
    GET = 0x05
    LIST = 0x06
    DELETE = 0x07
    KEEPALIVE = 0x08
    # server -> client
    CHALLENGE = 0x81
    READY = 0x82
    ACCEPT = 0x83
    FILE = 0x84
    FILE_END = 0x85
    ERROR = 0x86
    LISTING = 0x87
    DONE = 0x88


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ERROR frame; docs/files-protocol.md says when each is sent."""

    AUTH_REQUIRED = "auth_required"
    AUTH_FAILED = "auth_failed"
    AUTH_TIMEOUT = "auth_timeout"
    RATE_LIMITED = "rate_limited"
    FRAME_TOO_LARGE = "frame_too_large"
    BAD_FRAME = "bad_frame"
    BAD_REQUEST = "bad_request"
    BAD_NAME = "bad_name"
    NOT_FOUND = "not_found"
    EXISTS = "exists"
    IS_DIRECTORY = "is_directory"
    READ_ONLY = "read_only"
    TOO_LARGE = "too_large"
    QUOTA = "quota"
    BUSY = "busy"
    RESUME_MISMATCH = "resume_mismatch"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    IO_ERROR = "io_error"
    CLOSING = "closing"
    REFUSED = "refused"


class FilesProtocolError(CodedProtocolError[ErrorCode]):
    """A peer broke the protocol or asked for something refused; carries the ERROR to send."""


def compute_answer(token: bytes, nonce: bytes) -> bytes:
    """The client's answer to a CHALLENGE (shared scheme, this protocol's label)."""
    return challenge.compute_answer(LABEL, token, nonce)


def verify_answer(token: bytes, nonce: bytes, answer: bytes) -> bool:
    """Check an answer in constant time."""
    return challenge.verify_answer(LABEL, token, nonce, answer)


# --- Names ---------------------------------------------------------------------------


def check_name(name: object, *, allow_root: bool = False) -> tuple[str, ...]:
    """A request's name as its path components, or FilesProtocolError(BAD_NAME).

    Only what can be decided from the text: relative, ``/``-separated, no
    empty, ``.`` or ``..`` component, no NUL or other control character,
    valid Unicode, within NAME_MAX and PATH_MAX. Symbolic links, devices and
    the like are the service's to check on the filesystem. ``allow_root``
    accepts ``""`` (LIST of the root itself).
    """
    if not isinstance(name, str):
        raise FilesProtocolError(ErrorCode.BAD_NAME, "name must be a string")
    if name == "" and allow_root:
        return ()
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise FilesProtocolError(ErrorCode.BAD_NAME, "name is not valid Unicode") from None
    if not name:
        raise FilesProtocolError(ErrorCode.BAD_NAME, "name is empty")
    if len(encoded) > MAX_NAME_BYTES:
        raise FilesProtocolError(ErrorCode.BAD_NAME, f"name is longer than {MAX_NAME_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise FilesProtocolError(ErrorCode.BAD_NAME, "name contains a NUL or control character")
    if name.startswith("/"):
        raise FilesProtocolError(ErrorCode.BAD_NAME, "name is absolute; names are relative "
                                 "to the server's root")
    parts = tuple(name.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise FilesProtocolError(
                ErrorCode.BAD_NAME, f"name has an empty, '.' or '..' component: {name!r}"
            )
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise FilesProtocolError(
                ErrorCode.BAD_NAME, f"a component of the name is longer than "
                f"{MAX_COMPONENT_BYTES} bytes"
            )
    return parts


# --- Messages --------------------------------------------------------------------------


def _json_body(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise FilesProtocolError(ErrorCode.BAD_REQUEST, f"{what} is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise FilesProtocolError(
            ErrorCode.BAD_REQUEST, f"{what} is not valid JSON: {exc}"
        ) from None
    if not isinstance(obj, dict):
        raise FilesProtocolError(ErrorCode.BAD_REQUEST, f"{what} must be a JSON object")
    return obj


def _field(obj: dict[str, Any], key: str, kind: type, default: Any = ..., what: str = "") -> Any:
    if key not in obj:
        if default is ...:
            raise FilesProtocolError(ErrorCode.BAD_REQUEST, f"{what}: {key} is missing")
        return default
    value = obj[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise FilesProtocolError(ErrorCode.BAD_REQUEST, f"{what}: {key} must be an integer")
    if kind is not int and not isinstance(value, kind):
        raise FilesProtocolError(ErrorCode.BAD_REQUEST, f"{what}: {key} must be a {kind.__name__}")
    return value


def _sha(obj: dict[str, Any], key: str, what: str, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not dg.HEX.fullmatch(value):
        raise FilesProtocolError(
            ErrorCode.BAD_REQUEST, f"{what}: {key} must be 64 lower-case hex digits"
        )
    return value


def _offer(obj: dict[str, Any], what: str) -> tuple[str, ...] | None:
    """A request's ``digests``: the names the client offers (unknown ones kept, never picked)."""
    if "digests" not in obj:
        return None
    value = obj["digests"]
    if (not isinstance(value, list) or not 1 <= len(value) <= dg.MAX_OFFER
            or not all(isinstance(n, str) and dg.NAME.fullmatch(n) for n in value)):
        raise FilesProtocolError(
            ErrorCode.BAD_REQUEST, f"{what}: digests must be a list of 1 to "
            f"{dg.MAX_OFFER} digest names (lower-case letters, digits, - and _)"
        )
    return tuple(value)


def _digest_member(obj: dict[str, Any], what: str) -> tuple[str, str]:
    """END and FILE_END: one member, named after the digest, holding its hex value."""
    if len(obj) != 1 or next(iter(obj)) not in dg.DIGESTS:
        raise FilesProtocolError(
            ErrorCode.BAD_REQUEST,
            f"{what} must hold exactly one member, named after the transfer's digest "
            f"({' or '.join(dg.DIGESTS)})",
        )
    name = next(iter(obj))
    value = _sha(obj, name, what)
    assert value is not None
    return name, value


def _known(obj: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = set(obj) - allowed
    if unknown:
        # Refused, not ignored: a client asking for an option must not think it got it.
        raise FilesProtocolError(
            ErrorCode.BAD_REQUEST, f"unknown field(s) in {what}: {', '.join(sorted(unknown))}"
        )


@dataclass(frozen=True, slots=True)
class PutRequest:
    """PUT: store ``size`` bytes under ``name`` with permission bits ``mode``."""

    name: str
    size: int
    mode: int = 0o644
    force: bool = False
    resume: bool = False
    #: The digests the client offers, most wanted first; None (not sent): SHA-256.
    digests: tuple[str, ...] | None = None

    def to_body(self) -> bytes:
        obj: dict[str, Any] = {"name": self.name, "size": self.size, "mode": self.mode,
                               "force": self.force, "resume": self.resume}
        if self.digests is not None:
            obj["digests"] = list(self.digests)
        return _json_body(obj)

    @classmethod
    def from_body(cls, body: bytes) -> PutRequest:
        obj = _json_object(body, "PUT")
        _known(obj, {"name", "size", "mode", "force", "resume", "digests"}, "PUT")
        check_name(obj.get("name"))
        size = _field(obj, "size", int, what="PUT")
        if not 0 <= size <= MAX_SIZE:
            raise FilesProtocolError(ErrorCode.BAD_REQUEST, "PUT: size out of range")
        mode = _field(obj, "mode", int, 0o644, "PUT")
        if not 0 <= mode <= 0o777:
            raise FilesProtocolError(ErrorCode.BAD_REQUEST, "PUT: mode must be within 0..0o777")
        return cls(obj["name"], size, mode, _field(obj, "force", bool, False, "PUT"),
                   _field(obj, "resume", bool, False, "PUT"), _offer(obj, "PUT"))


@dataclass(frozen=True, slots=True)
class Accept:
    """ACCEPT: the server takes the PUT; ``offset`` bytes are already there (resume)."""

    offset: int = 0
    #: The digest of those ``offset`` bytes, for the client to compare with its own.
    prefix: str | None = None
    #: The digest the server picked for this transfer (END, DONE, the prefix).
    digest: str = SHA256

    def to_body(self) -> bytes:
        return _json_body({"offset": self.offset, "digest": self.digest,
                           f"prefix_{self.digest}": self.prefix})


@dataclass(frozen=True, slots=True)
class GetRequest:
    """GET: send ``name`` from ``offset``; ``prefix`` proves the client's part.

    ``prefix`` is in ``digest``, the digest the server picks from the offer
    (a client works it out from READY: :func:`.digests.pick`); on the wire
    it is the member ``prefix_<digest>``.
    """

    name: str
    offset: int = 0
    prefix: str | None = None
    #: The digests the client offers, most wanted first; None (not sent): SHA-256.
    digests: tuple[str, ...] | None = None
    digest: str = SHA256

    def to_body(self) -> bytes:
        obj: dict[str, Any] = {"name": self.name, "offset": self.offset,
                               f"prefix_{self.digest}": self.prefix}
        if self.digests is not None:
            obj["digests"] = list(self.digests)
        return _json_body(obj)

    @classmethod
    def from_body(cls, body: bytes, ours: tuple[str, ...] = dg.DIGESTS) -> GetRequest:
        """Parse, and pick the digest from ``ours`` (the server's, in its order)."""
        obj = _json_object(body, "GET")
        prefixes = {f"prefix_{n}" for n in dg.DIGESTS}
        _known(obj, {"name", "offset", "digests"} | prefixes, "GET")
        check_name(obj.get("name"))
        offset = _field(obj, "offset", int, 0, "GET")
        if not 0 <= offset <= MAX_SIZE:
            raise FilesProtocolError(ErrorCode.BAD_REQUEST, "GET: offset out of range")
        offer = _offer(obj, "GET")
        digest = dg.pick(offer, ours)
        key = f"prefix_{digest}"
        stray = sorted(k for k in prefixes & set(obj) if k != key and obj[k] is not None)
        if stray:
            raise FilesProtocolError(
                ErrorCode.BAD_REQUEST, f"GET: {stray[0]} given, but this transfer's digest "
                f"is {digest}: send {key}"
            )
        prefix = _sha(obj, key, "GET", optional=True)
        if offset and prefix is None:
            raise FilesProtocolError(
                ErrorCode.BAD_REQUEST, f"GET: an offset needs the {key} of those bytes"
            )
        return cls(obj["name"], offset, prefix, offer, digest)


@dataclass(frozen=True, slots=True)
class ListRequest:
    """LIST: the entries of a directory (``""`` is the root), or every file below it."""

    path: str = ""
    recursive: bool = False

    def to_body(self) -> bytes:
        return _json_body({"path": self.path, "recursive": self.recursive})

    @classmethod
    def from_body(cls, body: bytes) -> ListRequest:
        obj = _json_object(body, "LIST")
        _known(obj, {"path", "recursive"}, "LIST")
        path = obj.get("path", "")
        check_name(path, allow_root=True)
        return cls(path, _field(obj, "recursive", bool, False, "LIST"))


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """DELETE: remove the file ``name`` (never a directory tree)."""

    name: str

    def to_body(self) -> bytes:
        return _json_body({"name": self.name})

    @classmethod
    def from_body(cls, body: bytes) -> DeleteRequest:
        obj = _json_object(body, "DELETE")
        _known(obj, {"name"}, "DELETE")
        check_name(obj.get("name"))
        return cls(obj["name"])


@dataclass(frozen=True, slots=True)
class Ready:
    """READY: logged in; what this server allows."""

    version: int = VERSION
    read_only: bool = False
    max_size: int | None = None
    idle_timeout: float | None = None
    #: The digests the server has, in its order of preference; None (not sent): SHA-256 only,
    #: and the client must not offer any.
    digests: tuple[str, ...] | None = dg.DIGESTS

    def to_body(self) -> bytes:
        obj: dict[str, Any] = {"version": self.version, "read_only": self.read_only,
                               "max_size": self.max_size, "idle_timeout": self.idle_timeout}
        if self.digests is not None:
            obj["digests"] = list(self.digests)
        return _json_body(obj)


@dataclass(frozen=True, slots=True)
class FileHeader:
    """FILE: ``size - offset`` raw bytes of ``name`` follow this frame."""

    name: str
    size: int
    mode: int
    offset: int = 0
    #: The digest of FILE_END, picked from the GET's offer.
    digest: str = SHA256

    def to_body(self) -> bytes:
        return _json_body({"name": self.name, "size": self.size, "mode": self.mode,
                           "offset": self.offset, "digest": self.digest})

    @property
    def remaining(self) -> int:
        return self.size - self.offset


@dataclass(frozen=True, slots=True)
class Digest:
    """END (client) or FILE_END (server): the whole file's digest, as ``{name: hex}``."""

    hex: str
    name: str = SHA256

    def to_body(self) -> bytes:
        return _json_body({self.name: self.hex})


@dataclass(frozen=True, slots=True)
class Entry:
    """One LISTING entry."""

    name: str
    type: str  # "file", "dir" or "other"
    size: int
    mode: int
    mtime: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "size": self.size, "mode": self.mode,
                "mtime": self.mtime}


@dataclass(frozen=True, slots=True)
class Listing:
    """LISTING: the entries asked for, sorted by name."""

    entries: tuple[Entry, ...] = ()
    truncated: bool = False

    def to_body(self) -> bytes:
        return _json_body({"entries": [e.to_json() for e in self.entries],
                           "truncated": self.truncated})


@dataclass(frozen=True, slots=True)
class Done:
    """DONE: a PUT stored and verified (its digest as ``{digest: hex}``), or a DELETE done."""

    name: str
    size: int = 0
    hex: str | None = None
    offset: int = 0  # bytes of a PUT that were already there (resume)
    digest: str = SHA256

    def to_body(self) -> bytes:
        return _json_body({"name": self.name, "size": self.size, "offset": self.offset,
                           "digest": self.digest, self.digest: self.hex})


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """ERROR: ``code`` for programs, ``message`` for people."""

    code: str
    message: str
    fatal: bool

    def to_body(self) -> bytes:
        return _json_body({"code": self.code, "message": self.message, "fatal": self.fatal})


@dataclass(frozen=True, slots=True)
class Challenge:
    """CHALLENGE: protocol version and this connection's nonce."""

    version: int
    nonce: bytes = field(repr=False)


ServerEvent = (Challenge | Ready | Accept | FileHeader | Digest | ErrorReport | Listing
               | Done)


def encode(frame_type: FrameType, body: bytes = b"") -> bytes:
    """One frame: length, type byte, body."""
    return encode_frame(bytes([frame_type]) + body)


def parse_start(body: bytes) -> int:
    obj = _json_object(body, "START")
    offset = _field(obj, "offset", int, what="START")
    if offset < 0:
        raise FilesProtocolError(ErrorCode.BAD_REQUEST, "START: offset is negative")
    return int(offset)


def parse_digest(body: bytes, what: str) -> Digest:
    """END or FILE_END: ``{"<digest>": "<hex>"}`` with one of :data:`.digests.DIGESTS`."""
    name, value = _digest_member(_json_object(body, what), what)
    return Digest(value, name)


def _names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise ValueError("digests must be a list of names")
    return tuple(value)


def _parse_entry(obj: Any) -> Entry:
    if not isinstance(obj, dict):
        raise ValueError("a LISTING entry is not an object")
    return Entry(str(obj["name"]), str(obj["type"]), int(obj["size"]), int(obj["mode"]),
                 float(obj["mtime"]))


def parse_server_frame(frame: bytes) -> ServerEvent:
    """Decode one server frame for a client.

    Raises:
        ProtocolError: an empty or unknown frame, or a malformed body.
    """
    if not frame:
        raise ProtocolError("empty frame from server")
    kind, body = frame[0], frame[1:]
    try:
        if kind == FrameType.CHALLENGE:
            if len(body) != 1 + challenge.NONCE_SIZE:
                raise ValueError("a CHALLENGE is a version byte and a 32-byte nonce")
            return Challenge(body[0], body[1:])
        if kind == FrameType.FILE_END:
            return parse_digest(body, "FILE_END")
        obj = _json_object(body, f"frame 0x{kind:02x}")
        if kind == FrameType.READY:
            max_size = obj.get("max_size")
            return Ready(int(obj.get("version", VERSION)), bool(obj.get("read_only")),
                         None if max_size is None else int(max_size), obj.get("idle_timeout"),
                         _names(obj.get("digests")))
        if kind == FrameType.ACCEPT:
            digest = str(obj.get("digest", SHA256))
            return Accept(int(obj.get("offset", 0)),
                          _sha(obj, f"prefix_{digest}", "ACCEPT", optional=True), digest)
        if kind == FrameType.FILE:
            header = FileHeader(str(obj["name"]), int(obj["size"]), int(obj["mode"]),
                                int(obj.get("offset", 0)), str(obj.get("digest", SHA256)))
            if not 0 <= header.offset <= header.size <= MAX_SIZE:
                raise ValueError("FILE: offset and size out of range")
            return header
        if kind == FrameType.ERROR:
            return ErrorReport(str(obj.get("code", "")), str(obj.get("message", "")),
                               bool(obj.get("fatal")))
        if kind == FrameType.LISTING:
            return Listing(tuple(_parse_entry(e) for e in obj["entries"]),
                           bool(obj.get("truncated")))
        if kind == FrameType.DONE:
            digest = str(obj.get("digest", SHA256))
            return Done(str(obj["name"]), int(obj.get("size", 0)), obj.get(digest),
                        int(obj.get("offset", 0)), digest)
    except (FilesProtocolError, ValueError, TypeError, KeyError) as exc:
        raise ProtocolError(f"malformed frame 0x{kind:02x} from server: {exc}") from None
    raise ProtocolError(f"unknown frame type 0x{kind:02x} from server")


def frame_header(frame_type: FrameType, body_size: int) -> bytes:
    """Length and type of a frame whose body follows as a separate buffer."""
    return _HEADER.pack(body_size + 1, frame_type)
