"""The chat client's connection: connect, register, reconnect, and the user's lines.

:class:`ChatClient` owns one connection at a time and the reconnect loop
(:class:`Backoff` is its schedule, pure), feeds server lines to the parser,
the state and the screen, and decides what happens to what the user types
in each phase (see the phases in :mod:`sockhub.client.chat`).
:func:`run_chat` is ``sockhub chat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import random
import re
import ssl
import sys
from dataclasses import dataclass

from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.patch_stdout import patch_stdout

from sockhub.client.chat.lines import Kind, parse_server_line, sanitize
from sockhub.client.chat.render import render
from sockhub.client.chat.screens import PlainScreen, PromptScreen, Screen
from sockhub.client.chat.state import YOU_ARE, ChatState, Resume

#: The server's default ``--max-line`` for chat (docs/chat-line.md). A longer
#: line would make the server close the connection, so the client refuses it.
MAX_LINE = 8192
#: How long ``/quit`` waits for the server's ``-- bye`` and close.
QUIT_WAIT = 2.0
CONNECT_TIMEOUT = 10.0
#: StreamReader limit: generous, since the server caps its own lines.
READ_LIMIT = 1 << 20


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter: ``initial`` doubling up to ``maximum`` seconds.

    Jitter takes up to ``jitter`` (a fraction) off each delay, so clients that
    lost the same server do not all come back in the same instant.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.25

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based); ``rand`` in [0, 1)."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * rand)


class Phase(enum.Enum):
    OFFLINE = "offline"
    GREETING = "greeting"  # connected; the nick goes after the server's prompt
    REGISTERING = "registering"  # our nick is sent; the user's lines wait for the answer
    CHOOSING = "choosing"  # the nick was refused; the user's next line is a nick
    READY = "ready"


_QUIT = re.compile(r"/quit(\s|\Z)", re.IGNORECASE)


class ChatClient:
    """One chat session: the connection, reconnecting, and the user's lines."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        nick: str | None,
        tls: ssl.SSLContext | None,
        reconnect: bool,
        interactive: bool,
        backoff: Backoff | None = None,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.wanted_nick = nick or ""  # empty: a guest nick
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        self.state = ChatState()
        self.phase = Phase.OFFLINE
        self.resume: Resume | None = None
        self.held: list[str] = []
        self.quitting = False
        self.writer: asyncio.StreamWriter | None = None
        self.screen: Screen = (
            PromptScreen(self.state, self.prompt) if interactive else PlainScreen()
        )
        self._tried = asyncio.Event()  # the first connection attempt is over
        self._connection: asyncio.Task[int] | None = None

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def prompt(self) -> StyleAndTextTuples:
        """The prompt: the current room, ``nick>`` before registration, ``(offline)``."""
        if self.phase is Phase.OFFLINE:
            return [("class:prompt.offline", "(offline)"), ("", " "),
                    ("class:prompt", self.state.current or ""), ("", "> ")]
        if self.phase is not Phase.READY:
            return [("class:prompt", "nick"), ("", "> ")]
        return [("class:prompt", self.state.current or ""), ("", "> ")]

    def notice(self, text: str) -> None:
        self.screen.show([("class:info", f"-- {text}")])

    # Running -------------------------------------------------------------

    async def run(self) -> int:
        """Chat until the user quits (0), Ctrl-C (130) or, without reconnect, a loss (1)."""
        self._connection = asyncio.create_task(self._connect_loop())
        typing: asyncio.Task[int] | None = None
        try:
            tried = asyncio.create_task(self._tried.wait())
            await asyncio.wait({self._connection, tried}, return_when=asyncio.FIRST_COMPLETED)
            tried.cancel()
            if self._connection.done():
                return self._connection.result()
            # Read the user only now: a script's first lines must not meet "not connected".
            typing = asyncio.create_task(self._input_loop())
            await asyncio.wait({self._connection, typing}, return_when=asyncio.FIRST_COMPLETED)
            if typing.done():
                return typing.result()
            return self._connection.result()
        finally:
            for task in (typing, self._connection):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self.screen.close()

    async def _connect_loop(self) -> int:
        failures = 0
        while True:
            connected = registered = False
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, ssl=self.tls, limit=READ_LIMIT),
                    CONNECT_TIMEOUT,
                )
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                reason = _describe(exc)
            else:
                connected = True
                self._tried.set()
                reason, registered = await self._session(reader, writer)
            self._tried.set()
            if self.quitting:
                return 0
            if not self.reconnect:
                if connected:
                    self.notice(f"connection lost ({reason})")
                else:
                    print(f"sockhub chat: {self.where}: {reason}", file=sys.stderr)
                return 1
            if registered:
                failures = 0
            delay = self.backoff.delay(failures, random.random())
            failures += 1
            if connected:
                self.notice(f"connection lost; reconnecting in {delay:.1f} s")
            else:
                self.notice(f"cannot connect to {self.where} ({reason}); retrying in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, bool]:
        """Talk on one connection until it ends; (why it ended, whether we registered)."""
        self.writer = writer
        self.phase = Phase.GREETING
        self.screen.refresh()
        if self.resume is not None:
            self.notice(f"reconnected to {self.where}")
        reason, registered = "closed by the server", False
        try:
            while raw := await reader.readline():
                self._server_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
                registered = registered or self.phase is Phase.READY
        except ValueError:
            reason = "line too long"
        except (OSError, ssl.SSLError) as exc:
            reason = _describe(exc)
        finally:
            self.writer = None
            self.phase = Phase.OFFLINE
            self.resume = self.state.connection_lost() or self.resume
            if self.held:
                self.notice(f"not connected; {len(self.held)} line(s) not sent")
                self.held.clear()
            self.screen.refresh()
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        return reason, registered

    def _server_line(self, text: str) -> None:
        line = parse_server_line(sanitize(text))
        if self.phase is Phase.GREETING and line.kind is Kind.INFO:
            if line.text.startswith("enter a nick"):
                nick = self.resume.nick if self.resume else self.wanted_nick
                self._send(nick)
                self.phase = Phase.REGISTERING
                return
            if self.resume is not None:
                return  # the welcome again, after a reconnect: noise
        self.state.apply(line)
        self.screen.show(render(line, self.state.nick))
        if line.kind is Kind.INFO and self.state.nick and YOU_ARE.match(line.text):
            self.phase = Phase.READY
            if self.resume is not None:
                for join in self.resume.rejoin_lines():
                    self._send(join)
                self.resume = None
            self._send_held()
        elif line.kind is Kind.ERROR and self.phase is Phase.REGISTERING:
            self.phase = Phase.CHOOSING
            self.notice("type another nick (or an empty line for a guest nick)")
            self._send_held()
        self.screen.refresh()

    # The user's side -------------------------------------------------------

    async def _input_loop(self) -> int:
        while True:
            try:
                typed = await self.screen.read_line()
            except EOFError:  # Ctrl-D, or the end of a script
                return await self._quit("/quit")
            except KeyboardInterrupt:
                self._interrupt()
                return 130
            for line in typed.splitlines() or [""]:  # a paste may hold several lines
                if _QUIT.match(line):
                    return await self._quit(line)
                self._submit(line)
            if self.writer is not None:
                with contextlib.suppress(OSError, ssl.SSLError):
                    await self.writer.drain()

    def _submit(self, line: str) -> None:
        if self.phase is Phase.OFFLINE:
            self.notice(f"not connected; not sent: {line}")
        elif self.phase in (Phase.GREETING, Phase.REGISTERING):
            self.held.append(line)
        elif self.phase is Phase.READY and not line.strip():
            pass  # nothing to say
        elif len(line.encode()) > MAX_LINE - 2:
            self.notice(f"line too long (the server takes at most {MAX_LINE} bytes); not sent")
        else:
            self._send(line)

    def _send_held(self) -> None:
        held, self.held = self.held, []
        for line in held:
            self._submit(line)

    def _send(self, line: str) -> None:
        if self.writer is not None:
            self.writer.write(line.encode() + b"\n")

    async def _quit(self, line: str) -> int:
        """Send ``/quit``, wait briefly for the server's close, and leave with status 0."""
        self.quitting = True
        assert self._connection is not None
        if self.writer is None:
            return 0
        wait = QUIT_WAIT
        if self.phase in (Phase.GREETING, Phase.REGISTERING):
            self.held.append(line)  # after the lines typed before it, once we have a nick
            wait += CONNECT_TIMEOUT
        else:
            self._send(line)
        await asyncio.wait({self._connection}, timeout=wait)
        return 0

    def _interrupt(self) -> None:
        """Ctrl-C: say goodbye without waiting for the answer."""
        self.quitting = True
        if self.writer is not None:
            self._send("/quit")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.errno:  # asyncio's strerror names the address
        return os.strerror(exc.errno).lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


async def run_chat(
    host: str,
    port: int,
    *,
    nick: str | None,
    tls: ssl.SSLContext | None,
    reconnect: bool = True,
) -> int:
    """Chat on ``host:port`` until the user quits.

    On a terminal the input line stays at the bottom and incoming lines print
    above it; otherwise stdin and stdout are read and written line by line.

    Returns:
        0 after ``/quit`` or Ctrl-D (or the end of piped input), 130 after
        Ctrl-C, 1 when the connection fails or is lost and ``reconnect`` is
        False.
    """
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    client = ChatClient(host, port, nick=nick, tls=tls, reconnect=reconnect,
                        interactive=interactive)
    if not interactive:
        return await client.run()
    with patch_stdout(raw=True):  # stray prints go above the prompt too
        return await client.run()
