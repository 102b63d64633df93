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
import ipaddress
import json
import logging
import math
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sockhub.errors import ConfigError
from sockhub.paths import default_data_dir
from sockhub.protocols.base import ConnectionInfo
from sockhub.protocols.exec import (
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
from sockhub.services.exec_command import Command
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
