"""Issue 8's smaller defects, over real processes: bounded logs, file modes, client exits."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from net import STEP, LineClient, open_client, read_line, read_until_eof
from proc import Served, run_sockhub, start_sockhub
from sockhub.config import ServiceConfig
from sockhub.engine.server import StreamServer
from sockhub.errors import ConfigError
from sockhub.logs import BURST, INTERVAL
from sockhub.services.registry import SERVICES

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


async def test_a_planted_symlink_or_a_directory_others_may_write_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "chat.sqlite3").symlink_to(tmp_path / "elsewhere.db")
    code, _, err = await run_sockhub("serve", "chat", "--port", "0", "--data-dir", str(data))
    assert code == 2 and b"chat.sqlite3 is a symlink" in err
    assert not (tmp_path / "elsewhere.db").exists()
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    code, _, err = await run_sockhub("serve", "chat", "--port", "0", "--data-dir", str(shared))
    assert code == 2 and b"writable by group or others (mode 777)" in err
    assert b"run: chmod 700" in err


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


# --- ping: a wrong reply is a loss, and the exit status says so ---------------------


class _EchoThenGarble(asyncio.Protocol):
    """Echoes the first ``honest`` bytes, then answers each byte with an ``x``."""

    def __init__(self, honest: int) -> None:
        self.honest = honest

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        good, self.honest = data[: self.honest], max(0, self.honest - len(data))
        self.transport.write(good + b"x" * (len(data) - len(good)))  # type: ignore[attr-defined]


async def test_ping_counts_a_wrong_reply_as_lost_and_exits_1():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _EchoThenGarble(32), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        code, out, _ = await run_sockhub("ping", "127.0.0.1", str(port), "-c", "2",
                                         "-i", "0.05", "-W", "5")
    finally:
        server.close()
    text = out.decode()
    assert f"32 bytes from 127.0.0.1:{port}: seq=1 time=" in text
    assert f"32 bytes from 127.0.0.1:{port}: seq=2 wrong reply" in text
    assert "2 probes sent, 1 received, 1 wrong, 50% loss" in text
    assert code == 1


class _LateFirstEcho(asyncio.Protocol):
    """Holds the first probe until the second arrives, then echoes both: a late answer."""

    def __init__(self) -> None:
        self.held = b""
        self.probes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.probes += 1
        if self.probes == 1:
            self.held = data
            return
        self.transport.write(self.held + data)  # type: ignore[attr-defined]
        self.held = b""


async def test_ping_tcp_a_late_answer_is_not_taken_for_the_next_probe():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_LateFirstEcho, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        code, out, _ = await run_sockhub("ping", f"127.0.0.1:{port}", "-c", "3",
                                         "-i", "0.05", "-W", "0.5")
    finally:
        server.close()
    text = out.decode()
    assert "no answer from" in text and "seq=1 (timeout" in text
    assert "seq=2 time=" in text and "seq=3 time=" in text and "wrong" not in text
    assert "3 probes sent, 2 received" in text
    assert code == 1


async def test_ping_udp_against_a_service_that_answers_something_else_exits_1():
    class Nope(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: object) -> None:
            self.transport.sendto(b"nope", addr)  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Nope, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        code, out, _ = await run_sockhub("ping", f"127.0.0.1:{port}", "--udp", "-c", "1",
                                         "-W", "5")
    finally:
        transport.close()
    assert b"4 bytes from" in out and b"wrong reply" in out
    assert b"1 probes sent, 0 received, 1 wrong, 100% loss" in out
    assert code == 1


async def test_ping_exits_0_only_when_every_probe_came_back(serve):
    server = await serve("echo")
    code, out, _ = await run_sockhub("ping", "127.0.0.1", str(server.ports[0]), "-c", "2",
                                     "-i", "0.05")
    assert b"2 probes sent, 2 received, 0% loss" in out and b"wrong" not in out
    assert code == 0


# --- connect HOST PORT, as nc takes it ------------------------------------------------


async def test_connect_takes_host_and_port_apart_as_nc_does(serve):
    server = await serve("upper")
    code, out, err = await run_sockhub("connect", "127.0.0.1", str(server.ports[0]),
                                       stdin=b"nc habit\n")
    assert (code, out) == (0, b"NC HABIT\r\n"), err
    v6 = await serve("upper", hosts=("::1",))
    for host in ("::1", "[::1]"):
        code, out, err = await run_sockhub("connect", host, str(v6.ports[0]), stdin=b"v6\n")
        assert (code, out) == (0, b"V6\r\n"), err


async def test_connect_with_a_port_given_twice_is_a_clear_error():
    code, _, err = await run_sockhub("connect", "127.0.0.1:9000", "9001")
    assert code == 2
    assert b"give HOST PORT or HOST:PORT, not both" in err and b"usage" not in err
    code, _, err = await run_sockhub("connect", "127.0.0.1", "http")
    assert code == 2 and b"expected HOST PORT" in err


# --- A failed bind names the port it tried --------------------------------------------


def _occupied() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


async def test_a_failed_bind_names_the_port_given_or_the_doors(tmp_path):
    with _occupied() as taken:
        port = taken.getsockname()[1]
        code, _, err = await run_sockhub("serve", "echo", "--port", str(port))
        assert code == 2
        assert f"echo: cannot listen on 127.0.0.1:{port}: Address already in use".encode() in err
        code, _, err = await run_sockhub("serve", "chat", "--port", "0", "--irc-port",
                                         str(port), "--data-dir", str(tmp_path))
        assert code == 2
        assert f"irc: cannot listen on 127.0.0.1:{port}: Address already in use".encode() in err


async def test_a_failed_bind_on_the_default_port_names_it():
    with _occupied() as taken:
        port = taken.getsockname()[1]
        spec = replace(SERVICES["echo"], default_port=port)  # what binds with no --port
        server = StreamServer(ServiceConfig(service="echo"), spec)
        with pytest.raises(ConfigError, match=f"^echo: cannot listen on 127.0.0.1:{port}: "):
            await server.start()


# --- UDP echo: an empty datagram is a datagram ----------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_udp_echo_returns_an_empty_datagram(loop):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    served = await start_sockhub("udp-echo", "--port", "0", "--loop", loop)
    try:
        port = served.ports["udp-echo, udp"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(STEP)
            sock.connect(("127.0.0.1", port))
            for payload in (b"", b"after", b""):
                sock.send(payload)
                assert await asyncio.to_thread(sock.recv, 100) == payload
    finally:
        assert await served.stop() == 0
