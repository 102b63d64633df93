"""The exec service: the token, the policy on what may run, and the processes.

:class:`ExecService` is the runtime the engine builds once per listener set
(``ServiceSpec.build``). It owns the token, the failed-login limiter and the
set of running commands; :class:`ExecDoor` is one client, the sans-I/O
:class:`~sockhub.protocols.exec.ExecServerProtocol` with the policy filled
in; :class:`Command` is one process group.

Why each piece is the way it is:

* **No shell.** argv goes to ``execve`` as given, so ``;``, ``$(...)`` and
  ``*`` are just bytes in an argument. Shells (``sh``, ``bash``, ...) are
  refused as argv[0] unless ``allow_shell`` is set, because otherwise
  ``["sh", "-c", text]`` would be seed 000 again. Without an ``allow`` list
  an authenticated client can still run any program, interpreters included:
  the allow list is the real restriction, the token the real gate.
* **A session per command** (``start_new_session=True``): the command and
  everything it forks share one process group, so a timeout, a cancel or a
  vanished client kills the lot with ``killpg``, SIGTERM first and SIGKILL
  ``kill_grace`` seconds later. When the command itself exits, whatever it
  left running in its group is killed too.
* **Flat memory.** Output goes from the pipe to the socket with no queue in
  between: when the engine says ``pause_writing`` the pipes stop being read
  (the command then blocks on a full pipe), and ``resume_writing`` reads
  them again. So 100 MB of output cost the server the socket's high-water
  mark plus :data:`QUEUE_MAX`, however slow the client. That is why stdout
  and stderr are plain pipes read here, one ``os.read`` per readiness
  event: ``asyncio.create_subprocess_exec``'s StreamReaders add a buffer of
  their own, and the loops' pipe transports read ahead (uvloop up to 32
  reads of 256 KB per poll, delivered after a pause has been asked for).
* **A clean environment**: ``PATH=/usr/bin:/bin`` and the ``env`` additions;
  nothing of the server's own environment (which may hold secrets) leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import os
import secrets
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sockhub.errors import ConfigError
from sockhub.protocols.base import ConnectionInfo
from sockhub.protocols.exec import (
    CHUNK_SIZE,
    DEFAULT_STDIN_WINDOW,
    NONCE_SIZE,
    ErrorCode,
    ExecServerProtocol,
    ExitStatus,
    Ready,
    Reason,
    RunRequest,
    ServerState,
    verify_answer,
)
from sockhub.services.registry import Door

if TYPE_CHECKING:
    from sockhub.config import ServiceConfig
    from sockhub.limits import Limits

log = logging.getLogger("sockhub.exec")

#: The token file's name in the data directory when none is given.
TOKEN_NAME = "exec-token"
#: Shorter tokens are refused: with a captured CHALLENGE and AUTH pair an
#: eavesdropper can guess tokens offline, so a token must not be guessable.
MIN_TOKEN_BYTES = 16
#: argv[0] basenames refused unless ``allow_shell``.
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "pdksh", "csh", "tcsh", "fish",
                    "ash", "busybox", "rbash"})
#: The whole environment of a command, before ``env`` additions.
CLEAN_PATH = "/usr/bin:/bin"
#: Failed-login records kept at most; past it the oldest are forgotten.
MAX_TRACKED_ADDRESSES = 10_000
#: An audit line shows at most this much of argv.
AUDIT_ARGV_MAX = 1000
#: Output queued for a client since the engine last took it, past which the
#: pipes pause until it does. The engine writes queued output once per loop
#: iteration, after the reads; this cap keeps what piles up in between small
#: whatever order a loop runs them in, far below write_buffer_max (past
#: which the engine drops a client).
QUEUE_MAX = 128 * 1024


def default_data_dir() -> Path:
    """The chat service's default too (``$XDG_STATE_HOME/sockhub``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local/state")
    return Path(base) / "sockhub"


def default_token_path() -> Path:
    return default_data_dir() / TOKEN_NAME


# --- The token -----------------------------------------------------------------------


