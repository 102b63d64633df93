"""The files service: a root directory served to token holders, verified and resumable.

:class:`FilesService` is the runtime (settings, token and login gate, the
uploads in progress); :class:`FilesDoor` is one client: the sans-I/O
:class:`~sockhub.protocols.files.FilesServerProtocol` with the policy and the
file I/O filled in. The login is exec's (``services/login.py``); the wire is
docs/files-protocol.md.

* **Nothing visible until verified.** An upload is written to a part file
  beside its target (mode 0600), hashed and written as it arrives on two
  worker threads (``files_sink.py``: the loop receives into buffers the
  sink lends and gets back from them), and renamed into place only
  when its size and digest (BLAKE3 or SHA-256, as negotiated:
  ``protocols/files/digests.py``) match; an interrupted upload leaves only
  its part, which a ``resume`` continues after both sides compared the
  digest of what is there.
* **Zero-copy downloads.** The door hands the engine a file region
  (``Protocol.send_file``); the engine gives it to the kernel
  (``loop.sendfile``) while a worker thread hashes the same file for the
  FILE_END frame, on another core.
* **One audit line per transfer**, whatever its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sockhub.engine.service import Listener
from sockhub.errors import ConfigError
from sockhub.protocols.base import ConnectionInfo, FileRegion
from sockhub.protocols.challenge import NONCE_SIZE
from sockhub.protocols.files import (
    Accept,
    DeleteRequest,
    Digest,
    Done,
    ErrorCode,
    FileHeader,
    FilesProtocolError,
    FilesServerProtocol,
    GetRequest,
    Listing,
    ListRequest,
    PutRequest,
    Ready,
    check_name,
    digests,
    verify_answer,
)
from sockhub.services import files_store as store
from sockhub.services.files_settings import FilesSettings
from sockhub.services.files_sink import UploadSink
from sockhub.services.login import DoorLogin, LoginGate, check_exposure, load_token

if TYPE_CHECKING:
    from sockhub.config import ServiceConfig
    from sockhub.limits import Limits

log = logging.getLogger("sockhub.files")

TOKEN_NAME = "files-token"


def _load_token(settings: FilesSettings, *, create: bool) -> bytes:
    return load_token("files", settings.token_file, settings.data_dir / TOKEN_NAME, log,
                      create=create)


class FilesService:
    """Shared state of one files service."""

    def __init__(self, settings: FilesSettings, limits: Limits, token: bytes, *,
                 port: int | None = None, config: ServiceConfig | None = None) -> None:
        self.port, self.limits, self.config = port, limits, config
        self.gate = LoginGate("files", settings, token, log)
        self.shutting_down = False
        #: Targets with an upload in progress, and the bytes each reserves of the quota.
        self.uploads: dict[Path, int] = {}
        self._apply(settings)

    def _apply(self, settings: FilesSettings) -> None:
        assert settings.root is not None
        self.settings = settings
        self.root = Path(os.path.realpath(settings.root))

    @classmethod
    def from_config(cls, config: ServiceConfig, limits: Limits) -> FilesService:
        settings = config.settings_as(FilesSettings)
        exposed = check_exposure("files", "files", config, settings)  # the same rule as exec
        if exposed:
            log.warning("files: listening on %s WITHOUT TLS (--insecure): files travel in "
                        "clear text", ", ".join(exposed))
        token = _load_token(settings, create=True)
        service = cls(settings, limits, token, port=config.port, config=config)
        log.info("files: serving %s%s", service.root, " (read-only)" if settings.read_only else "")
        return service

    def reload(self, config: ServiceConfig, limits: Limits) -> list[str]:
        settings = config.settings_as(FilesSettings)
        moved = self.config is not None and any(
            getattr(config, n) != getattr(self.config, n)
            for n in ("hosts", "port", "unix", "tls", "workers")
        )
        if moved or settings.data_dir != self.settings.data_dir:
            raise ConfigError("files: where it listens changed, which needs a restart; "
                              "kept the old settings")
        check_exposure("files", "files", config, settings)
        token = _load_token(settings, create=False)
        changes = [n for n in ("root", "read_only", "max_size", "quota", "token_file")
                   if getattr(settings, n) != getattr(self.settings, n)]
        self.gate.configure(settings, token)
        self._apply(settings)
        self.config, self.limits = config, limits
        return changes

    # ServiceRuntime ---------------------------------------------------------------

    def listeners(self) -> list[Listener]:
        return [Listener("files", self.port, self.make_protocol, primary=True)]

    def make_protocol(self) -> FilesDoor:
        return FilesDoor(self, os.urandom(NONCE_SIZE))

    def begin_shutdown(self) -> None:
        self.shutting_down = True

    def close(self) -> None:
        pass

    # Policy -------------------------------------------------------------------------

    def ready(self, limits: Limits) -> Ready:
        return Ready(read_only=self.settings.read_only, max_size=self.settings.max_size,
                     idle_timeout=limits.idle_timeout)

    def check_room(self, target: Path, size: int, replaced: int) -> None:
        """Refuse an upload over ``max_size`` or the quota (uploads in progress count)."""
        settings = self.settings
        if settings.max_size is not None and size > settings.max_size:
            raise FilesProtocolError(ErrorCode.TOO_LARGE,
                                     f"{size} bytes is over this server's limit of "
                                     f"{settings.max_size} (--max-size)")
        if settings.quota is not None:
            used = store.used_bytes(self.root) + sum(self.uploads.values())
            if used - replaced + size > settings.quota:
                raise FilesProtocolError(
                    ErrorCode.QUOTA, f"storing {size} bytes would take the root over its "
                    f"quota of {settings.quota} bytes ({used} used)")

    def audit(self, peer: str, op: str, name: str, outcome: str) -> None:
        """The one audit line of a transfer or request."""
        log.info("files peer=%s op=%s name=%s %s", peer, op, json.dumps(name), outcome)


class FilesDoor(FilesServerProtocol):
    """One client: the login, then one request at a time."""

    def __init__(self, service: FilesService, nonce: bytes) -> None:
        super().__init__(nonce)
        self.service = service
        self.login = DoorLogin(service.gate, self,
                               lambda token, answer: verify_answer(token, self.nonce, answer))
        # The upload in progress
        self._fd: int | None = None
        self._target: Path | None = None
        self._part: Path | None = None
        self._put: PutRequest | None = None
        self._sink: UploadSink | None = None
        self._prefix: digests.Hasher | None = None
        #: This upload's digest, as picked here (the base class keeps ACCEPT's as its own).
        self._put_digest = digests.SHA256
        self._offset = 0
        self._started = 0.0
        # The download in progress
        self._file: Any = None
        self._get: FileHeader | None = None
        self._whole: asyncio.Future[tuple[str, str]] | None = None
        self._sent: int | None = None

    # Login --------------------------------------------------------------------------

    def connection_made(self, info: ConnectionInfo) -> None:
        refusal = self.login.begin(info)
        if refusal is not None:
            self.info = info
            self.fail(ErrorCode.RATE_LIMITED, refusal)
            return
        super().connection_made(info)

    def auth_received(self, answer: bytes) -> None:
        self.login.answer(answer)

    def login_accepted(self) -> None:
        self.accept_auth(self.service.ready(self.info.limits))

    def login_refused(self, code: str, message: str) -> None:
        self.fail(ErrorCode(code), message)

    def bad_request_received(self, kind: int, body: bytes, error: FilesProtocolError) -> None:
        text = json.dumps(body[:200].decode("utf-8", "backslashreplace"))
        log.info("files peer=%s op=0x%02x body=%s refused=%s", self.info.peer, kind, text,
                 error.code)

    # Requests -------------------------------------------------------------------------

    def _locate(self, name: str) -> store.Located:
        return store.locate(self.service.root, check_name(name, allow_root=True))

    def _refuse(self, op: str, name: str, error: FilesProtocolError) -> None:
        self.service.audit(self.info.peer, op, name, f"refused={error.code}")
        self.refuse(error.code, str(error))

    def put_received(self, request: PutRequest) -> None:
        service = self.service
        try:
            if service.settings.read_only:
                raise FilesProtocolError(ErrorCode.READ_ONLY, "this server is read-only")
            if service.shutting_down:
                raise FilesProtocolError(ErrorCode.CLOSING, "server shutting down")
            where = self._locate(request.name)
            if where.is_dir:
                raise FilesProtocolError(ErrorCode.IS_DIRECTORY, f"{request.name!r} is a directory")
            if where.exists and not request.force:
                raise FilesProtocolError(ErrorCode.EXISTS,
                                         f"{request.name!r} exists; use --force to replace it")
            if where.path in service.uploads:
                raise FilesProtocolError(ErrorCode.BUSY,
                                         f"{request.name!r} is being uploaded by another client")
            replaced = where.path.stat().st_size if where.exists else 0
            service.check_room(where.path, request.size, replaced)
            where.path.parent.mkdir(parents=True, exist_ok=True)
            part = store.part_path(where.path)
            # O_NONBLOCK: a FIFO planted at the part's name must not hang the open.
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                         | os.O_NONBLOCK, 0o600)
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # nothing else can be truncated, renamed
                os.close(fd)
                raise FilesProtocolError(ErrorCode.IO_ERROR,
                                         f"cannot store: {part.name!r} is not a regular file")
            os.set_blocking(fd, True)
        except FilesProtocolError as exc:
            self._refuse("put", request.name, exc)
            return
        except OSError as exc:
            self._refuse("put", request.name,
                         FilesProtocolError(ErrorCode.IO_ERROR, f"cannot store: {exc.strerror}"))
            return
        service.uploads[where.path] = request.size
        self._fd, self._target, self._part, self._put = fd, where.path, part, request
        self._put_digest = digest = digests.pick(request.digests)
        self._started = self.clock.time()
        have = os.fstat(fd).st_size
        if not request.resume or have == 0 or have > request.size:
            self.accept_put(Accept(digest=digest))
            return
        # Hash the part in a worker thread (it may be gigabytes), with this upload's digest.
        future = asyncio.get_running_loop().run_in_executor(None, store.hash_file, fd, have,
                                                            digest)
        future.add_done_callback(lambda f: self._part_hashed(f, have))

    def _part_hashed(self, future: asyncio.Future[Any], have: int) -> None:
        if self._fd is None:
            return  # the client went away meanwhile
        try:
            digest = future.result()
        except OSError as exc:
            self._fail_upload(f"cannot read the part: {exc.strerror}")
            return
        self._prefix = digest
        self.accept_put(Accept(have, digest.hexdigest(), self._put_digest))
        self.wake()

    def start_received(self, offset: int) -> None:
        assert self._fd is not None and self._put is not None
        os.ftruncate(self._fd, offset)
        os.lseek(self._fd, offset, os.SEEK_SET)
        self._offset = offset
        digest = (self._prefix.copy() if offset and self._prefix is not None
                  else digests.new(self._put_digest))
        # From here the sink owns the file descriptor (its thread writes to it).
        self._sink = UploadSink(self._fd, digest, self._put.size - offset,
                                on_error=self._sink_failed, set_reading=self.set_reading)
        self._fd = None

    def data_received(self, data: bytes | memoryview) -> None:
        assert self._sink is not None
        self._sink.write(data)  # the bytes of the read that held START: immutable

    def raw_buffer(self, limit: int) -> memoryview | bytearray:
        if self._sink is None:  # cannot happen after START; the default is harmless
            return super().raw_buffer(limit)
        return self._sink.get_buffer(limit)

    def raw_filled(self, nbytes: int) -> None:
        if self._sink is not None:  # None: the upload was dropped; its bytes go nowhere
            self._sink.filled(nbytes)

    def _sink_failed(self, message: str) -> None:
        self._fail_upload(message)

    def end_received(self, digest: Digest) -> None:
        sink = self._sink
        assert sink is not None
        sink.finish().add_done_callback(lambda done: self._upload_written(done, sink, digest))

    def _upload_written(self, done: asyncio.Future[str], sink: UploadSink, digest: Digest) -> None:
        """Everything is on disk and hashed: compare, then rename into place."""
        put, target, part = self._put, self._target, self._part
        if sink is not self._sink or sink.failed or put is None:
            return  # the client went away, or the write failed and was reported
        assert target is not None and part is not None
        ours = done.result()
        peer, duration = self.info.peer, self.clock.time() - self._started
        moved = put.size - self._offset
        if ours != digest.hex:
            self._drop_upload(remove_part=True)
            self.service.audit(peer, "put", put.name, f"size={put.size} bytes={moved} "
                               f"digest={digest.name} refused=checksum_mismatch")
            self.refuse(ErrorCode.CHECKSUM_MISMATCH,
                        f"{digest.name} of what arrived is {ours}, not {digest.hex}; "
                        "nothing stored")
            self.wake()
            return
        try:
            os.fchmod(sink.fd, put.mode & 0o777)
            if put.force:
                os.replace(part, target)
            else:
                os.link(part, target)  # fails if the name appeared meanwhile
                os.unlink(part)
        except FileExistsError:
            self._drop_upload(remove_part=True)
            self.service.audit(peer, "put", put.name, "refused=exists")
            self.refuse(ErrorCode.EXISTS, f"{put.name!r} appeared meanwhile; use --force")
            self.wake()
            return
        except OSError as exc:
            self._drop_upload(remove_part=False)
            self.refuse(ErrorCode.IO_ERROR, f"cannot store: {exc.strerror}")
            self.wake()
            return
        self._drop_upload(remove_part=False)
        self.service.audit(peer, "put", put.name,
                           f"size={put.size} bytes={moved} offset={self._offset} "
                           f"{digest.name}={ours} duration={duration:.3f}s result=ok")
        self.send_done(Done(put.name, put.size, ours, self._offset, digest.name))
        self.wake()

    def _fail_upload(self, message: str) -> None:
        put = self._put
        self._drop_upload(remove_part=False)
        if put is not None:
            self.service.audit(self.info.peer, "put", put.name, f"failed={json.dumps(message)}")
        self.fail(ErrorCode.IO_ERROR, message)
        self.wake()

    def _drop_upload(self, *, remove_part: bool, keep_queued: bool = False
                     ) -> asyncio.Future[None] | None:
        """Forget the upload; the future (if any) resolves once its file is closed.

        The target stays reserved until then, so a resume cannot open the
        part while the last bytes of the old upload are still being written.
        """
        sink, target = self._sink, self._target
        self._sink = None
        closed = sink.close(discard=not keep_queued) if sink is not None else None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if target is not None:
            uploads = self.service.uploads
            if closed is None or closed.done():
                uploads.pop(target, None)
            else:
                closed.add_done_callback(lambda _: uploads.pop(target, None))
        if remove_part and self._part is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._part)
        self._target = self._part = self._put = None
        self._prefix = None
        return closed

    # Downloads ------------------------------------------------------------------------

    def get_received(self, request: GetRequest) -> None:
        try:
            where = self._locate(request.name)
            if not where.exists:
                raise FilesProtocolError(ErrorCode.NOT_FOUND, f"{request.name!r} does not exist")
            if where.is_dir:
                raise FilesProtocolError(ErrorCode.IS_DIRECTORY,
                                         f"{request.name!r} is a directory (get it as a tree)")
            fd = os.open(where.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FilesProtocolError as exc:
            self._refuse("get", request.name, exc)
            return
        except OSError as exc:
            self._refuse("get", request.name,
                         FilesProtocolError(ErrorCode.IO_ERROR, f"cannot read: {exc.strerror}"))
            return
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._refuse("get", request.name, FilesProtocolError(
                ErrorCode.BAD_NAME, f"{request.name!r} is not a regular file"))
            return
        self._file = os.fdopen(fd, "rb")
        self._get = FileHeader(request.name, st.st_size, stat.S_IMODE(st.st_mode), request.offset,
                               request.digest)
        self._started = self.clock.time()
        self._sent = None
        # Hashed in a worker thread, on another core, while the kernel sends.
        self._whole = asyncio.get_running_loop().run_in_executor(
            None, store.hash_prefix_and_whole, os.dup(fd), request.offset, st.st_size,
            request.digest)
        self._whole.add_done_callback(lambda _: self._get_progress(request))
        if request.offset == 0:
            self._send_bytes()

    def _send_bytes(self) -> None:
        header = self._get
        assert header is not None
        self.send_file_header(header)
        if header.remaining:
            self.send_file(FileRegion(self._file, header.offset, header.remaining))
        else:
            self._sent = 0
            self._get_progress(None)

    def _get_progress(self, request: GetRequest | None) -> None:
        """The hash or the bytes are done: check the prefix, start, or finish."""
        header, whole = self._get, self._whole
        if header is None or whole is None:
            return
        if request is not None and request.offset and self._sent is None and whole.done():
            try:
                prefix, _ = whole.result()
            except OSError as exc:
                self._end_get(f"failed={json.dumps(exc.strerror)}", ErrorCode.IO_ERROR,
                              f"cannot read: {exc.strerror}")
                return
            if request.offset > header.size or prefix != request.prefix:
                self._end_get("refused=resume_mismatch", ErrorCode.RESUME_MISMATCH,
                              f"the first {request.offset} bytes of {header.name!r} differ "
                              "from yours (or it is shorter); get it again from the start")
                return
            self._send_bytes()
            self.wake()
            return
        if self._sent is None or not whole.done():
            return
        try:
            _, sha = whole.result()
        except OSError as exc:
            self._end_get(f"failed={json.dumps(exc.strerror)}", ErrorCode.IO_ERROR,
                          f"cannot read: {exc.strerror}", fatal=True)
            return
        duration = self.clock.time() - self._started
        self.service.audit(self.info.peer, "get", header.name,
                           f"size={header.size} bytes={self._sent} offset={header.offset} "
                           f"{header.digest}={sha} duration={duration:.3f}s result=ok")
        self._close_get()
        self.send_file_end(Digest(sha, header.digest))
        self.wake()

    def file_sent(self, sent: int, error: str | None) -> None:
        header = self._get
        if header is None:
            return
        if error is not None or sent != header.remaining:
            why = error or f"the file changed size while being sent ({sent} of {header.remaining})"
            self._end_get(f"failed={json.dumps(why)}", ErrorCode.IO_ERROR, why, fatal=True)
            return
        self._sent = sent
        self._get_progress(None)

    def _end_get(self, outcome: str, code: ErrorCode, message: str, *, fatal: bool = False
                 ) -> None:
        header = self._get
        if header is not None:
            self.service.audit(self.info.peer, "get", header.name, outcome)
        self._close_get()
        if fatal:
            self.fail(code, message)
        else:
            self.refuse(code, message)
        self.wake()

    def _close_get(self) -> None:
        if self._file is not None:
            self._file.close()  # the hashing thread reads its own duplicate
            self._file = None
        self._get = self._whole = None

    # LIST and DELETE -----------------------------------------------------------------

    def list_received(self, request: ListRequest) -> None:
        try:
            where = self._locate(request.path)
            entries, truncated = store.listing(self.service.root, where,
                                               recursive=request.recursive,
                                               limit=self.service.settings.max_list)
        except FilesProtocolError as exc:
            self._refuse("list", request.path, exc)
            return
        except OSError as exc:
            self.refuse(ErrorCode.IO_ERROR, f"cannot list: {exc.strerror}")
            return
        self.send_listing(Listing(tuple(entries), truncated))

    def delete_received(self, request: DeleteRequest) -> None:
        service = self.service
        try:
            if service.settings.read_only:
                raise FilesProtocolError(ErrorCode.READ_ONLY, "this server is read-only")
            where = self._locate(request.name)
            if not where.exists:
                raise FilesProtocolError(ErrorCode.NOT_FOUND, f"{request.name!r} does not exist")
            if where.is_dir:
                raise FilesProtocolError(ErrorCode.IS_DIRECTORY,
                                         f"{request.name!r} is a directory; rm removes files")
            if where.path in service.uploads:
                raise FilesProtocolError(ErrorCode.BUSY, f"{request.name!r} is being uploaded")
            os.unlink(where.path)
        except FilesProtocolError as exc:
            self._refuse("rm", request.name, exc)
            return
        except OSError as exc:
            self._refuse("rm", request.name,
                         FilesProtocolError(ErrorCode.IO_ERROR, f"cannot remove: {exc.strerror}"))
            return
        service.audit(self.info.peer, "rm", request.name, "result=ok")
        self.send_done(Done(request.name))

    # The end --------------------------------------------------------------------------

    def connection_lost(self) -> None:
        self.login.end()
        put, peer = self._put, self.info.peer
        # What already reached us is still written, so a resume continues from it.
        closed = self._drop_upload(remove_part=False, keep_queued=True)
        if put is not None:
            def interrupted(_: object = None) -> None:
                self.service.audit(peer, "put", put.name,
                                   f"size={put.size} result=interrupted (part kept for --resume)")
            if closed is None or closed.done():
                interrupted()
            else:
                closed.add_done_callback(interrupted)
        if self._get is not None:
            self.service.audit(self.info.peer, "get", self._get.name, "result=interrupted")
        self._close_get()
