"""One command of the exec service: a process group from spawn to EXIT.

Split from :mod:`sockhub.services.exec`, which holds the policy and the
door; this module is the part that touches processes and pipes.

Who kills a command, and what escapes:

* the server, with ``killpg`` on the command's process group: on timeout,
  cancel, output limit, a vanished client, the command's own exit (what it
  left behind), and when the service closes (SIGTERM, then SIGKILL);
* the kernel, when the server dies without closing (``kill -9``, a crash):
  each command's main process is started with ``PR_SET_PDEATHSIG`` =
  SIGKILL (:func:`_die_with_server`). That does not reach its children,
  which do not inherit the setting: they are orphaned, not killed. Nor
  does it survive exec of a set-user-ID or file-capability program (the
  kernel clears it), and processes that left the group (``setsid``)
  escape ``killpg`` too. For hard containment, run the server under a
  service manager that kills its whole cgroup (systemd ``KillMode=control-group``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sockhub.protocols.exec import CHUNK_SIZE, ErrorCode, ExitStatus, Reason, RunRequest

if TYPE_CHECKING:
    from sockhub.services.exec import ExecService
    from sockhub.services.exec_door import ExecDoor

log = logging.getLogger("sockhub.exec")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, or None where there is none (not Linux).

    Looked up once, in the server, so that a child between fork and exec
    makes two system calls and loads nothing.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def _die_with_server(prctl: Callable[..., int], server: int) -> None:
    """In the child (a preexec_fn): be SIGKILLed when the server ends.

    Strictly, when the thread that forked the child ends: the event loop's,
    which lives as long as the server. Asked for after fork, so the server
    may have died in between; then the parent is someone else already and
    the child ends itself.
    """
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != server:
        os.kill(os.getpid(), signal.SIGKILL)


def _preexec() -> Callable[[], None] | None:
    if _PRCTL is None:
        return None
    return functools.partial(_die_with_server, _PRCTL, os.getpid())


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
        # A reload changes the service's settings; this command keeps its own.
        self.settings = service.settings
        self.env = service.env
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
                cwd=self.settings.cwd, env=self.env, start_new_session=True,
                preexec_fn=_preexec(),
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
        if self.finished:  # destroyed meanwhile, and audited then
            return
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
            self.signal_group(signal.SIGKILL)

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
        self.signal_group(signal.SIGKILL)
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
        self.signal_group(signal.SIGTERM)
        if self._kill is None:
            self._kill = self.loop.call_later(
                self.settings.kill_grace, self.signal_group, signal.SIGKILL
            )

    def destroy(self) -> None:
        """The server is closing: kill now and release the pipes without waiting."""
        self.reason = self.reason or "shutdown"
        if self._task is not None and self.transport is None:
            self._task.cancel()
        if not self.exited:
            self.signal_group(signal.SIGKILL)
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

    def signal_group(self, signum: int) -> None:
        """Signal the command's process group, if it has one still."""
        if self.pid is not None and not self.finished:
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
