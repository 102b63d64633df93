"""ExecDoor: one exec client, the sans-I/O server protocol with the service's policy filled in.

Login first: a wrong answer is told after a delay that grows with the
address's recent failures (``login.py``), a right one is let in at
once; then commands, one at a time, each audited on exactly one log line.
Output flows from the command's pipes to the client with no queue in
between (see ``services/exec.py``): :data:`QUEUE_MAX` bounds what piles
up between two flushes of the engine.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sockhub.protocols.base import ConnectionInfo
from sockhub.protocols.exec import (
    ErrorCode,
    ExecProtocolError,
    ExecServerProtocol,
    ExitStatus,
    Reason,
    RunRequest,
    parse_run_request,
    verify_answer,
)
from sockhub.services.exec_command import Command
from sockhub.services.login import DoorLogin

if TYPE_CHECKING:
    from sockhub.services.exec import ExecService

log = logging.getLogger("sockhub.exec")

#: Output queued for a client since the engine last took it, past which the
#: pipes pause until it does. The engine writes queued output once per loop
#: iteration, after the reads; this cap keeps what piles up in between small
#: whatever order a loop runs them in, far below write_buffer_max (past
#: which the engine drops a client).
QUEUE_MAX = 128 * 1024


class ExecDoor(ExecServerProtocol):
    """One client: a login slot, the login, then commands one at a time."""

    __slots__ = ("_queued", "command", "login", "paused", "service", "throttled")

    def __init__(self, service: ExecService, nonce: bytes) -> None:
        super().__init__(nonce, stdin_window=service.settings.stdin_window)
        self.service = service
        self.command: Command | None = None
        self.paused = False  # by the engine: the client is not keeping up
        self.throttled = False  # by us: QUEUE_MAX queued, the engine has not taken it yet
        self._queued = 0
        #: The login (shared with the files service: services/login.py).
        self.login = DoorLogin(service.gate, self,
                               lambda token, answer: verify_answer(token, self.nonce, answer))

    def connection_made(self, info: ConnectionInfo) -> None:
        refusal = self.login.begin(info)
        if refusal is not None:
            # Before the challenge, so a refused connection cannot guess.
            self.info = info
            self.fail(ErrorCode.RATE_LIMITED, refusal)
            return
        super().connection_made(info)

    def evict(self) -> None:
        """Every login slot is taken and this one is the oldest of its address: close it."""
        self.login.evict()

    def auth_received(self, answer: bytes) -> None:
        self.login.answer(answer)

    def login_accepted(self) -> None:
        self.accept_auth(self.service.ready(self.info.limits))

    def login_refused(self, code: str, message: str) -> None:
        self.fail(ErrorCode(code), message)

    def bad_run_received(self, body: bytes, error: ExecProtocolError) -> None:
        try:  # a valid request at the wrong time: show its argv as usual
            argv = parse_run_request(body).argv
        except ExecProtocolError:
            self.service.audit_body(self.info.peer, body, f"refused={error.code}")
        else:
            self.service.audit(self.info.peer, argv, f"refused={error.code}")

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
        self.login.end()
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
