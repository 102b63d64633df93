"""The files client: ``sockhub send/get/ls/rm`` (docs/files-protocol.md).

Blocking sockets, one request at a time, which is all the protocol asks:
uploads go out with ``socket.sendfile`` (zero-copy on a plain socket) while
a second thread hashes the same file for the END frame, so the hash costs
a core, not time; a download into a file is read with ``recv_into`` into
a few reused buffers that a second thread hashes and writes meanwhile
(:class:`~sockhub.hashwrite.HashWriter`, as the server's upload does).

Nothing becomes visible before it is verified, here as on the server: a
download is written to a part file beside its target and renamed into
place only when its size and digest match; ``resume`` continues such a
part after the server has checked its digest.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import ssl
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sockhub.errors import ProtocolError, SockhubError
from sockhub.hashwrite import HashWriter
from sockhub.protocols.files import (
    Accept,
    Challenge,
    ClientDecoder,
    DeleteRequest,
    Digest,
    Done,
    Entry,
    ErrorReport,
    FileHeader,
    FrameType,
    GetRequest,
    Listing,
    ListRequest,
    PutRequest,
    RawData,
    Ready,
    ServerEvent,
    compute_answer,
    digests,
    encode,
)

#: Exit statuses of ``sockhub send/get/ls/rm`` (docs/files-protocol.md).
EXIT_OK = 0
EXIT_INTEGRITY = 1  # size or digest mismatch, a resume base that differs
EXIT_USAGE = 2  # bad usage, a token file or local file that cannot be read
EXIT_NOT_FOUND = 3
EXIT_EXISTS = 4  # the target exists; --force replaces it
EXIT_REFUSED = 5  # read-only, too large, quota, a refused name, a directory, busy
EXIT_CONNECTION = 255  # cannot connect, login refused, the connection broke

_EXIT_BY_CODE = {
    "checksum_mismatch": EXIT_INTEGRITY, "resume_mismatch": EXIT_INTEGRITY,
    "not_found": EXIT_NOT_FOUND, "exists": EXIT_EXISTS,
    "read_only": EXIT_REFUSED, "too_large": EXIT_REFUSED, "quota": EXIT_REFUSED,
    "bad_name": EXIT_REFUSED, "is_directory": EXIT_REFUSED, "busy": EXIT_REFUSED,
}
#: A download's part file beside its target.
PART_SUFFIX = ".sockhub-part"
RECV_BUFFER = 1024 * 1024
HASH_CHUNK = 1024 * 1024

Progress = Callable[[int], None]


class FilesError(SockhubError):
    """A refusal or failure, with the exit status the command line uses."""

    def __init__(self, code: str, message: str, *, exit_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.exit_status = (exit_status if exit_status is not None
                            else _EXIT_BY_CODE.get(code, EXIT_CONNECTION))


def _error(report: ErrorReport) -> FilesError:
    return FilesError(report.code, f"server: {report.message} ({report.code})")


def hash_of(fd: int, count: int, offset: int = 0, name: str = digests.SHA256) -> str:
    """The digest ``name`` of ``count`` bytes of ``fd`` from ``offset``, read into one buffer.

    Not ``mmap``: a file truncated meanwhile would kill us with SIGBUS, where
    a short read here just gives a hash the server will refuse.
    """
    digest = digests.new(name)
    buffer = memoryview(bytearray(HASH_CHUNK))
    position, end = offset, offset + count
    while position < end:
        got = os.preadv(fd, [buffer[:min(HASH_CHUNK, end - position)]], position)
        if not got:
            break
        digest.update(buffer[:got])
        position += got
    return digest.hexdigest()


@dataclass(frozen=True)
class Result:
    """A finished transfer."""

    name: str
    size: int
    hash: str
    offset: int = 0  # bytes that were already there (resume)
    digest: str = digests.SHA256


#: What ``digest`` may be: offer every digest (the server picks), or only one.
DIGEST_CHOICES = ("auto", digests.BLAKE3, digests.SHA256)


class FilesClient:
    """One authenticated connection to a files server.

    ``digest`` is what the client offers: ``"auto"`` every digest it has
    (the server picks, BLAKE3 from a server that has it), or one name to
    insist on (a server without it is refused here, before any transfer;
    ``"sha256"`` is what every server has). A server that lists no digests
    in READY (an older one) gets no offer and uses SHA-256.
    """

    def __init__(self, sock: socket.socket, token: bytes, *, timeout: float = 10.0,
                 digest: str = "auto") -> None:
        if digest not in DIGEST_CHOICES:
            raise ValueError(f"digest must be one of {', '.join(DIGEST_CHOICES)}")
        if digest != "auto" and digest not in digests.DIGESTS:
            raise FilesError("digest", f"{digest} is not available here (the {digest} "
                             "package is not installed): use sha256 or auto",
                             exit_status=EXIT_USAGE)
        self.sock = sock
        self.decoder = ClientDecoder()
        self._events: list[ServerEvent | RawData] = []
        self._buffer = bytearray(RECV_BUFFER)
        self.timeout = timeout
        self.ready = self._login(token)
        #: The ``digests`` member of PUT and GET (None: not sent), and the server's pick.
        self.offer: tuple[str, ...] | None = None
        self.digest = digests.SHA256
        if self.ready.digests is not None:
            self.offer = digests.DIGESTS if digest == "auto" else (digest,)
            self.digest = digests.pick(self.offer, self.ready.digests)
        if digest != "auto" and self.digest != digest:
            raise FilesError("digest", f"the server cannot use {digest} (it has "
                             f"{', '.join(self.ready.digests or (digests.SHA256,))})",
                             exit_status=EXIT_REFUSED)

    @classmethod
    def connect(cls, host: str, port: int, *, token: bytes, tls: ssl.SSLContext | None = None,
                server_hostname: str | None = None, timeout: float = 10.0,
                digest: str = "auto") -> FilesClient:
        """Connect and log in.

        Raises:
            FilesError: cannot connect, or the login was refused.
        """
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=server_hostname or host)
        except (OSError, ssl.SSLError) as exc:
            raise FilesError("connection", f"cannot connect to {host}:{port}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from exc
        try:
            return cls(sock, token, timeout=timeout, digest=digest)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> FilesClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The wire ------------------------------------------------------------------------

    def _send(self, kind: FrameType, body: bytes = b"") -> None:
        try:
            self.sock.sendall(encode(kind, body))
        except OSError as exc:
            raise FilesError("connection", f"connection lost: {exc}") from exc

    def _next(self) -> ServerEvent | RawData:
        while not self._events:
            try:
                count = self.sock.recv_into(self._buffer)
            except (OSError, TimeoutError) as exc:
                raise FilesError("connection", f"connection lost: {exc}") from exc
            if not count:
                raise FilesError("connection", "the server closed the connection")
            try:
                self._events = self.decoder.feed(bytes(memoryview(self._buffer)[:count]))
            except ProtocolError as exc:
                raise FilesError("protocol", str(exc)) from exc
        return self._events.pop(0)

    def _expect(self, *kinds: type) -> ServerEvent:
        event = self._next()
        if isinstance(event, ErrorReport):
            raise _error(event)
        if not isinstance(event, kinds):
            raise FilesError("protocol", f"unexpected answer from server: {type(event).__name__}")
        assert not isinstance(event, RawData)
        return event

    def _login(self, token: bytes) -> Ready:
        challenge = self._expect(Challenge)
        assert isinstance(challenge, Challenge)
        if challenge.version != 1:
            raise FilesError("protocol", f"server speaks version {challenge.version}, not 1")
        self._send(FrameType.AUTH, compute_answer(token, challenge.nonce))
        try:
            ready = self._expect(Ready)
        except FilesError as exc:
            exc.exit_status = EXIT_CONNECTION
            raise
        assert isinstance(ready, Ready)
        return ready

    # Requests ------------------------------------------------------------------------

    def put(self, source: BinaryIO, name: str, *, force: bool = False, resume: bool = False,
            mode: int | None = None, progress: Progress | None = None) -> Result:
        """Upload an open regular file as ``name``.

        Raises:
            FilesError: refused, or the server found a mismatch.
        """
        fd = source.fileno()
        st = os.fstat(fd)
        size = st.st_size
        mode = stat.S_IMODE(st.st_mode) if mode is None else mode
        self._send(FrameType.PUT,
                   PutRequest(name, size, mode, force, resume, self.offer).to_body())
        accept = self._expect(Accept)
        assert isinstance(accept, Accept)
        algo = self._check_pick(accept.digest)
        offset = 0
        if (accept.offset and accept.offset <= size
                and hash_of(fd, accept.offset, 0, algo) == accept.prefix):
            offset = accept.offset
        self._send(FrameType.START, b'{"offset":%d}' % offset)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            whole = pool.submit(hash_of, fd, size, 0, algo)
            self._send_region(source, offset, size - offset, progress)
            sha = whole.result()
        self._send(FrameType.END, Digest(sha, algo).to_body())
        done = self._expect(Done)
        assert isinstance(done, Done)
        if done.hex != sha or done.size != size or done.digest != algo:
            raise FilesError("checksum_mismatch", f"{name}: the server stored something else")
        return Result(name, size, sha, offset, algo)

    def _check_pick(self, algo: str) -> str:
        """The server's pick must be what READY and our offer say it is."""
        if algo != self.digest:
            raise FilesError("protocol", f"the server picked the digest {algo!r}, not "
                             f"{self.digest!r} as READY and our offer say")
        return algo

    def _send_region(self, source: BinaryIO, offset: int, count: int,
                     progress: Progress | None) -> None:
        sent = 0
        if count == 0:
            return
        try:
            if progress is None and not isinstance(self.sock, ssl.SSLSocket):
                sent = self.sock.sendfile(source, offset, count)
            else:
                source.seek(offset)
                while sent < count:
                    step = min(4 * 1024 * 1024, count - sent)
                    done = self.sock.sendfile(source, offset + sent, step)
                    if not done:
                        break
                    sent += done
                    if progress is not None:
                        progress(sent)
        except OSError as exc:
            raise FilesError("connection", f"connection lost: {exc}") from exc
        if sent != count:
            raise FilesError("io_error", f"the file changed while being sent ({sent} of "
                             f"{count} bytes)", exit_status=EXIT_INTEGRITY)

    def get(self, name: str, out: Path | None, *, force: bool = False, resume: bool = False,
            progress: Progress | None = None, stdout: BinaryIO | None = None) -> Result:
        """Download ``name`` into ``out`` (verified, then renamed into place), or to ``stdout``.

        Raises:
            FilesError: refused, a local problem, or a mismatch (nothing visible then).
        """
        if out is not None and out.exists() and not force:
            raise FilesError("exists", f"{out} exists; use --force to replace it")
        part = None if out is None else out.with_name("." + out.name + PART_SUFFIX)
        offset, prefix = 0, None
        fd = None
        if part is not None:
            out_dir = part.parent
            out_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            have = os.fstat(fd).st_size
            if resume and have:
                offset, prefix = have, hash_of(fd, have, 0, self.digest)
            else:
                os.ftruncate(fd, 0)
        try:
            self._send(FrameType.GET,
                       GetRequest(name, offset, prefix, self.offer, self.digest).to_body())
            header = self._expect(FileHeader)
            assert isinstance(header, FileHeader)
            algo = self._check_pick(header.digest)
            digest = digests.new(algo)
            if offset and fd is not None:
                # Hash the part again only if it was kept: the server agreed it matches.
                digest = _hash_prefix(fd, offset, algo)
            received = 0
            if fd is not None:
                os.lseek(fd, offset, os.SEEK_SET)
                digest = self._receive_into(fd, digest, header.remaining, offset, progress)
                received = header.remaining
            while received < header.remaining:
                event = self._next()
                if not isinstance(event, RawData):
                    raise FilesError("protocol", "the server's FILE ended early")
                data = event.data
                digest.update(data)
                if fd is not None:
                    _write_all(fd, data)
                else:
                    assert stdout is not None
                    stdout.write(data)
                received += len(data)
                if progress is not None:
                    progress(offset + received)
            end = self._expect(Digest)
            assert isinstance(end, Digest)
            sha = digest.hexdigest()
            if sha != end.hex or end.name != algo:
                if part is not None:
                    os.unlink(part)
                raise FilesError("checksum_mismatch",
                                 f"{name}: {algo} of what arrived is {sha}, the server's "
                                 f"{end.name} is {end.hex}; nothing kept")
            if fd is not None and out is not None and part is not None:
                os.fchmod(fd, header.mode & 0o777)
                os.replace(part, out)
            return Result(name, header.size, sha, offset, algo)
        finally:
            if fd is not None:
                os.close(fd)

    def _receive_into(self, fd: int, digest: digests.Hasher, count: int, offset: int,
                      progress: Progress | None) -> digests.Hasher:
        """The FILE's ``count`` raw bytes into ``fd``, hashed: received here, written on a thread.

        Bytes already decoded with the FILE frame go first; the rest is read
        straight into the :class:`HashWriter`'s buffers, past the decoder.
        What arrived is written even when the connection breaks, so a resume
        continues from all of it.
        """
        writer = HashWriter(fd, digest)
        received = 0
        try:
            while received < count and self._events:
                event = self._events.pop(0)
                if not isinstance(event, RawData):
                    raise FilesError("protocol", "the server's FILE ended early")
                writer.put(event.data, len(event.data))
                received += len(event.data)
            if progress is not None and received:
                progress(offset + received)
            while received < count:
                buffer = writer.take()
                view = memoryview(buffer)[:min(len(buffer), count - received)]
                filled = 0
                try:
                    while filled < len(view):
                        got = self.sock.recv_into(view[filled:])
                        if not got:
                            raise FilesError("connection", "the server closed the connection")
                        filled += got
                finally:
                    writer.put(buffer, filled)  # kept, and the buffer comes back
                    self.decoder.raw_taken(filled)
                received += filled
                if writer.error is not None:
                    break
                if progress is not None:
                    progress(offset + received)
            writer.finish()
        except (OSError, TimeoutError) as exc:
            if writer.error is not None:
                raise FilesError("io_error", f"cannot write the download: {writer.error}",
                                 exit_status=EXIT_USAGE) from exc
            raise FilesError("connection", f"connection lost: {exc}") from exc
        finally:
            writer.close()
        return digest

    def list(self, path: str = "", *, recursive: bool = False) -> Listing:
        self._send(FrameType.LIST, ListRequest(path, recursive).to_body())
        listing = self._expect(Listing)
        assert isinstance(listing, Listing)
        return listing

    def delete(self, name: str) -> Done:
        self._send(FrameType.DELETE, DeleteRequest(name).to_body())
        done = self._expect(Done)
        assert isinstance(done, Done)
        return done


def _hash_prefix(fd: int, count: int, name: str) -> digests.Hasher:
    digest = digests.new(name)
    position = 0
    while position < count:
        chunk = os.pread(fd, min(HASH_CHUNK, count - position), position)
        if not chunk:
            break
        digest.update(chunk)
        position += len(chunk)
    return digest


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def walk_files(root: Path) -> Iterator[tuple[Path, str]]:
    """Every regular file below ``root`` with its name relative to it, sorted."""
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                yield path, path.relative_to(root).as_posix()


def spool(stream: BinaryIO) -> BinaryIO:
    """Standard input copied to an unnamed temporary file: PUT needs a size first."""
    temp = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
    while chunk := stream.read(RECV_BUFFER):
        temp.write(chunk)
    temp.flush()
    temp.seek(0)
    return temp


__all__ = ["EXIT_CONNECTION", "EXIT_EXISTS", "EXIT_INTEGRITY", "EXIT_NOT_FOUND", "EXIT_OK",
           "EXIT_REFUSED", "EXIT_USAGE", "Entry", "FilesClient", "FilesError", "Result",
           "spool", "walk_files"]
