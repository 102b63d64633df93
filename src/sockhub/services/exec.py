"""The exec service: the token, the policy on what may run, and the processes.

:class:`ExecService` is the runtime the engine builds once per listener set
(``ServiceSpec.build``). It owns the token, the failed-login limiter and the
set of running commands; :class:`ExecDoor` (``exec_door.py``) is one client, the sans-I/O
:class:`~sockhub.protocols.exec.ExecServerProtocol` with the policy filled
in; :class:`Command` is one process group.

Why each piece is the way it is:

* **No shell, and an allow list.** argv goes to ``execve`` as given, so
  ``;``, ``$(...)`` and ``*`` are just bytes in an argument. What may run is
  the ``allow`` list, matched exactly against argv[0]: there is no default.
  A list of forbidden programs cannot stop a shell, because so many
  programs start others (``env sh -c``, ``nice sh``, ``find -exec sh``,
  ``python3 -c``), so the server refuses to start with neither ``allow``
  nor an explicit ``allow_any``, and names the runners it finds in a list
  (:data:`RUNNERS`) in a warning, since listing one allows everything.
* **Logins cost guesses, never the owner.** A wrong answer is told after a
  delay that doubles with each recent failure from that address (capped),
  and holds one of a few login slots per address for that long, even if
  the client hangs up; past the slots new connections are refused before
  any challenge. A right answer to a challenge is never refused or
  delayed, so a burst of wrong guesses cannot lock the owner out.
* **A session per command** (``start_new_session=True``): the command and
  everything it forks share one process group, so a timeout, a cancel or a
  vanished client kills the lot with ``killpg``, SIGTERM first and SIGKILL
  ``kill_grace`` seconds later. When the command itself exits, whatever it
  left running in its group is killed too, and so is every group when the
  service closes. If the server is killed outright (``kill -9``), the
  kernel kills each command's main process (``PR_SET_PDEATHSIG``; see
  :mod:`sockhub.services.exec_command`).
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

import contextlib
import hmac
import json
import logging
import os
import select
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sockhub.engine.service import Listener
from sockhub.errors import ConfigError
from sockhub.paths import default_data_dir
from sockhub.protocols.exec import (
    NONCE_SIZE,
    Ready,
)
from sockhub.services.exec_command import Command
from sockhub.services.exec_door import ExecDoor
from sockhub.services.exec_settings import ExecSettings

# The token functions live in services/login.py (shared with the files service);
# re-exported here, where clients have always found them.
from sockhub.services.login import MIN_TOKEN_BYTES as MIN_TOKEN_BYTES
from sockhub.services.login import LoginGate, check_exposure, load_token
from sockhub.services.login import create_token as create_token
from sockhub.services.login import read_token as read_token

if TYPE_CHECKING:
    from sockhub.config import ServiceConfig
    from sockhub.limits import Limits

log = logging.getLogger("sockhub.exec")

#: The token file's name in the data directory when none is given.
TOKEN_NAME = "exec-token"
#: argv[0] basenames that run whatever their arguments say: shells, and
#: programs that start others or interpret code. One of them in the allow
#: list allows everything, so the server says so at start. Not a blocklist:
#: no list of this kind is complete (awk, vim, git, tar... can do it too).
RUNNERS = frozenset({
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "pdksh", "csh", "tcsh", "fish", "ash",
    "busybox", "rbash", "env", "nice", "nohup", "timeout", "xargs", "find", "setsid",
    "stdbuf", "chroot", "sudo", "su", "doas", "ionice", "taskset", "flock", "strace",
    "watch", "script", "python", "python3", "perl", "ruby", "node", "php", "lua", "tclsh",
    "awk", "gawk", "mawk",
})
#: The whole environment of a command, before ``env`` additions.
CLEAN_PATH = "/usr/bin:/bin"
#: An audit line shows at most this much of argv.
AUDIT_ARGV_MAX = 1000


def default_token_path() -> Path:
    return default_data_dir() / TOKEN_NAME


# --- The runtime ---------------------------------------------------------------------


def _wait_for_exit(pids: list[int], timeout: float) -> None:
    """Block until these processes have exited, or ``timeout`` seconds passed.

    On pidfds (Linux 5.3+), which become readable when the process exits,
    so nothing is reaped behind asyncio's back.
    """
    fds = []
    for pid in pids:
        with contextlib.suppress(OSError):  # gone and reaped already
            fds.append(os.pidfd_open(pid))
    try:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        left = len(fds)
        deadline = time.monotonic() + timeout
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for fd, _ in poller.poll(remaining * 1000):
                poller.unregister(fd)
                left -= 1
    finally:
        for fd in fds:
            os.close(fd)


def _check_exposure(config: ServiceConfig, settings: ExecSettings) -> list[str]:
    """Non-loopback addresses served in clear text (allowed only with ``insecure``)."""
    return check_exposure("exec", "commands and their output", config, settings)


def _load_token(settings: ExecSettings, *, create: bool) -> bytes:
    """The token from ``token_file``, or from (or generated into) the data directory."""
    return load_token("exec", settings.token_file, settings.data_dir / TOKEN_NAME, log,
                      create=create)


def _warn_about_policy(settings: ExecSettings, *, starting: bool = True) -> None:
    """Warn about an allow list that allows everything; at start, also log the list."""
    allowed = settings.allowed()
    if allowed is None:
        log.warning("exec: any command allowed (--allow-any): every token holder can run "
                    "anything, shells included; the token is the only gate")
        return
    runners = sorted(a for a in allowed if os.path.basename(a) in RUNNERS)
    if runners:
        log.warning("exec: the allow list has %s, which can run any other command: every "
                    "token holder can run anything", ", ".join(runners))
    if starting:
        log.info("exec: allow list: %s", " ".join(sorted(allowed)))


def _describe_changes(old: ExecSettings, new: ExecSettings) -> list[str]:
    """What a reload changes, in short phrases for the log."""
    changes = []
    if old.allowed() != new.allowed():
        allowed = new.allowed()
        changes.append("allow: any command" if allowed is None else
                       f"allow list: {len(allowed)} command{'s' * (len(allowed) != 1)}")
    for name in ("env", "cwd", "insecure"):
        if getattr(old, name) != getattr(new, name):
            changes.append(name)
    for name in ("timeout", "max_output", "max_concurrent", "stdin_window", "kill_grace"):
        value = getattr(new, name)
        if getattr(old, name) != value:
            changes.append(f"{name} {'none' if value is None else f'{value:g}'}")
    if any(getattr(old, f) != getattr(new, f) for f in _AUTH_FIELDS):
        changes.append("auth settings")
    return changes


_AUTH_FIELDS = ("auth_timeout", "auth_delay", "auth_delay_max", "auth_window",
                "auth_max_pending", "auth_max_pending_per_ip")


class ExecService:
    """Shared state of one exec service: settings, token, limiter, running commands."""

    def __init__(self, settings: ExecSettings, limits: Limits, token: bytes, *,
                 port: int | None = None, config: ServiceConfig | None = None) -> None:
        self.port = port
        self.limits = limits
        self.config = config  # what it was built from: reload compares against it
        self.commands: set[Command] = set()
        self.shutting_down = False
        #: The login, shared with the files service (services/login.py).
        self.gate = LoginGate("exec", settings, token, log)
        self.limiter = self.gate.limiter
        #: Connections waiting to log in, oldest first, with their address key.
        self.logins = self.gate.logins
        self.noise = self.gate.noise
        self._apply(settings, token)

    def _apply(self, settings: ExecSettings, token: bytes) -> None:
        """Make ``settings`` current. Running commands keep their own copy."""
        self.settings = settings
        self.token = token
        self.env = {"PATH": CLEAN_PATH, **settings.env}
        self.allow = settings.allowed()
        self.gate.configure(settings, token)

    @classmethod
    def from_config(cls, config: ServiceConfig, limits: Limits) -> ExecService:
        settings = config.settings_as(ExecSettings)
        exposed = _check_exposure(config, settings)
        if exposed:
            log.warning(
                "exec: listening on %s WITHOUT TLS (--insecure): commands and output travel "
                "in clear text and the connection can be hijacked after login",
                ", ".join(exposed),
            )
        token = _load_token(settings, create=True)
        _warn_about_policy(settings)
        return cls(settings, limits, token, port=config.port, config=config)

    def reload(self, config: ServiceConfig, limits: Limits) -> list[str]:
        """Apply a freshly loaded config of this service, dropping nobody.

        Changes the allow list (``allow``, ``allow_any``, ``allow_shell``),
        ``env``, ``cwd``, ``timeout``, ``max_output``, ``max_concurrent``, the
        auth settings and the rest of the options, and re-reads the token
        file. Commands already running keep the settings they started with;
        connections already in stay in, even if the token changed.

        Returns:
            short descriptions of what changed (``["allow list: 3 commands",
            "token"]``), or [] if nothing did.

        Raises:
            ConfigError: the new config is invalid, or changes what needs a
                restart (data_dir, where it listens). New limits are the
                engine's to apply, to connections made from now on.
                Everything is checked before anything is applied, so the old
                settings then stay fully in force.
        """
        settings = config.settings_as(ExecSettings)
        old = self.settings
        restart = []
        if settings.data_dir != old.data_dir:
            restart.append("data_dir")
        if self.config is not None:
            restart += [name for name in ("hosts", "port", "unix", "tls", "workers")
                        if getattr(config, name) != getattr(self.config, name)]
        if restart:
            raise ConfigError(f"exec: {', '.join(restart)} changed, which needs a restart; "
                              "kept the old settings")
        _check_exposure(config, settings)
        token = _load_token(settings, create=False)
        changes = _describe_changes(old, settings)
        if not hmac.compare_digest(token, self.token):
            changes.append("token")
        self._apply(settings, token)
        self.config, self.limits = config, limits
        if old.allowed() != settings.allowed():
            _warn_about_policy(settings, starting=False)
        return changes

    # ServiceRuntime ---------------------------------------------------------------

    def listeners(self) -> list[Listener]:
        return [Listener("exec", self.port, self.make_protocol, primary=True)]

    def make_protocol(self) -> ExecDoor:
        return ExecDoor(self, os.urandom(NONCE_SIZE))

    def begin_shutdown(self) -> None:
        self.shutting_down = True

    def close(self) -> None:
        """Kill every command still running, with everything in its process group.

        SIGTERM to every group, up to ``kill_grace`` seconds for the main
        processes to exit (a blocking wait: the loop is stopping, and this is
        the last chance), then SIGKILL to every group, which also takes
        whatever the commands left behind in it.
        """
        commands = list(self.commands)
        running = [c for c in commands if c.pid is not None and not c.exited]
        for command in running:
            command.signal_group(signal.SIGTERM)
        if running:
            grace = max(c.settings.kill_grace for c in running)
            _wait_for_exit([c.pid for c in running if c.pid is not None], grace)
        for command in commands:
            command.destroy()

    # Policy -------------------------------------------------------------------------

    def check_argv(self, argv: tuple[str, ...]) -> str | None:
        """Why argv may not run, or None."""
        name = argv[0]
        if self.allow is not None and name not in self.allow:
            hint = " (start it with --allow-shell to permit sh -c)" if name == "sh" else ""
            return f"{name} is not in this server's allow list{hint}"
        return None

    def ready(self, limits: Limits) -> Ready:
        """What a client learns at login: the limits of its own connection."""
        return Ready(max_frame=limits.max_frame, stdin_window=self.settings.stdin_window,
                     idle_timeout=limits.idle_timeout)

    def audit(self, peer: str, argv: tuple[str, ...], outcome: str) -> None:
        """The one audit line of a RUN request: who, what, and how it ended."""
        log.info("exec peer=%s argv=%s %s", peer, _shown(json.dumps(list(argv))), outcome)

    def audit_body(self, peer: str, body: bytes, outcome: str) -> None:
        """The audit line of a RUN that was not even a valid request: its raw body."""
        text = json.dumps(body.decode("utf-8", "backslashreplace"))
        log.info("exec peer=%s body=%s %s", peer, _shown(text), outcome)


def _shown(text: str) -> str:
    """JSON text for an audit line (newlines escaped: one request, one line), cut short."""
    if len(text) > AUDIT_ARGV_MAX:
        return f"{text[:AUDIT_ARGV_MAX]}...({len(text) - AUDIT_ARGV_MAX} more)"
    return text
