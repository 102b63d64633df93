"""Helpers of the browser tier: the server as a process, raw line and IRC users.

The server is a real ``python -m sockhub serve chat`` process; its
``listening on`` lines are read from stderr by a thread, with a timeout.
The line and IRC doors are driven by plain blocking sockets with timeouts.
"""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

LISTENING = re.compile(r"listening on (\S+):(\d+) \(([^)]*)\)")
STEP = 10.0  # seconds any one expected thing may take on a loaded machine


class Sockhub:
    """``sockhub serve chat`` with the line, IRC and web doors, as a process.

    ``start()`` again after ``stop()`` reuses the same ports and data
    directory: the restart a page must live through.
    """

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir, self.extra = data_dir, extra
        self.ports: dict[str, int] = {}
        self.log: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self, doors: tuple[str, ...] = ("chat", "irc", "web")) -> None:
        port = {name: str(self.ports.get(name, 0)) for name in ("chat", "irc", "web")}
        args = ["--port", port["chat"], "--data-dir", str(self.data_dir), *self.extra]
        if "irc" in doors:
            args += ["--irc-port", port["irc"]]
        if "web" in doors:
            args += ["--web-port", port["web"]]
        proc = subprocess.Popen(
            [sys.executable, "-m", "sockhub", "serve", "chat", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, errors="replace")
        self.proc = proc
        lines: queue.Queue[str | None] = queue.Queue()

        def drain() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                lines.put(raw.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while not seen >= set(doors):
            try:
                text = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError(
                    "sockhub did not listen in 30 s:\n" + "\n".join(self.log)) from None
            if text is None:
                self.kill()
                raise AssertionError("sockhub exited early:\n" + "\n".join(self.log))
            self.log.append(text)
            match = LISTENING.search(text)
            if match and match.group(3).split(",")[0] in doors:
                name = match.group(3).split(",")[0]
                seen.add(name)
                self.ports.setdefault(name, int(match.group(2)))
        self._lines = lines

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['web']}/"

    def stop(self) -> None:
        """A graceful stop (SIGTERM), as a restart does."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
                raise

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class RawClient:
    """A blocking line client (the line door or the IRC door) with timeouts."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=STEP)
        self.file = self.sock.makefile("rb")
        self.seen: list[str] = []

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def expect(self, needle: str, timeout: float = STEP) -> str:
        """Read lines until one contains ``needle``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                raw = self.file.readline()
            except TimeoutError:
                raise AssertionError(
                    f"no {needle!r} in {timeout} s; saw {self.seen[-8:]}") from None
            if not raw:
                raise AssertionError(f"EOF waiting for {needle!r}; saw {self.seen[-8:]}")
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.seen.append(line)
            if line.startswith("PING "):
                self.send("PONG " + line[5:])
            if needle in line:
                return line

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def line_user(port: int, nick: str) -> RawClient:
    """A line-door user, registered and in #lobby."""
    c = RawClient(port)
    c.expect("enter a nick")
    c.send(nick)
    c.expect(f"-- you are {nick}")
    c.expect("-- in #lobby")
    return c


def irc_user(port: int, nick: str, room: str = "#lobby") -> RawClient:
    """An IRC-door user, registered and joined to ``room``."""
    c = RawClient(port)
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :{nick}")
    c.expect(" 001 ")
    c.send(f"JOIN {room}")
    c.expect(" 366 ")
    return c


def page_errors(page: Any) -> list[str]:
    """Collect the page's errors and dialogs (a dialog would mean script ran)."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)

    def dialog(d: Any) -> None:
        errors.append(f"dialog: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    return errors
