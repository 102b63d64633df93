"""Screens, the terminal side of the chat client: the user's lines in, server lines out.

:class:`PromptScreen` keeps an input line at the bottom (prompt_toolkit)
when stdin and stdout are terminals; :class:`PlainScreen` reads and writes
plain lines for scripts and pipes. Both offer ``show``, ``refresh``,
``read_line`` and ``close``, so the client does not care which it has; a
module of their own because they are the only code that touches the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable

from prompt_toolkit import PromptSession
from prompt_toolkit.application import in_terminal
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.renderer import print_formatted_text

from sockhub.client.chat.complete import ChatCompleter
from sockhub.client.chat.render import STYLE
from sockhub.client.chat.state import ChatState


class PlainScreen:
    """Line by line on stdin and stdout: for pipes and scripts, where there is no prompt."""

    def __init__(self) -> None:
        self._lines: asyncio.Queue[str | None] | None = None

    def show(self, fragments: StyleAndTextTuples) -> None:
        with contextlib.suppress(BrokenPipeError):
            print("".join(text for _, text, *_ in fragments), flush=True)

    def refresh(self) -> None:
        pass

    async def read_line(self) -> str:
        """The next line of stdin. Raises EOFError at its end."""
        if self._lines is None:
            self._lines = asyncio.Queue()
            threading.Thread(
                target=_read_stdin, args=(asyncio.get_running_loop(), self._lines), daemon=True
            ).start()
        line = await self._lines.get()
        if line is None:
            self._lines.put_nowait(None)  # stay at the end
            raise EOFError
        return line

    async def close(self) -> None:
        pass


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    # A thread, as in connect.py: asyncio cannot watch every kind of stdin.
    # os.read, not sys.stdin: a thread blocked inside sys.stdin holds its lock,
    # and Python aborts at exit when a daemon thread holds it.
    pending = b""
    while True:
        try:
            chunk = os.read(0, 65536)
        except OSError:
            chunk = b""
        if chunk:
            *lines, pending = (pending + chunk).split(b"\n")
        else:  # the end: a last line without its newline still counts
            lines, pending = [pending] if pending else [], b""
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(queue.put_nowait, line)
        if not chunk:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, None)
            return


class PromptScreen:
    """prompt_toolkit: an input line at the bottom, server lines printed above it."""

    def __init__(self, state: ChatState, prompt: Callable[[], StyleAndTextTuples]) -> None:
        self.session: PromptSession[str] = PromptSession(
            message=prompt,
            completer=ChatCompleter(state),
            complete_while_typing=False,  # Tab completes, as in IRC clients and shells
            erase_when_done=True,  # the server echoes what we said; show it once
            style=STYLE,
        )
        self._pending: list[StyleAndTextTuples] = []
        self._printer: asyncio.Task[None] | None = None

    def show(self, fragments: StyleAndTextTuples) -> None:
        # Lines are batched and printed by one task, in order: one redraw of
        # the prompt per batch rather than per line when a room is busy.
        self._pending.append(fragments)
        if self._printer is None or self._printer.done():
            self._printer = asyncio.get_running_loop().create_task(self._print_pending())

    async def _print_pending(self) -> None:
        output = self.session.output
        while self._pending:
            batch, self._pending = self._pending, []
            async with in_terminal():  # hides the prompt, prints, draws it again
                for fragments in batch:
                    print_formatted_text(output, [*fragments, ("", "\n")], STYLE)
                output.flush()

    def refresh(self) -> None:
        """Draw the prompt again: the phase or the current room changed."""
        if self.session.app.is_running:
            self.session.app.invalidate()

    async def read_line(self) -> str:
        """The next line typed. Raises EOFError (Ctrl-D) or KeyboardInterrupt (Ctrl-C)."""
        return await self.session.prompt_async()

    async def close(self) -> None:
        if self._printer is not None:
            await self._printer


Screen = PlainScreen | PromptScreen
