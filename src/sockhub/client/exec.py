"""``sockhub exec`` and its Python API: run commands on a sockhub exec server.

asyncio::

    token = read_token("exec-token")
    async with await ExecClient.connect("10.0.0.5", 9001, token=token, tls=context) as client:
        result = await client.run(["uname", "-a"])
        print(result.stdout.decode(), result.exit_status)

blocking (its own event loop; not from inside a running one)::

    with BlockingExecClient("10.0.0.5", 9001, token=token) as client:
        result = client.run(["sort"], stdin=b"b\\na\\n")

Output is collected into :class:`ExecResult` unless ``on_stdout`` /
``on_stderr`` callbacks are given, which then get every chunk as it
arrives (the CLI writes them straight to its own stdout and stderr, so
gigabytes pass through without being held). Refusals and protocol errors
raise :class:`ExecError`; a command that fails is *not* an exception, it is
a result with a non-zero status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import ssl
import sys
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from sockhub.errors import ProtocolError, SockhubError
from sockhub.protocols.exec import (
    CHUNK_SIZE,
    ClientState,
    ErrorCode,
    ErrorReport,
    ExecClientProtocol,
    ExitStatus,
    Output,
    Ready,
    Reason,
    ServerEvent,
    StdinAck,
)

OutputCallback = Callable[[bytes], object]
READ_SIZE = 256 * 1024

#: Exit statuses of ``sockhub exec`` that are not the remote command's own
#: (see docs/exec-protocol.md): GNU timeout's 124, the shell's 126 and 127,
#: Ctrl-C's 130, and ssh's 255 for "the client itself failed".
EXIT_TIMEOUT = 124
EXIT_OUTPUT_LIMIT = 125
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127
EXIT_CANCELLED = 130
EXIT_CLIENT_ERROR = 255

_ERROR_EXIT: dict[str, int] = {  # str keys: ERROR frames carry codes we may not know
    ErrorCode.NOT_FOUND: EXIT_NOT_FOUND,
    ErrorCode.NOT_ALLOWED: EXIT_CANNOT_RUN,
    ErrorCode.SPAWN_FAILED: EXIT_CANNOT_RUN,
}
_AUTH_CODES = {ErrorCode.AUTH_FAILED, ErrorCode.AUTH_REQUIRED, ErrorCode.AUTH_TIMEOUT,
               ErrorCode.RATE_LIMITED}


class ExecError(SockhubError):
    """The server refused or failed something, or the connection broke.

    Attributes:
        code: the ERROR frame's code, or ``"connection"``/``"protocol"``.
        fatal: the connection is closed; make a new client.
    """

    def __init__(self, code: str, message: str, *, fatal: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal

    @property
    def exit_status(self) -> int:
        """What ``sockhub exec`` exits with for this error."""
        return _ERROR_EXIT.get(self.code, EXIT_CLIENT_ERROR)


class ExecAuthError(ExecError):
    """Login refused: wrong token, too slow, or too many failures from this address."""


def _error(report: ErrorReport) -> ExecError:
    kind = ExecAuthError if report.code in _AUTH_CODES else ExecError
    return kind(report.code, report.message, fatal=report.fatal)


@dataclass(frozen=True)
class ExecResult:
    """How a remote command ended, and its output unless callbacks took it."""

    argv: tuple[str, ...]
    code: int | None
    signal: int | None
    reason: str
    duration: float
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_bytes: int = 0
    stderr_bytes: int = 0

    @property
    def exit_status(self) -> int:
        """A shell-style status: the code, 128 + a signal, or 124/125/130 (see EXIT_*)."""
        if self.reason == Reason.TIMEOUT:
            return EXIT_TIMEOUT
        if self.reason == Reason.OUTPUT_LIMIT:
            return EXIT_OUTPUT_LIMIT
        if self.reason == Reason.CANCELLED:
            return EXIT_CANCELLED
        if self.code is not None:
            return self.code
        return 128 + (self.signal or 0)

    def describe(self) -> str:
        """``exit 3``, ``killed by SIGKILL``, ``timed out``... for messages."""
        if self.signal is not None:
            try:
                ended = f"killed by {signal.Signals(self.signal).name}"
            except ValueError:
                ended = f"killed by signal {self.signal}"
        else:
            ended = f"exit {self.code}"
        extra = {
            Reason.TIMEOUT: "timed out; ",
            Reason.OUTPUT_LIMIT: "output limit reached; ",
            Reason.CANCELLED: "cancelled; ",
        }.get(self.reason, "")  # type: ignore[call-overload]
        return f"{extra}{ended} after {self.duration:.3f}s"


class ExecClient:
    """One authenticated connection; runs commands one after another.

    Make it with :meth:`connect`. Not safe for two concurrent :meth:`run`
    calls: the protocol runs one command at a time per connection (open
    several clients for parallelism).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 protocol: ExecClientProtocol) -> None:
        self._reader, self._writer, self._protocol = reader, writer, protocol
        self._pending: list[ServerEvent] = []
        self._credit = asyncio.Event()
        self._keepalive: asyncio.Task[None] | None = None
        self.ready: Ready | None = None

    @classmethod
    async def connect(cls, host: str | None, port: int | None, *, token: bytes,
                      tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
                      unix: str | None = None, timeout: float = 10.0) -> ExecClient:
        """Connect and log in.

        Raises:
            ExecAuthError: the server refused the token (or rate-limited us).
            ExecError: cannot connect, or the server broke the protocol.
        """
        where = unix or f"{host}:{port}"
        try:
            if unix:
                opened = asyncio.open_unix_connection(unix, ssl=tls,
                                                      server_hostname=server_hostname)
            else:
                opened = asyncio.open_connection(host, port, ssl=tls,
                                                 server_hostname=server_hostname)
            reader, writer = await asyncio.wait_for(opened, timeout)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
            raise ExecError("connection", f"cannot connect to {where}: {reason}") from exc
        client = cls(reader, writer, ExecClientProtocol(token))
        try:
            await asyncio.wait_for(client._login(), timeout)
        except TimeoutError:
            await client.close()
            raise ExecError("connection", f"{where}: no answer to login in {timeout:g}s") from None
        except BaseException:
            await client.close()
            raise
        return client

    async def _login(self) -> None:
        while self.ready is None:
            for event in await self._next_events():
                if isinstance(event, Ready):
                    self.ready = event
                elif isinstance(event, ErrorReport):
                    raise _error(event)
        interval = self.ready.idle_timeout
        if interval is not None:
            self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive(interval / 3))

    async def __aenter__(self) -> ExecClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def running(self) -> bool:
        return self._protocol.state is ClientState.RUNNING

    def cancel(self) -> None:
        """Ask the server to stop the running command (safe from a signal handler)."""
        if self.running:
            self._protocol.cancel()
            self._write()

    async def run(self, argv: Sequence[str], *,
                  stdin: bytes | AsyncIterable[bytes] | None = None,
                  on_stdout: OutputCallback | None = None,
                  on_stderr: OutputCallback | None = None) -> ExecResult:
        """Run ``argv`` on the server (directly, no shell) and wait for it to end.

        Args:
            argv: the program and its arguments.
            stdin: bytes or an async iterable of bytes for the command's
                standard input; None gives it an empty input (/dev/null).
            on_stdout, on_stderr: called with each output chunk as it
                arrives; without them output is collected in the result.

        Raises:
            ExecError: refused (``not_allowed``, ``not_found``, ``busy``...);
                the connection is still usable unless ``fatal``.
        """
        if self._protocol.state is not ClientState.READY:
            raise ExecError("protocol", f"cannot run now ({self._protocol.state.value})",
                            fatal=False)
        argv = tuple(argv)
        self._protocol.run(argv, stdin=stdin is not None)
        self._write()
        sender = None
        if stdin is not None:
            sender = asyncio.get_running_loop().create_task(self._send_stdin(stdin))
        collected: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        sinks = {1: on_stdout or collected[1].extend, 2: on_stderr or collected[2].extend}
        try:
            while True:
                events = await self._next_events()
                for index, event in enumerate(events):
                    if isinstance(event, Output):
                        sinks[event.stream](event.data)
                    elif isinstance(event, StdinAck):
                        self._credit.set()
                    elif isinstance(event, ExitStatus | ErrorReport):
                        self._pending = events[index + 1 :]  # for whoever reads next
                        if isinstance(event, ErrorReport):
                            raise _error(event)
                        return ExecResult(
                            argv, event.code, event.signal, event.reason, event.duration,
                            bytes(collected[1]), bytes(collected[2]),
                            event.stdout_bytes, event.stderr_bytes,
                        )
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, ExecError, OSError):
                    await sender

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.CancelledError):
            await self._writer.wait_closed()

    # Internals -----------------------------------------------------------------------

    def _write(self) -> None:
        data = self._protocol.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _next_events(self) -> list[ServerEvent]:
        """At least one event (answering the challenge on the way)."""
        while not self._pending:
            try:
                data = await self._reader.read(READ_SIZE)
            except (OSError, ssl.SSLError) as exc:
                raise ExecError("connection", f"connection lost: {exc}") from exc
            if not data:
                raise ExecError("connection", "the server closed the connection")
            try:
                self._pending = self._protocol.receive_data(data)
            except ProtocolError as exc:
                raise ExecError("protocol", f"protocol error from server: {exc}") from exc
            self._write()
        events, self._pending = self._pending, []
        return events

    async def _send_stdin(self, source: bytes | AsyncIterable[bytes]) -> None:
        async for chunk in _chunks(source):
            view = memoryview(chunk)
            while view:
                while self._protocol.stdin_credit == 0:
                    self._credit.clear()
                    await self._credit.wait()
                if not self.running:
                    return
                count = min(len(view), self._protocol.stdin_credit)
                self._protocol.send_stdin(bytes(view[:count]))
                view = view[count:]
                self._write()
                await self._writer.drain()
        if self.running:
            self._protocol.end_stdin()
            self._write()

    async def _keep_alive(self, interval: float) -> None:
        """Say something more often than the server's idle timeout, whatever we wait for."""
        while True:
            await asyncio.sleep(interval)
            self._protocol.keepalive()
            self._write()