def read_token(path: str | Path) -> bytes:
    """Read a token file, refusing one that others may read.

    Raises:
        ConfigError: missing, unreadable, group/world-accessible, or too short.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(
            f"token file {path} is accessible to group or others (mode {mode & 0o777:03o}); "
            f"run: chmod 600 {path}"
        )
    if len(data) < MIN_TOKEN_BYTES:
        raise ConfigError(f"token in {path} is shorter than {MIN_TOKEN_BYTES} bytes")
    return data


def create_token(path: Path) -> tuple[bytes, bool]:
    """Generate a token into ``path`` (mode 0600) unless one is there already.

    The file appears whole or not at all (written aside, then hard-linked
    into place), so two servers starting at once agree on one token.

    Returns:
        the token and whether it was generated now.
    """
    if path.exists():
        return read_token(path), False
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32).encode()
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, token + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)
        except FileExistsError:
            return read_token(path), False
        finally:
            os.unlink(temp)
    except OSError as exc:
        raise ConfigError(f"cannot create token file {path}: {exc.strerror}") from exc
    return token, True


# --- Settings ------------------------------------------------------------------------


def _number(name: str, value: Any, *, whole: bool = False, off: bool = True,
            minimum: float = 0) -> Any:
    if value is None and off:
        return None
    kind = int if whole else int | float
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise ConfigError(f"exec: {name} must be {'a whole number' if whole else 'a number'}"
                          f"{' or none' if off else ''}, not {value!r}")
    if value < minimum or (not whole and value == 0):
        raise ConfigError(f"exec: {name} must be more than 0, not {value!r}")
    return value


def _env(value: Any) -> dict[str, str]:
    items = value.items() if isinstance(value, dict) else (
        str(item).partition("=")[::2] for item in value or ()
    )
    env: dict[str, str] = {}
    for key, val in items:
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ConfigError(f"exec: bad environment variable name {key!r}")
        if not isinstance(val, str) or "\0" in val:
            raise ConfigError(f"exec: bad value for environment variable {key}")
        env[key] = val
    return env


_COUNT = {"whole": True, "off": False, "minimum": 1}
_SECONDS = {"off": False}
#: How each numeric setting is checked: whole or not, may it be None (off).
_NUMBERS: dict[str, dict[str, Any]] = {
    "timeout": {}, "max_output": {"whole": True},
    "max_concurrent": _COUNT, "stdin_window": _COUNT, "auth_max_failures": _COUNT,
    "auth_timeout": _SECONDS, "auth_window": _SECONDS, "auth_block": _SECONDS,
    "kill_grace": _SECONDS,
}


@dataclass(frozen=True, kw_only=True)
class ExecSettings:
    """The exec service's settings (``options`` of its ServiceConfig).

    Every limit has a default fit for a server others can reach; ``None``
    turns the optional ones off.
    """

    data_dir: Path = field(default_factory=default_data_dir)
    #: The shared secret; generated into ``data_dir/exec-token`` if not given.
    token_file: Path | None = None
    #: argv[0] must be one of these, exactly (``ls`` does not allow ``/bin/ls``).
    allow: tuple[str, ...] | None = None
    allow_shell: bool = False
    cwd: Path | None = None
    #: Added to the clean environment (``PATH=/usr/bin:/bin``); may replace PATH.
    env: dict[str, str] = field(default_factory=dict)
    # Limits
    timeout: float | None = 300.0  # seconds a command may run
    max_output: int | None = 128 * 1024 * 1024  # stdout + stderr bytes per command
    max_concurrent: int = 8  # commands at once; one more is refused with "busy"
    stdin_window: int = DEFAULT_STDIN_WINDOW
    # Authentication
    insecure: bool = False  # allow a non-loopback address without TLS
    auth_timeout: float = 10.0  # seconds from connect to a correct AUTH
    auth_max_failures: int = 5  # failed logins from one address within auth_window ...
    auth_window: float = 60.0
    auth_block: float = 60.0  # ... block it for this long
    kill_grace: float = 2.0  # SIGTERM, then SIGKILL after this

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ExecSettings:
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"exec: unknown option(s): {', '.join(sorted(unknown))}")
        values = dict(options)
        values["data_dir"] = Path(values.get("data_dir") or default_data_dir())
        if values.get("token_file") is not None:
            values["token_file"] = Path(values["token_file"])
        if values.get("allow") is not None:
            allow = values["allow"]
            if isinstance(allow, str) or not all(isinstance(a, str) and a for a in allow):
                raise ConfigError("exec: allow must be a list of command names")
            values["allow"] = tuple(allow)
        for flag in ("allow_shell", "insecure"):
            if not isinstance(values.get(flag, False), bool):
                raise ConfigError(f"exec: {flag} must be true or false")
        if values.get("cwd") is not None:
            cwd = Path(values["cwd"])
            if not cwd.is_dir():
                raise ConfigError(f"exec: cwd {cwd} is not a directory")
            values["cwd"] = cwd
        values["env"] = _env(values.get("env"))
        for name in set(values) & set(_NUMBERS):
            values[name] = _number(name, values[name], **_NUMBERS[name])
        return cls(**values)


# --- Failed logins -------------------------------------------------------------------


class AuthLimiter:
    """Failed logins per address in a sliding window; too many block the address.

    A correct answer does not clear the record: an attacker sharing an
    address with a real user must not get fresh guesses from the user's
    logins. Records expire with the window, so memory stays bounded.
    """

    def __init__(self, max_failures: int, window: float, block: float) -> None:
        self.max_failures, self.window, self.block = max_failures, window, block
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}

    def blocked(self, address: str, now: float) -> float | None:
        """Seconds the address stays blocked, or None."""
        until = self._blocked.get(address)
        if until is None:
            return None
        if until <= now:
            del self._blocked[address]
            return None
        return until - now

    def failed(self, address: str, now: float) -> bool:
        """Record a failure; True if the address is blocked from now on."""
        if len(self._failures) >= MAX_TRACKED_ADDRESSES:
            self._prune(now)
        times = self._failures.setdefault(address, deque())
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.max_failures:
            self._blocked[address] = now + self.block
            del self._failures[address]
            return True
        return False

    def _prune(self, now: float) -> None:
        for address in [a for a, t in self._failures.items() if t[-1] <= now - self.window]:
            del self._failures[address]
        while len(self._failures) >= MAX_TRACKED_ADDRESSES:
            del self._failures[next(iter(self._failures))]
        for address in [a for a, until in self._blocked.items() if until <= now]:
            del self._blocked[address]


# --- The runtime ---------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a name other than localhost, or "" (every address)


def address_key(peer: str) -> str:
    """The part of a printable peer address that identifies a host (no port)."""
    if peer.startswith("["):
        return peer[1 : peer.find("]")]
    if peer.count(":") == 1:
        return peer.rpartition(":")[0]
    return peer  # "unix", "unix:/path": every local client shares one record


class ExecService:
    """Shared state of one exec service: token, limiter, running commands."""

    def __init__(self, settings: ExecSettings, limits: Limits, token: bytes, *,
                 port: int | None = 9001) -> None:
        self.settings = settings
        self.port = port
        self.limits = limits
        self.token = token
        self.limiter = AuthLimiter(
            settings.auth_max_failures, settings.auth_window, settings.auth_block
        )
        self.commands: set[Command] = set()
        self.shutting_down = False
        self.env = {"PATH": CLEAN_PATH, **settings.env}
        allow = settings.allow
        if allow is not None and settings.allow_shell and "sh" not in allow:
            allow = (*allow, "sh")
        self.allow = None if allow is None else frozenset(allow)

    @classmethod
    def from_config(cls, config: ServiceConfig, limits: Limits) -> ExecService:
        settings = ExecSettings.from_options(dict(config.options))
        if not config.tls and not config.unix:
            exposed = [h for h in config.hosts if not _is_loopback(h)]
            if exposed and not settings.insecure:
                raise ConfigError(
                    f"exec: listening on {', '.join(h or '*' for h in exposed)} without TLS would "
                    "send commands and their output in clear text; add --tls-cert/--tls-key, "
                    "or --insecure to accept that"
                )
            if exposed:
                log.warning(
                    "exec: listening on %s WITHOUT TLS (--insecure): commands and output travel "
                    "in clear text and the connection can be hijacked after login",
                    ", ".join(h or "*" for h in exposed),
                )
        if settings.token_file is not None:
            token = read_token(settings.token_file)
            log.info("exec: token from %s", settings.token_file)
        else:
            path = settings.data_dir / TOKEN_NAME
            token, generated = create_token(path)
            if generated:
                log.info("exec: generated a token in %s (mode 0600); clients need a copy "
                         "of that file (--token-file)", path)
            else:
                log.info("exec: token from %s", path)
        port = 9001 if config.port is None else config.port
        return cls(settings, limits, token, port=port)

    # ServiceRuntime ---------------------------------------------------------------

    def doors(self) -> list[Door]:
        return [Door("exec", self.port, self.make_protocol, primary=True)]

    def make_protocol(self) -> ExecDoor:
        return ExecDoor(self, os.urandom(NONCE_SIZE))

    def begin_shutdown(self) -> None:
        self.shutting_down = True

    def close(self) -> None:
        for command in list(self.commands):
            command.destroy()

    # Policy -------------------------------------------------------------------------

    def check_argv(self, argv: tuple[str, ...]) -> str | None:
        """Why argv may not run, or None."""
        name = argv[0]
        if os.path.basename(name) in SHELLS and not self.settings.allow_shell:
            return (f"{name} is a shell; this server runs commands without one "
                    "(start it with --allow-shell to permit sh -c)")
        if self.allow is not None and name not in self.allow:
            return f"{name} is not in this server's allow list"
        return None

    def ready(self) -> Ready:
        return Ready(max_frame=self.limits.max_frame, stdin_window=self.settings.stdin_window,
                     idle_timeout=self.limits.idle_timeout)

    def audit(self, peer: str, argv: tuple[str, ...], outcome: str) -> None:
        shown = json.dumps(list(argv))  # escapes newlines: one command, one log line
        if len(shown) > AUDIT_ARGV_MAX:
            shown = f"{shown[:AUDIT_ARGV_MAX]}...({len(shown) - AUDIT_ARGV_MAX} more)"
        log.info("exec peer=%s argv=%s %s", peer, shown, outcome)


class ExecDoor(ExecServerProtocol):
    """One client: authentication with rate limiting, then commands one at a time."""

    __slots__ = ("_auth_handle", "_queued", "command", "paused", "service", "throttled")

    def __init__(self, service: ExecService, nonce: bytes) -> None:
        super().__init__(nonce, stdin_window=service.settings.stdin_window)
        self.service = service
        self.command: Command | None = None
        self.paused = False  # by the engine: the client is not keeping up
        self.throttled = False  # by us: QUEUE_MAX queued, the engine has not taken it yet
        self._queued = 0
        self._auth_handle: asyncio.TimerHandle | None = None

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        self._auth_handle = asyncio.get_running_loop().call_later(
            self.service.settings.auth_timeout, self._auth_expired
        )

    def _auth_expired(self) -> None:
        self._auth_handle = None
        if self.state is ServerState.AUTH:
            log.info("exec: %s did not authenticate in time", self.info.peer)
            timeout = self.service.settings.auth_timeout
            self.fail(ErrorCode.AUTH_TIMEOUT, f"no authentication within {timeout:g} seconds")
            self.wake()

    def auth_received(self, answer: bytes) -> None:
        if self._auth_handle is not None:
            self._auth_handle.cancel()
            self._auth_handle = None
        service, peer = self.service, self.info.peer
        address = address_key(peer)
        now = time.monotonic()
        left = service.limiter.blocked(address, now)
        if left is not None:
            log.warning("exec: refused login from %s: too many failures", peer)
            self.fail(ErrorCode.RATE_LIMITED, f"too many failed logins from {address}; "
                      f"try again in {math.ceil(left)} seconds")
            return
        if verify_answer(service.token, self.nonce, answer):
            log.info("exec: %s logged in", peer)
            self.accept_auth(service.ready())
            return
        blocked = service.limiter.failed(address, now)
        log.warning("exec: failed login from %s%s", peer,
                    f"; blocking {address} for {service.settings.auth_block:g}s" if blocked else "")
        self.fail(ErrorCode.AUTH_FAILED, "authentication failed: wrong token")

    def run_received(self, request: RunRequest) -> None:
        service = self.service
        refusal = service.check_argv(request.argv)
        code = ErrorCode.NOT_ALLOWED
        if refusal is None and service.shutting_down:
            code, refusal = ErrorCode.CLOSING, "server shutting down"
        if refusal is None and len(service.commands) >= service.settings.max_concurrent:
            code = ErrorCode.BUSY
            refusal = (f"{service.settings.max_concurrent} commands are running already "
                       "(the server's max-concurrent); try again later")
        if refusal is not None:
            service.audit(self.info.peer, request.argv, f"refused={code}")
            self.refuse_run(code, refusal)
            return
        self.command = Command(service, self, request)
        self.command.start()

    def stdin_received(self, data: bytes) -> None:
        if self.command is not None:
            self.command.feed_stdin(data)

    def stdin_ended(self) -> None:
        if self.command is not None:
            self.command.close_stdin()

    def cancel_received(self) -> None:
        if self.command is not None:
            self.command.kill(Reason.CANCELLED)

    def pause_writing(self) -> None:
        self.paused = True
        if self.command is not None:
            self.command.output_changed()

    def resume_writing(self) -> None:
        self.paused = False
        if self.command is not None:
            self.command.output_changed()

    def data_to_send(self) -> list[bytes]:
        out = super().data_to_send()
        self._queued = 0
        if self.throttled:
            self.throttled = False
            if self.command is not None:
                self.command.output_changed()
        return out

    def closing_notice(self, reason: str) -> None:
        super().closing_notice(reason)
        if self.command is not None:
            self.command.kill("closing")

    def connection_lost(self) -> None:
        if self._auth_handle is not None:
            self._auth_handle.cancel()
            self._auth_handle = None
        command, self.command = self.command, None
        if command is not None:
            command.door = None
            command.kill("disconnected")

    # From the command -----------------------------------------------------------------

    def command_output(self, stream: int, data: bytes) -> None:
        self.send_output(stream, data)
        self._queued += len(data)
        if self._queued >= QUEUE_MAX and not self.throttled and self.command is not None:
            self.throttled = True
            self.command.output_changed()
        self.wake()

    def command_stdin_taken(self, count: int) -> None:
        self.ack_stdin(count)
        self.wake()

    def command_failed(self, code: ErrorCode, message: str) -> None:
        self.command = None
        self.refuse_run(code, message)
        self.wake()

    def command_finished(self, status: ExitStatus) -> None:
        self.command = None
        self.send_exit(status)
        self.wake()


class Command(asyncio.SubprocessProtocol):
    """One command's process group, from spawn to EXIT.

    stdout and stderr are pipes read here, with ``loop.add_reader`` and one
    ``os.read`` of at most CHUNK_SIZE per readiness event, so pausing is
    ``remove_reader`` and exact on every loop. A loop's own pipe transports
    read ahead and deliver through ``call_soon`` (uvloop up to 32 reads of
    256 KB per poll), so a pause there still lets megabytes through; the
    subprocess transport keeps the process, its exit and stdin.

    A command is finished when its main process has exited *and* both pipes
    are at EOF, so no output is lost to a race; pipes held open by a process
    that escaped the group (``setsid``) are closed after ``kill_grace``
    seconds in which nothing came out.
    """

    def __init__(self, service: ExecService, door: ExecDoor, request: RunRequest) -> None:
        self.service = service
        self.settings = service.settings
        self.door: ExecDoor | None = door
        self.peer = door.info.peer
        self.argv = request.argv
        self.wants_stdin = request.stdin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.SubprocessTransport | None = None
        self.pid: int | None = None
        self.reason: str | None = None
        self.started = time.monotonic()
        self.out = {1: 0, 2: 0}
        self.exited = False
        self.finished = False
        self._pipes: dict[int, int] = {}  # stream (1, 2) -> read end, while open
        self._watching: set[int] = set()  # streams with a reader installed
        self._task: asyncio.Task[None] | None = None
        self._timeout: asyncio.TimerHandle | None = None
        self._kill: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        # stdin: what arrived before the process existed, and acks held back
        # while the pipe is full (they reopen the client's window).
        self._stdin_early: list[bytes] = []
        self._stdin_eof = False
        self._stdin_gone = not request.stdin
        self._stdin_full = False
        self._stdin_held = 0

    def start(self) -> None:
        self.service.commands.add(self)
        self._task = self.loop.create_task(self._spawn())

    async def _spawn(self) -> None:
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        self._pipes = {1: out_read, 2: err_read}
        failure: tuple[ErrorCode, str] | None = None
        try:
            await self.loop.subprocess_exec(
                lambda: self, *self.argv,
                stdin=subprocess.PIPE if self.wants_stdin else subprocess.DEVNULL,
                stdout=out_write, stderr=err_write,
                cwd=self.settings.cwd, env=self.service.env, start_new_session=True,
            )
        except FileNotFoundError:
            failure = ErrorCode.NOT_FOUND, f"no such command: {self.argv[0]}"
        except PermissionError:
            failure = ErrorCode.SPAWN_FAILED, f"permission denied: {self.argv[0]}"
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            failure = ErrorCode.SPAWN_FAILED, f"cannot run {self.argv[0]}: {exc}"
        finally:
            # The child has its copies; ours would keep EOF from ever coming.
            os.close(out_write)
            os.close(err_write)
        if failure is not None:
            self._close_pipes()
            self._spawn_failed(*failure)
            return
        for fd in self._pipes.values():
            os.set_blocking(fd, False)
        self._update_readers()

    def _spawn_failed(self, code: ErrorCode, message: str) -> None:
        self.finished = True
        self.service.commands.discard(self)
        self.service.audit(self.peer, self.argv, f"refused={code}")
        if self.door is not None:
            self.door.command_failed(code, message)

    # SubprocessProtocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        self.pid = self.transport.get_pid()
        if self.settings.timeout is not None:
            self._timeout = self.loop.call_later(self.settings.timeout, self.kill, Reason.TIMEOUT)
        early, self._stdin_early = self._stdin_early, []
        for chunk in early:
            self.feed_stdin(chunk)
        if self._stdin_eof:
            self.close_stdin()
        if self.reason is not None:  # killed while spawning
            self._signal_group(signal.SIGKILL)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 0:  # the command closed its stdin, or died
            self._stdin_gone = True
            self._release_stdin_acks()

    def process_exited(self) -> None:
        if self.finished:  # destroy() got there first; the group id may be free now
            return
        self.exited = True
        if self._timeout is not None:
            self._timeout.cancel()
        # The command is over: what it left running in its group goes too.
        self._signal_group(signal.SIGKILL)
        self._arm_linger()
        self._maybe_finish()

    def pause_writing(self) -> None:  # the stdin pipe is full
        self._stdin_full = True

    def resume_writing(self) -> None:
        self._stdin_full = False
        self._release_stdin_acks()

    # Driven by the door ----------------------------------------------------------------

    def feed_stdin(self, data: bytes) -> None:
        if self.transport is None and not self.finished:
            self._stdin_early.append(data)
            return
        pipe = self.transport.get_pipe_transport(0) if self.transport else None
        if self._stdin_gone or pipe is None or pipe.is_closing():
            self._ack(len(data))  # nobody reads it: drop, but keep the window open
            return
        pipe.write(data)  # type: ignore[attr-defined]
        self._stdin_held += len(data)
        if not self._stdin_full:
            self._release_stdin_acks()

    def close_stdin(self) -> None:
        self._stdin_eof = True
        if self.transport is None:
            return
        pipe = self.transport.get_pipe_transport(0)
        if pipe is not None:
            pipe.close()  # after the buffered bytes are written

    def output_changed(self) -> None:
        """The door paused or resumed: read the pipes only while it may send.

        Not reading makes the command block on a full pipe, so memory stays flat.
        """
        self._update_readers()
        if self.exited:
            self._arm_linger()

    def kill(self, reason: str) -> None:
        """Stop the command: SIGTERM to its group now, SIGKILL after the grace period."""
        if self.reason is None:
            self.reason = reason
        if self.finished:
            return
        self._update_readers()  # read and discard until EOF
        if self.transport is None or self.exited:
            return  # not spawned yet (connection_made will kill), or already gone
        self._signal_group(signal.SIGTERM)
        if self._kill is None:
            self._kill = self.loop.call_later(
                self.settings.kill_grace, self._signal_group, signal.SIGKILL
            )

    def destroy(self) -> None:
        """The server is closing: kill now and release the pipes without waiting."""
        self.reason = self.reason or "shutdown"
        if self._task is not None and self.transport is None:
            self._task.cancel()
        if not self.exited:
            self._signal_group(signal.SIGKILL)
        self._finish()

    # Output --------------------------------------------------------------------------

    def _reading_wanted(self) -> bool:
        door = self.door
        if self.reason is not None or door is None:
            return True  # being killed, or nobody to tell: drain to EOF and discard
        return not (door.paused or door.throttled)

    def _update_readers(self) -> None:
        want = self.transport is not None and self._reading_wanted()
        for stream, fd in self._pipes.items():
            if want and stream not in self._watching:
                self.loop.add_reader(fd, self._readable, stream)
                self._watching.add(stream)
            elif not want and stream in self._watching:
                self.loop.remove_reader(fd)
                self._watching.discard(stream)

    def _readable(self, stream: int) -> None:
        fd = self._pipes.get(stream)
        if fd is None:
            return
        try:
            data = os.read(fd, CHUNK_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close_pipe(stream)
            self._maybe_finish()
            return
        if self.reason is None and self.door is not None:
            self._output(stream, data)
        if self.exited:
            self._arm_linger()

    def _output(self, stream: int, data: bytes) -> None:
        assert self.door is not None
        limit = self.settings.max_output
        over = False
        if limit is not None:
            room = limit - self.out[1] - self.out[2]
            if len(data) > room:
                data, over = data[:room], True
        if data:
            self.out[stream] += len(data)
            self.door.command_output(stream, data)
        if over:
            self.kill(Reason.OUTPUT_LIMIT)

    def _close_pipe(self, stream: int) -> None:
        fd = self._pipes.pop(stream, None)
        if fd is None:
            return
        if stream in self._watching:
            self.loop.remove_reader(fd)
            self._watching.discard(stream)
        os.close(fd)

    def _close_pipes(self) -> None:
        for stream in list(self._pipes):
            self._close_pipe(stream)

    # Internals -----------------------------------------------------------------------

    def _ack(self, count: int) -> None:
        if self.door is not None and count:
            self.door.command_stdin_taken(count)

    def _release_stdin_acks(self) -> None:
        held, self._stdin_held = self._stdin_held, 0
        self._ack(held)

    def _signal_group(self, signum: int) -> None:
        if self.pid is not None:
            # A group already gone, or owned by someone else after a setuid.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)

    def _arm_linger(self) -> None:
        """(Re)start the countdown to closing pipes left open after exit, while reading."""
        if self._linger is not None:
            self._linger.cancel()
        self._linger = None
        if self._pipes and not self.finished and self._reading_wanted():
            self._linger = self.loop.call_later(self.settings.kill_grace, self._lingered)

    def _lingered(self) -> None:
        self._linger = None
        log.info("exec: %s: output pipes still open %gs after exit (a process left the "
                 "group); closing them", self.pid, self.settings.kill_grace)
        self._close_pipes()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.exited and not self._pipes and not self.finished:
            self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        for handle in (self._timeout, self._kill, self._linger):
            if handle is not None:
                handle.cancel()
        self._close_pipes()
        self.service.commands.discard(self)
        returncode = self.transport.get_returncode() if self.transport else None
        if self.transport is not None:
            self.transport.close()
        code = returncode if returncode is not None and returncode >= 0 else None
        signum = -returncode if returncode is not None and returncode < 0 else None
        reason = self.reason or Reason.EXIT
        duration = time.monotonic() - self.started
        status = ExitStatus(code, signum, reason, duration, self.out[1], self.out[2])
        if signum is not None:
            try:
                shown = f"signal={signal.Signals(signum).name}"
            except ValueError:
                shown = f"signal={signum}"
        else:
            shown = f"exit={code}"
        self.service.audit(
            self.peer, self.argv,
            f"{shown} reason={reason} duration={duration:.3f}s "
            f"bytes_out={self.out[1] + self.out[2]} (stdout {self.out[1]}, stderr {self.out[2]})",
        )
        door, self.door = self.door, None
        if door is not None:
            door.command_finished(status)
