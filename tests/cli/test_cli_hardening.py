"""Issue 8's smaller defects, over real processes: bounded logs, file modes, client exits."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from pathlib import Path

from net import LineClient, open_client, read_line, read_until_eof
from proc import Served, start_sockhub
from sockhub.logs import BURST, INTERVAL

# --- Logs under attack -------------------------------------------------------------


async def test_a_flood_of_refused_connections_logs_a_bounded_number_of_lines():
    served = await start_sockhub("echo", "--port", "0", "--max-conns", "1")
    port = served.ports["echo"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        kept = await open_client(port)
        kept[1].write(b"in\n")  # admitted before the flood starts
        assert await read_line(kept[0]) == b"in\n"
        refused = 300

        async def one() -> None:
            reader, writer = await open_client(port)
            assert await read_until_eof(reader) == (
                b"error: server full (1 connections); try again later\r\n")
            writer.close()

        for _ in range(refused // 50):
            await asyncio.gather(*(one() for _ in range(50)))
        kept[1].close()
    finally:
        assert await served.stop() == 0
    elapsed = loop.time() - started
    lines = [line for line in served.log if "refused" in line]
    full = [line for line in lines if re.search(r"refused 127\.0\.0\.1:\d+: server full", line)]
    summaries = [re.search(r"refused ([\d,]+) more connections in the last [\d.]+ s: "
                           r"server full \(1 connections\); try again later \(([\d,]+) times?\)",
                           line) for line in lines if line not in full]
    assert all(summaries), lines
    # Every refusal is accounted for, the last window's by the flush at shutdown ...
    counted = sum(int(m.group(1).replace(",", "")) for m in summaries)  # type: ignore[union-attr]
    assert len(full) + counted == refused
    # ... in at most BURST lines and one summary per window of INTERVAL seconds.
    windows = 1 + int(elapsed // INTERVAL) + 1
    assert len(lines) <= (BURST + 1) * windows
    assert len(full) >= BURST and summaries


# --- Files on disk -----------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _start_with_umask(umask: int, *args: str, listeners: int = 1) -> Served:
    """Start a server with ``umask`` (inherited by the child), then restore ours."""
    old = os.umask(umask)
    try:
        return await start_sockhub(*args, listeners=listeners)
    finally:
        os.umask(old)


async def test_the_data_directory_is_0700_and_every_file_in_it_0600(tmp_path):
    data = tmp_path / "state" / "sockhub"
    # umask 0 would leave a plain open() or sqlite3.connect() at 0666/0777.
    chat = await _start_with_umask(0, "chat", "--port", "0", "--data-dir", str(data))
    try:
        user = LineClient(*await open_client(chat.ports["chat"]))
        await user.send("alice")
        await user.expect("you are alice")
        await user.send("stored while the server runs")
        await user.expect("<alice> stored while the server runs")
        files = {p.name: _mode(p) for p in data.iterdir()}
        # SQLite made its side files with the database's mode.
        assert files == {"chat.sqlite3": 0o600, "chat.sqlite3-wal": 0o600,
                         "chat.sqlite3-shm": 0o600}
        user.close()
    finally:
        assert await chat.stop() == 0
    exe = await _start_with_umask(0, "exec", "--port", "0", "--allow", "echo",
                                  "--data-dir", str(data))
    assert await exe.stop() == 0
    assert _mode(data / "exec-token") == 0o600
    assert _mode(data) == 0o700
    assert _mode(data.parent) == 0o700  # created as a missing parent
    assert all(_mode(p) == 0o600 for p in data.iterdir())
    assert not any("open to group or others" in line for line in chat.log + exe.log)


async def test_loose_modes_left_by_an_older_version_are_reported_or_tightened(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    for name in ("chat.sqlite3", "chat.sqlite3-wal"):
        (data / name).touch()
        os.chmod(data / name, 0o644)
    chat = await start_sockhub("chat", "--port", "0", "--data-dir", str(data))
    try:
        files = {p.name: _mode(p) for p in data.iterdir()}
    finally:
        assert await chat.stop() == 0
    assert files == {"chat.sqlite3": 0o600, "chat.sqlite3-wal": 0o600, "chat.sqlite3-shm": 0o600}
    log = "\n".join(chat.log)
    # The directory may be the operator's own choice: told how, not changed.
    assert f"data directory {data} is open to group or others (mode 755)" in log
    assert f"run: chmod 700 {data}" in log
    assert _mode(data) == 0o755
    # The files are sockhub's: tightened, and said so.
    for name in ("chat.sqlite3", "chat.sqlite3-wal"):
        assert f"{data / name} was open to group or others (mode 644); now 0600" in log