async def _chunks(source: bytes | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        if source:
            yield bytes(source)
        return
    async for chunk in source:
        if chunk:
            yield chunk


class BlockingExecClient:
    """:class:`ExecClient` for code without an event loop.

    Runs its own loop (``asyncio.Runner``), so it cannot be used from inside
    a running one. Keepalives are only sent during :meth:`run`, so a
    connection left unused for longer than the server's idle timeout is
    closed by the server; the next :meth:`run` then raises ExecError.
    """

    def __init__(self, host: str | None, port: int | None, *, token: bytes,
                 tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
                 unix: str | None = None, timeout: float = 10.0) -> None:
        self._runner = asyncio.Runner()
        try:
            self._client = self._runner.run(ExecClient.connect(
                host, port, token=token, tls=tls, server_hostname=server_hostname, unix=unix,
                timeout=timeout))
        except BaseException:
            self._runner.close()
            raise

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None,
            on_stdout: OutputCallback | None = None,
            on_stderr: OutputCallback | None = None) -> ExecResult:
        """See :meth:`ExecClient.run`."""
        return self._runner.run(
            self._client.run(argv, stdin=stdin, on_stdout=on_stdout, on_stderr=on_stderr)
        )

    def close(self) -> None:
        try:
            self._runner.run(self._client.close())
        finally:
            self._runner.close()

    def __enter__(self) -> BlockingExecClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- The command line ------------------------------------------------------------------


