"""Run ``sockhub`` as a real process and wait for its ``listening on`` lines."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass, field

LISTENING = re.compile(r"listening on (\S+):(\d+) \(([^)]*)\)")


@dataclass
class Served:
    process: asyncio.subprocess.Process
    ports: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    async def expect_log(self, needle: str, timeout: float = 20.0) -> str:
        """Read the server's stderr until a line contains ``needle``; return it."""
        assert self.process.stderr is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            raw = await asyncio.wait_for(self.process.stderr.readline(), deadline - loop.time())
            if not raw:
                raise AssertionError(f"EOF waiting for {needle!r}; saw {self.log[-5:]}")
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if needle in line:
                return line

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.returncode is None:
            self.process.send_signal(sig)
        try:
            return await self._exit(timeout)
        except TimeoutError:
            pass
        # Stuck: SIGABRT makes the faulthandler (PYTHONFAULTHANDLER, set by
        # start_sockhub) print every thread's stack, so the failure says where.
        self.process.send_signal(signal.SIGABRT)
        try:
            await self._exit(10.0)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        raise AssertionError(f"sockhub did not stop within {timeout} s of signal {sig}; "
                             "its last lines:\n" + "\n".join(self.log[-60:]))

    async def _exit(self, timeout: float) -> int:
        assert self.process.stderr is not None
        # Read while waiting: a server with more to log than a pipe holds
        # would otherwise block on its last lines and never exit.
        _, code = await asyncio.wait_for(
            asyncio.gather(self._read_log(), self.process.wait()), timeout)
        return code

    async def _read_log(self) -> None:
        """Keep every line (line by line: a timeout loses none already read)."""
        assert self.process.stderr is not None
        while raw := await self.process.stderr.readline():
            self.log.append(raw.decode(errors="replace").rstrip())


async def start_sockhub(*args: str, listeners: int = 1, env: dict[str, str] | None = None,
                        timeout: float = 30.0) -> Served:
    """Start ``sockhub serve ARGS`` and wait for ``listeners`` listening lines."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sockhub", "serve", *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})},
    )
    served = Served(process)
    assert process.stderr is not None
    try:
        while len(served.ports) < listeners:
            line = await asyncio.wait_for(process.stderr.readline(), timeout)
            if not line:
                raise AssertionError("sockhub exited early:\n" + "\n".join(served.log))
            text = line.decode(errors="replace").rstrip()
            served.log.append(text)
            match = LISTENING.search(text)
            if match:
                served.ports[match.group(3)] = int(match.group(2))
    except BaseException:
        if process.returncode is None:
            process.kill()
        await process.wait()
        raise
    return served


async def run_sockhub(*args: str, stdin: bytes = b"", timeout: float = 60.0,
                      env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """Run a client command to completion: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sockhub", *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out, err
