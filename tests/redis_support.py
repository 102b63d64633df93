"""A real redis-server on a free loopback port, for the --bus tests.

No skipping: without redis-server the tests fail, saying how to install it
(``make test`` installs it as root with apt-get).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

INSTALL = ("redis-server is not installed: run 'make test' as root, or "
           "'apt-get install -y redis-server' (the --bus tests need a real Redis)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RedisServer:
    """One redis-server process; ``restart`` keeps the port (and loses the data)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    _drain: asyncio.Task[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, *extra: str) -> None:
        """Start it and wait for its "Ready to accept connections" line."""
        binary = shutil.which("redis-server")
        assert binary is not None, INSTALL
        self.process = await asyncio.create_subprocess_exec(
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir), *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert self.process.stdout is not None
        seen = []
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), 10.0)
            assert line, f"redis-server on {self.port} exited: {seen[-5:]}"
            seen.append(line)
            if b"Ready to accept connections" in line:
                break
        # Its few later lines are read away so the pipe never fills.
        self._drain = asyncio.get_running_loop().create_task(self.process.stdout.read())

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 10.0)
        self.process = None