def _reader_thread(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes],
                   read: Callable[[], bytes]) -> None:
    """Read in a thread (asyncio cannot watch every kind of stdin); b"" ends it.

    ``queue.put`` blocks this thread while the queue is full, so a fast
    stdin is read no faster than the server takes it.
    """
    while True:
        try:
            chunk = read()
        except (OSError, ValueError):
            chunk = b""
        try:
            asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
        except (RuntimeError, asyncio.CancelledError):  # the loop is gone
            return
        if not chunk:
            return


def _start_reader(read: Callable[[], bytes]) -> asyncio.Queue[bytes]:
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)
    threading.Thread(target=_reader_thread, args=(asyncio.get_running_loop(), queue, read),
                     daemon=True).start()
    return queue


async def _queued(queue: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
    while chunk := await queue.get():
        yield chunk


def _writer(stream: BinaryIO) -> OutputCallback:
    def write(data: bytes) -> None:
        stream.write(data)
        stream.flush()

    return write


def _say(message: str) -> None:
    print(f"sockhub exec: {message}", file=sys.stderr, flush=True)


async def exec_main(host: str, port: int, command: list[str], *, token: bytes,
                    tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
                    forward_stdin: bool = True, shell: bool = False,
                    connect_timeout: float = 10.0) -> int:
    """``sockhub exec``: one command, or an interactive prompt when ``command`` is empty.

    Returns:
        the remote command's exit status, or one of the EXIT_* codes.
    """
    try:
        client = await ExecClient.connect(host, port, token=token, tls=tls,
                                          server_hostname=server_hostname,
                                          timeout=connect_timeout)
    except ExecError as exc:
        _say(str(exc))
        return exc.exit_status
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        # First Ctrl-C: stop the remote command and report how it ended.
        # A second one (a server that does not answer) interrupts us.
        client.cancel()
        loop.remove_signal_handler(signal.SIGINT)

    try:
        if command:
            loop.add_signal_handler(signal.SIGINT, interrupt)
            argv = ["sh", "-c", " ".join(command)] if shell else command
            stdin = None
            if forward_stdin:
                fd = sys.stdin.fileno()
                stdin = _queued(_start_reader(lambda: os.read(fd, CHUNK_SIZE)))
            return await _run_one(client, argv, stdin)
        return await _interactive(client, shell=shell)
    except BrokenPipeError:
        # Our stdout is gone (``| head -1``): end like a pipeline member that
        # got SIGPIPE. Closing the connection kills the remote command.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error at exit's flush
        os.close(devnull)
        return 128 + signal.SIGPIPE
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        await client.close()


async def _run_one(client: ExecClient, argv: Sequence[str],
                   stdin: AsyncIterable[bytes] | None) -> int:
    try:
        result = await client.run(argv, stdin=stdin, on_stdout=_writer(sys.stdout.buffer),
                                  on_stderr=_writer(sys.stderr.buffer))
    except ExecError as exc:
        _say(str(exc))
        return exc.exit_status
    if result.reason != Reason.EXIT:
        _say(f"{argv[0]}: {result.describe()}")
    return result.exit_status


async def _interactive(client: ExecClient, *, shell: bool) -> int:
    """The seed client's loop: a line in, its output out, ``exit`` quits."""
    lines = _start_reader(sys.stdin.buffer.readline)
    tty = sys.stdin.isatty()
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        if client.running:
            client.cancel()
        else:
            with contextlib.suppress(asyncio.QueueFull):
                lines.put_nowait(b"")

    loop.add_signal_handler(signal.SIGINT, interrupt)
    status = 0
    while True:
        if tty:
            print(">>: ", end="", file=sys.stderr, flush=True)
        raw = await lines.get()
        if not raw:
            break
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        if line == "exit":
            break
        try:
            argv = ["sh", "-c", line] if shell else shlex.split(line)
        except ValueError as exc:
            _say(f"cannot parse that line: {exc}")
            continue
        try:
            result = await client.run(argv, on_stdout=_writer(sys.stdout.buffer),
                                      on_stderr=_writer(sys.stderr.buffer))
        except ExecError as exc:
            _say(str(exc))
            status = exc.exit_status
            if exc.fatal:
                return status
            continue
        status = result.exit_status
        if status:
            _say(f"[{result.describe()}]")
    return status

