"""The exec service over real loopback sockets, running real processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import struct
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from helpers import write_token
from irc_support import ManualClock
from net import STEP, reset, server_side, wait_gone
from proc import start_sockhub
from sockhub.client.exec import BlockingExecClient, ExecAuthError, ExecClient, ExecError
from sockhub.codec.lenprefix import FrameDecoder
from sockhub.config import ServiceConfig
from sockhub.engine import loops
from sockhub.engine.server import make_servers
from sockhub.errors import ConfigError
from sockhub.limits import Limits, limit_names
from sockhub.logs import flush_rate_limited
from sockhub.protocols.base import ConnectionInfo
from sockhub.protocols.exec import FrameType, RunRequest, ServerState, compute_answer, encode
from sockhub.services import login as exec_login
from sockhub.services.exec import ExecService, read_token
from sockhub.services.exec_door import QUEUE_MAX, ExecDoor
from sockhub.services.login import AuthLimiter
from sockhub.services.registry import SERVICES

TOKEN = b"0123456789abcdef-test-token-of-32"
PY = sys.executable


def py(code: str) -> list[str]:
    """argv for a Python one-liner (no shell involved)."""
    return [PY, "-c", code]


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return write_token(tmp_path / "token", TOKEN)


@pytest.fixture
async def exec_server(serve, tmp_path, token_file):
    """``await exec_server(timeout=1, max_frame=100)``: options and limits by name.

    Without ``allow``/``allow_shell`` it is ``allow_any``: most tests here run
    Python one-liners and assorted coreutils; the policy tests say what they allow.
    """

    async def start(**options):
        limits = {k: options.pop(k) for k in list(options) if k in limit_names()}
        extra = {k: options.pop(k) for k in ("tls_cert", "tls_key") if k in options}
        if not {"allow", "allow_any", "allow_shell"} & set(options):
            options["allow_any"] = True
        settings = {"token_file": str(token_file), "data_dir": str(tmp_path), **options}
        return await serve("exec", options=settings, **limits, **extra)

    return start


async def connect(server, token: bytes = TOKEN, **kwargs) -> ExecClient:
    return await ExecClient.connect("127.0.0.1", server.ports[0], token=token, **kwargs)


class Raw:
    """A hand-driven framed connection, for what a well-behaved client never sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder(None)
        self.frames: list[bytes] = []
        self.nonce = b""

    #: every Raw of the running test, closed by the ``close_raws`` fixture
    opened: list[Raw] = []

    @classmethod
    async def open(cls, server) -> Raw:
        raw = cls(*await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.ports[0]),
                                          STEP))
        cls.opened.append(raw)
        kind, body = await raw.frame()
        assert kind == FrameType.CHALLENGE
        raw.nonce = body[1:]
        return raw

    def send(self, kind: FrameType, body: bytes = b"") -> None:
        self.writer.write(encode(kind, body))

    async def frame(self) -> tuple[int, bytes]:
        while not self.frames:
            data = await asyncio.wait_for(self.reader.read(65536), STEP)
            if not data:
                raise EOFError("connection closed")
            self.frames += self.decoder.feed(data)
        frame = self.frames.pop(0)
        return frame[0], frame[1:]

    async def error(self) -> dict[str, object]:
        kind, body = await self.frame()
        assert kind == FrameType.ERROR, (kind, body)
        return json.loads(body)

    async def login(self, token: bytes = TOKEN) -> None:
        self.send(FrameType.AUTH, compute_answer(token, self.nonce))
        kind, _ = await self.frame()
        assert kind == FrameType.READY

    async def expect_eof(self) -> None:
        with pytest.raises(EOFError):
            await self.frame()


@pytest.fixture(autouse=True)
async def close_raws():
    yield
    while Raw.opened:
        writer = Raw.opened.pop().writer
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()




def waiter() -> tuple[asyncio.Event, bytearray, object]:
    """An on_stdout callback that sets an event once a whole line has arrived."""
    seen, line = bytearray(), asyncio.Event()

    def take(data: bytes) -> None:
        seen.extend(data)
        if b"\n" in seen:
            line.set()

    return line, seen, take


# --- Running commands ------------------------------------------------------------------


async def test_runs_argv_and_returns_output_and_exit_code(exec_server):
    client = await connect(await exec_server())
    result = await client.run(py("import sys; print('out'); print('err', file=sys.stderr); "
                                 "sys.exit(3)"))
    assert (result.stdout, result.stderr, result.code, result.signal) == (b"out\n", b"err\n", 3,
                                                                         None)
    assert result.reason == "exit" and result.exit_status == 3 and result.duration > 0
    assert (result.stdout_bytes, result.stderr_bytes) == (4, 4)
    await client.close()


async def test_exit_codes_and_signals_arrive_right(exec_server):
    client = await connect(await exec_server())
    assert (await client.run(["false"])).code == 1
    assert (await client.run(["true"])).code == 0
    killed = await client.run(py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert (killed.code, killed.signal, killed.exit_status) == (None, 9, 137)
    termed = await client.run(py("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"))
    assert (termed.signal, termed.reason, termed.exit_status) == (15, "exit", 143)
    await client.close()


async def test_several_commands_per_connection(exec_server):
    client = await connect(await exec_server(allow=["echo"]))
    outputs = [(await client.run(["echo", str(n)])).stdout for n in range(5)]
    assert outputs == [b"0\n", b"1\n", b"2\n", b"3\n", b"4\n"]
    await client.close()


async def test_binary_output_is_byte_exact(exec_server):
    client = await connect(await exec_server())
    code = ("import sys; data = bytes(range(256)) * 4096; sys.stdout.buffer.write(data); "
            "sys.stderr.buffer.write(data[::-1][:1000])")
    result = await client.run(py(code))
    assert result.stdout == bytes(range(256)) * 4096
    assert result.stderr == (bytes(range(256)) * 4096)[::-1][:1000]
    await client.close()


async def test_stdin_is_forwarded_through_the_window(exec_server):
    client = await connect(await exec_server(stdin_window=16 * 1024))
    data = os.urandom(1_000_000)
    result = await client.run(["cat"], stdin=data)
    assert result.stdout == data and result.code == 0
    # stdin frames left over when a command stops reading do not stall anything
    result = await client.run(["head", "-c", "10"], stdin=data)
    assert result.stdout == data[:10]
    assert (await client.run(["echo", "next"])).stdout == b"next\n"
    await client.close()


async def test_cwd_and_a_clean_environment(exec_server, tmp_path, monkeypatch):
    monkeypatch.setenv("SERVER_SECRET", "do-not-leak")
    client = await connect(await exec_server(cwd=str(tmp_path), env={"GREETING": "hi"},
                                             allow=["pwd", "env"]))
    assert (await client.run(["pwd"])).stdout.decode().strip() == str(tmp_path)
    lines = sorted((await client.run(["env"])).stdout.decode().splitlines())
    assert lines == ["GREETING=hi", "PATH=/usr/bin:/bin"]
    await client.close()


async def test_a_missing_command_is_an_error_and_the_connection_goes_on(exec_server):
    client = await connect(await exec_server())
    with pytest.raises(ExecError) as caught:
        await client.run(["no-such-command-here"])
    assert caught.value.code == "not_found" and not caught.value.fatal
    assert caught.value.exit_status == 127
    assert (await client.run(["echo", "still here"])).stdout == b"still here\n"
    await client.close()


async def test_several_clients_at_once(exec_server):
    server = await exec_server(max_concurrent=20)
    clients = [await connect(server) for _ in range(20)]
    code = "import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data[::-1])"
    results = await asyncio.gather(*(
        c.run(py(code), stdin=f"client {n} ".encode() * 1000) for n, c in enumerate(clients)))
    for n, result in enumerate(results):
        assert result.stdout == (f"client {n} ".encode() * 1000)[::-1]
    await asyncio.gather(*(c.close() for c in clients))


async def test_max_concurrent_refuses_with_busy_and_cancel_stops_a_command(exec_server):
    server = await exec_server(max_concurrent=1)
    first, second = await connect(server), await connect(server)
    started, _, take = waiter()
    task = asyncio.create_task(first.run(py("import time; print('started', flush=True); "
                                            "time.sleep(60)"), on_stdout=take))
    await asyncio.wait_for(started.wait(), STEP)
    with pytest.raises(ExecError) as caught:
        await second.run(["true"])
    assert caught.value.code == "busy" and "max-concurrent" in str(caught.value)
    first.cancel()
    result = await asyncio.wait_for(task, STEP)
    assert (result.reason, result.signal, result.exit_status) == ("cancelled", 15, 130)
    assert (await second.run(["true"])).code == 0
    await first.close()
    await second.close()


async def test_a_long_quiet_command_survives_the_idle_timeout_through_keepalives(exec_server):
    client = await connect(await exec_server(idle_timeout=0.6))
    assert client.ready is not None and client.ready.idle_timeout == 0.6
    result = await client.run(["sleep", "1.5"])
    assert result.code == 0
    await client.close()


async def test_the_blocking_wrapper(exec_server):
    port = (await exec_server()).ports[0]

    def use() -> list[bytes]:
        with BlockingExecClient("127.0.0.1", port, token=TOKEN) as client:
            return [client.run(["echo", "one"]).stdout,
                    client.run(["tr", "a-z", "A-Z"], stdin=b"two").stdout]

    assert await asyncio.to_thread(use) == [b"one\n", b"TWO"]


async def test_tls(exec_server, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    server = await exec_server(tls_cert=str(tmp_path / "cert.pem"),
                               tls_key=str(tmp_path / "key.pem"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    client = await connect(server, tls=context, server_hostname="localhost")
    assert (await client.run(["echo", "private"])).stdout == b"private\n"
    await client.close()


async def test_one_audit_line_per_command(exec_server, caplog):
    caplog.set_level(logging.INFO, logger="sockhub.exec")
    client = await connect(await exec_server(allow=["echo"]))
    await client.run(["echo", "hi\nthere"])
    with pytest.raises(ExecError):
        await client.run(["ls"])
    await client.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("exec peer=")]
    assert len(lines) == 2
    ran, refused = lines
    assert ran.startswith("exec peer=127.0.0.1:")
    assert 'argv=["echo", "hi\\nthere"] exit=0 reason=exit duration=' in ran
    assert ran.endswith("bytes_out=9 (stdout 9, stderr 0)")
    assert refused.endswith('argv=["ls"] refused=not_allowed')


class AuditLines(logging.Handler):
    """The server's audit lines as they are logged, with a way to wait for more."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.more = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("exec peer="):
            self.lines.append(record.getMessage())
            self.more.set()

    async def wait_for(self, count: int) -> list[str]:
        while len(self.lines) < count:
            self.more.clear()
            await asyncio.wait_for(self.more.wait(), STEP)
        return self.lines


@pytest.fixture
def audit():
    handler, logger = AuditLines(), logging.getLogger("sockhub.exec")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_every_run_request_gets_exactly_one_audit_line(exec_server, audit):
    server = await exec_server(allow=["echo", PY, "no-such-command-here"], max_concurrent=1)
    expected = []
    stranger = await Raw.open(server)  # RUN before logging in
    stranger.send(FrameType.RUN, RunRequest(("echo", "sneaky")).to_body())
    assert (await stranger.error())["code"] == "auth_required"
    expected.append('argv=["echo", "sneaky"] refused=auth_required')
    raw = await Raw.open(server)
    await raw.login()
    requests = [
        (RunRequest(("echo", "ok")).to_body(), None, 'argv=["echo", "ok"] exit=0 reason=exit'),
        (RunRequest(("ls",)).to_body(), "not_allowed", 'argv=["ls"] refused=not_allowed'),
        (RunRequest(("no-such-command-here",)).to_body(), "not_found",
         'argv=["no-such-command-here"] refused=not_found'),
        (b'{"argv": ["echo", "\xff"]}', "bad_request",
         r'body="{\"argv\": [\"echo\", \"\\xff\"]}" refused=bad_request'),
        (b"not json\n", "bad_request", r'body="not json\n" refused=bad_request'),
        (b'{"argv": ["echo"], "env": {}}', "bad_request",
         r'body="{\"argv\": [\"echo\"], \"env\": {}}" refused=bad_request'),
    ]
    for body, code, line in requests:
        raw.send(FrameType.RUN, body)
        kind, reply = await raw.frame()
        while kind == FrameType.STDOUT:
            kind, reply = await raw.frame()
        assert kind == (FrameType.EXIT if code is None else FrameType.ERROR), (kind, reply)
        assert code is None or json.loads(reply)["code"] == code
        expected.append(line)
    other = await Raw.open(server)
    await other.login()
    sleeper = RunRequest(tuple(py("import time; print('up', flush=True); time.sleep(60)")))
    other.send(FrameType.RUN, sleeper.to_body())
    assert await other.frame() == (FrameType.STDOUT, b"up\n")
    raw.send(FrameType.RUN, RunRequest(("echo", "busy?")).to_body())
    assert (await raw.error())["code"] == "busy"
    expected.append('argv=["echo", "busy?"] refused=busy')
    # A second RUN while one runs is fatal; the command goes with the connection.
    other.send(FrameType.RUN, RunRequest(("echo", "twice")).to_body())
    assert (await other.error())["code"] == "bad_frame"
    expected.append('argv=["echo", "twice"] refused=bad_frame')
    expected.append(f"argv={json.dumps(list(sleeper.argv))} signal=SIGTERM reason=disconnected")
    lines = await audit.wait_for(len(expected))
    assert len(lines) == len(expected)
    for line, part in zip(lines, expected, strict=True):
        assert line.startswith("exec peer=127.0.0.1:") and part in line, (line, part)


async def test_the_standard_library_client_in_the_protocol_doc_works(exec_server):
    doc = (Path(__file__).parents[2] / "docs" / "exec-protocol.md").read_text()
    block = doc.split("<!-- minimal-client")[1].split("```python\n")[1].split("```")[0]
    namespace: dict[str, object] = {}
    exec(block, namespace)
    run = namespace["run"]
    port = (await exec_server(auth_delay=0.01)).ports[0]
    result = await asyncio.to_thread(run, "127.0.0.1", port, TOKEN, ["printf", "a\\0b"])
    assert result == (0, None, b"a\0b", b"")
    with pytest.raises(PermissionError, match="wrong token"):
        await asyncio.to_thread(run, "127.0.0.1", port, b"wrong token, long enough...", ["ls"])


# --- Authentication ----------------------------------------------------------------------


async def test_no_token_is_refused_and_nothing_runs(exec_server, tmp_path):
    server = await exec_server(cwd=str(tmp_path))
    marker = tmp_path / "marker"
    raw = await Raw.open(server)
    raw.send(FrameType.RUN, RunRequest(("touch", "marker")).to_body())
    error = await raw.error()
    assert error == {"code": "auth_required",
                     "message": "authenticate first: expected an AUTH frame", "fatal": True}
    await raw.expect_eof()
    assert not marker.exists() and not server.runtime.commands


async def test_a_wrong_token_is_refused_and_nothing_runs(exec_server, tmp_path):
    server = await exec_server(cwd=str(tmp_path), auth_delay=0.01)
    marker = tmp_path / "marker"
    with pytest.raises(ExecAuthError) as caught:
        await connect(server, token=b"a wrong token that is long enough")
    assert caught.value.code == "auth_failed"
    assert str(caught.value) == "authentication failed: wrong token"
    raw = await Raw.open(server)
    raw.send(FrameType.AUTH, compute_answer(b"a wrong token that is long enough", raw.nonce))
    raw.send(FrameType.RUN, RunRequest(("touch", "marker")).to_body())
    assert (await raw.error())["code"] == "auth_failed"
    await raw.expect_eof()
    assert not marker.exists() and not server.runtime.commands


async def test_a_replayed_answer_is_refused_and_nothing_runs(exec_server, tmp_path):
    server = await exec_server(cwd=str(tmp_path), auth_delay=0.01)
    marker = tmp_path / "marker"
    first = await Raw.open(server)
    captured = compute_answer(TOKEN, first.nonce)  # what an eavesdropper saw go by
    await first.login()
    second = await Raw.open(server)
    assert second.nonce != first.nonce
    second.send(FrameType.AUTH, captured)
    second.send(FrameType.RUN, RunRequest(("touch", "marker")).to_body())
    assert (await second.error())["code"] == "auth_failed"
    await second.expect_eof()
    assert not marker.exists() and not server.runtime.commands


WRONG = b"guess guess guess guess guess!"


async def test_the_right_token_works_right_after_a_burst_of_wrong_ones(exec_server):
    # Five failures used to block the address, the owner's right token included.
    server = await exec_server(auth_delay=0.001, auth_delay_max=0.004, allow=["echo"])
    for _ in range(8):
        with pytest.raises(ExecAuthError) as caught:
            await connect(server, token=WRONG)
        assert caught.value.code == "auth_failed"
    client = await connect(server)
    assert (await client.run(["echo", "in"])).stdout == b"in\n"
    await client.close()


async def test_a_flood_of_failed_logins_writes_a_bounded_number_of_log_lines(exec_server, caplog):
    server = await exec_server(auth_delay=0.001, auth_delay_max=0.002, allow=["echo"])
    flush_rate_limited()  # what earlier tests left pending is not this test's
    caplog.set_level(logging.INFO, logger="sockhub.exec")
    caplog.clear()
    for _ in range(30):
        with pytest.raises(ExecAuthError):
            await connect(server, token=WRONG)
    flush_rate_limited()
    failures = [r.getMessage() for r in caplog.records if "failed login" in r.getMessage()]
    assert len(failures) == 6, failures  # the burst of five, then one summary
    assert failures[-1].startswith("exec: 25 more failed logins in the last")
    assert "from 127.0.0.1 (25 times)" in failures[-1]


def answers_taken(monkeypatch) -> tuple[asyncio.Event, list[ExecDoor]]:
    """Watch the server's doors take AUTH answers: an event set on each, and the doors."""
    doors: list[ExecDoor] = []
    seen = asyncio.Event()
    original = ExecDoor.auth_received

    def watch(door: ExecDoor, answer: bytes) -> None:
        original(door, answer)
        doors.append(door)
        seen.set()

    monkeypatch.setattr(ExecDoor, "auth_received", watch)
    return seen, doors


async def wait_answers(seen: asyncio.Event, doors: list[ExecDoor], count: int) -> None:
    while len(doors) < count:
        seen.clear()
        await asyncio.wait_for(seen.wait(), STEP)


async def test_wrong_answers_wait_while_the_right_one_gets_in_at_once(exec_server, monkeypatch):
    seen, doors = answers_taken(monkeypatch)
    server = await exec_server(auth_delay=30, auth_delay_max=60, allow=["echo"])
    guessers = [await Raw.open(server) for _ in range(4)]
    for raw in guessers:
        raw.send(FrameType.AUTH, compute_answer(WRONG, raw.nonce))
    await wait_answers(seen, doors, 4)
    client = await connect(server)  # the owner, same address, no waiting
    assert (await client.run(["echo", "in"])).stdout == b"in\n"
    # ... while every guess is still waiting for its verdict (30 s and more).
    assert [d.state for d in doors[:4]] == [ServerState.CHECKING] * 4
    await client.close()


async def test_logins_in_progress_are_bounded_per_address(exec_server, monkeypatch):
    seen, doors = answers_taken(monkeypatch)
    server = await exec_server(auth_delay=30, auth_delay_max=30, auth_max_pending_per_ip=2,
                               allow=["echo"])

    async def refused() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ports[0])
        frames = FrameDecoder(None).feed(await asyncio.wait_for(reader.read(), STEP))
        writer.close()
        assert [(f[0], json.loads(f[1:])) for f in frames] == [(FrameType.ERROR, {
            "code": "rate_limited", "fatal": True,
            "message": "too many logins in progress from 127.0.0.1 (2); "
                       "try again in a few seconds"})]

    # Two silent connections hold both slots: the third gets no challenge.
    first, second = await Raw.open(server), await Raw.open(server)
    await refused()
    await first.login()  # a login frees its slot
    third = await Raw.open(server)
    # Wrong answers hold theirs until told, even after the guesser hangs up.
    for raw in (second, third):
        raw.send(FrameType.AUTH, compute_answer(WRONG, raw.nonce))
    await wait_answers(seen, doors, 3)
    for raw in (second, third):
        connection = server_side(server, raw.writer)
        reset(raw.writer)
        await asyncio.wait_for(connection.closed.wait(), STEP)
    await refused()
    first.send(FrameType.RUN, RunRequest(("echo", "still in")).to_body())
    assert await first.frame() == (FrameType.STDOUT, b"still in\n")


def clocked_door(service: ExecService, clock: ManualClock, peer: str) -> ExecDoor:
    """A new client of ``service`` from ``peer``, on a manual clock, as the engine connects it."""
    protocol = service.make_protocol()
    protocol.clock = clock
    protocol.connection_made(ConnectionInfo(peer=peer))
    return protocol


def test_each_recent_failure_doubles_the_wait_for_the_verdict(tmp_path, token_file):
    clock = ManualClock(now=0)
    service = build(tmp_path, options={"token_file": str(token_file), "auth_delay": 1,
                                       "auth_delay_max": 4})

    def door(port: int) -> ExecDoor:
        protocol = clocked_door(service, clock, f"127.0.0.1:{port}")
        assert protocol.data_to_send()[0][4] == FrameType.CHALLENGE
        return protocol

    for n, wait in enumerate([1, 2, 4, 4]):
        guess = door(5000 + n)
        guess.receive_data(encode(FrameType.AUTH, compute_answer(WRONG, guess.nonce)))
        # A frame too big for a login would be refused at once, telling the
        # verdict early: after an answer, input is not even decoded.
        guess.receive_data(struct.pack("!I", 1000) + b"\x02" * 100)
        clock.advance(wait - 0.001)
        assert guess.data_to_send() == [] and not guess.close_expected()
        clock.advance(0.001)
        (error,) = guess.data_to_send()
        assert json.loads(error[5:])["code"] == "auth_failed" and guess.close_expected()
    owner = door(6000)
    owner.receive_data(encode(FrameType.AUTH, compute_answer(TOKEN, owner.nonce)))
    assert owner.data_to_send()[0][4] == FrameType.READY  # no clock moved
    clock.advance(60)  # the window passes: the next failure waits 1 s again
    guess = door(7000)
    guess.receive_data(encode(FrameType.AUTH, compute_answer(WRONG, guess.nonce)))
    clock.advance(1)
    assert json.loads(guess.data_to_send()[0][5:])["code"] == "auth_failed"


def test_a_crowd_of_addresses_cannot_keep_a_newcomer_out(tmp_path, token_file):
    clock = ManualClock(now=0)
    service = build(tmp_path, options={"token_file": str(token_file), "auth_max_pending": 3,
                                       "auth_max_pending_per_ip": 2})

    a1, a2, b1 = (clocked_door(service, clock, peer)
                  for peer in ("10.0.0.1:1", "10.0.0.1:2", "10.0.0.2:1"))
    assert all(d.data_to_send()[0][4] == FrameType.CHALLENGE for d in (a1, a2, b1))
    # Every slot is taken: the busiest address's oldest login makes room.
    owner = clocked_door(service, clock, "10.0.0.3:1")
    (error,) = a1.data_to_send()
    assert json.loads(error[5:])["code"] == "auth_timeout" and a1.close_expected()
    assert owner.data_to_send()[0][4] == FrameType.CHALLENGE
    owner.receive_data(encode(FrameType.AUTH, compute_answer(TOKEN, owner.nonce)))
    assert owner.data_to_send()[0][4] == FrameType.READY
    assert set(service.logins) == {a2, b1}


def test_ipv6_hosts_count_per_64_network():
    assert exec_login.address_key("[2001:db8:1:2:aaaa::1]:5000") == "2001:db8:1:2::/64"
    assert exec_login.address_key("[2001:db8:1:2:bbbb::7]:6000") == "2001:db8:1:2::/64"
    assert exec_login.address_key("[2001:db8:1:3::1]:5000") == "2001:db8:1:3::/64"
    assert exec_login.address_key("[::1]:5000") == "::1"
    assert exec_login.address_key("192.0.2.7:5000") == "192.0.2.7"
    assert exec_login.address_key("unix") == "unix"


def test_the_limiter_bounds_slots_per_address_and_overall():
    limiter = AuthLimiter(delay=1, delay_max=8, window=60, max_pending=3, max_pending_per_ip=2)
    assert limiter.admit("a", 0) is None and limiter.admit("a", 0) is None
    assert "from a (2)" in (limiter.admit("a", 0) or "")
    assert limiter.admit("b", 0) is None
    assert "in progress (3)" in (limiter.admit("c", 0) or "")
    limiter.release("b")
    assert limiter.failed("a", 0) == 1 and limiter.failed("a", 0.5) == 2
    assert limiter.pending("a", 0.5) == 2  # both held until told
    assert limiter.admit("a", 0.99) is not None
    assert limiter.admit("a", 1.0) is None  # the first hold ran out
    assert limiter.pending(None, 2.5) == 1  # the second too; the new login remains
    limiter.release("a")
    assert [limiter.failed("a", t) for t in (3, 4, 5, 6)] == [4, 8, 8, 8]
    assert limiter.failed("a", 100) == 1  # a minute without failures: forgiven


def test_the_limiter_forgets_the_oldest_addresses_past_its_cap(monkeypatch):
    monkeypatch.setattr(exec_login, "MAX_TRACKED_ADDRESSES", 3)
    limiter = AuthLimiter(delay=1, delay_max=8, window=60, max_pending=100,
                          max_pending_per_ip=100)
    for address in "abcd":
        limiter.admit(address, 0)
        limiter.failed(address, 0)
    assert list(limiter._failures) == ["b", "c", "d"]
    assert limiter.pending(None, 10) == 0  # every hold ran out


async def test_a_client_that_never_logs_in_is_cut_at_the_auth_deadline(exec_server):
    server = await exec_server(auth_timeout=0.3)
    raw = await Raw.open(server)
    assert await raw.error() == {"code": "auth_timeout",
                                 "message": "no authentication within 0.3 seconds",
                                 "fatal": True}
    await raw.expect_eof()


# --- What may run --------------------------------------------------------------------


async def test_a_command_outside_the_allow_list_is_refused(exec_server):
    client = await connect(await exec_server(allow=["echo"]))
    for argv in (["ls"], ["/bin/echo", "x"], ["sh", "-c", "echo"]):
        with pytest.raises(ExecError) as caught:
            await client.run(argv)
        assert caught.value.code == "not_allowed" and not caught.value.fatal
        assert caught.value.exit_status == 126
    assert (await client.run(["echo", "allowed"])).stdout == b"allowed\n"
    await client.close()


async def test_shell_metacharacters_do_nothing_without_a_shell(exec_server, tmp_path):
    client = await connect(await exec_server(cwd=str(tmp_path), allow=["echo", "touch"]))
    marker = tmp_path / "marker"
    text = f"x; touch {marker} && echo $(id) `id` | cat > {marker} *"
    assert (await client.run(["echo", text])).stdout == text.encode() + b"\n"
    assert not marker.exists()
    await client.run(["touch", "$(id)"])
    assert (tmp_path / "$(id)").exists()  # a file with that very name, not an expansion
    for shell in (["sh", "-c", f"touch {marker}"], ["/bin/bash", "-c", "id"]):
        with pytest.raises(ExecError) as caught:
            await client.run(shell)
        assert caught.value.code == "not_allowed" and "allow list" in str(caught.value)
    assert not marker.exists()
    await client.close()


async def test_allow_shell_permits_sh_c(exec_server):
    client = await connect(await exec_server(allow_shell=True, allow=["echo"]))
    assert (await client.run(["sh", "-c", "echo $((6 * 7)) | cat"])).stdout == b"42\n"
    await client.close()


# --- Limits and kills ------------------------------------------------------------------


async def test_timeout_kills_the_whole_process_group(exec_server):
    client = await connect(await exec_server(timeout=0.5))
    code = ("import os, subprocess; child = subprocess.Popen(['sleep', '60']); "
            "print(os.getpid(), child.pid, flush=True); child.wait()")
    result = await client.run(py(code))
    assert (result.reason, result.signal, result.exit_status) == ("timeout", 15, 124)
    for pid in map(int, result.stdout.split()):
        await wait_gone(pid)
    await client.close()


async def test_a_command_ignoring_sigterm_gets_sigkill_after_the_grace(exec_server):
    client = await connect(await exec_server(timeout=0.3, kill_grace=0.3))
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ignoring', flush=True); time.sleep(60)")
    result = await client.run(py(code))
    assert (result.reason, result.signal, result.stdout) == ("timeout", 9, b"ignoring\n")
    await client.close()


async def test_max_output_stops_the_command_and_says_so(exec_server):
    client = await connect(await exec_server(max_output=1000))
    result = await client.run(["head", "-c", "10000000", "/dev/zero"])
    assert result.stdout == b"\0" * 1000 and result.stdout_bytes == 1000
    assert result.reason == "output_limit" and result.exit_status == 125
    assert (await client.run(["echo", "fine"])).stdout == b"fine\n"
    await client.close()


async def test_the_client_disconnecting_mid_command_kills_it(exec_server):
    server = await exec_server()
    raw = await Raw.open(server)
    await raw.login()
    code = ("import os, subprocess; child = subprocess.Popen(['sleep', '60']); "
            "print(os.getpid(), child.pid, flush=True); child.wait()")
    raw.send(FrameType.RUN, RunRequest(tuple(py(code))).to_body())
    kind, body = await raw.frame()
    assert kind == FrameType.STDOUT
    pids = list(map(int, body.split()))
    reset(raw.writer)
    for pid in pids:
        await wait_gone(pid)


async def test_shutdown_tells_the_client_and_kills_the_command(exec_server):
    server = await exec_server()
    client = await connect(server)
    started, seen, take = waiter()
    task = asyncio.create_task(client.run(py("import os, time; print(os.getpid(), flush=True); "
                                             "time.sleep(60)"), on_stdout=take))
    await asyncio.wait_for(started.wait(), STEP)
    server.runtime.begin_shutdown()
    await server.shutdown()
    with pytest.raises(ExecError) as caught:
        await asyncio.wait_for(task, STEP)
    assert caught.value.code == "closing" and str(caught.value) == "server shutting down"
    await wait_gone(int(seen))
    await client.close()


async def stream_to_a_stalled_client(server, monkeypatch) -> None:
    """Back-pressure: while the client reads nothing, the socket's buffer stays small."""
    high_water = server.limits.write_high_water
    paused = asyncio.Event()
    largest = 0
    forward = ExecDoor.command_output
    original_pause = ExecDoor.pause_writing

    def watch(door: ExecDoor, stream: int, data: bytes) -> None:
        nonlocal largest
        (connection,) = server.connections
        queued = sum(map(len, door._outgoing))
        largest = max(largest, connection.transport.get_write_buffer_size() + queued)
        forward(door, stream, data)

    def pause(door: ExecDoor) -> None:
        paused.set()
        original_pause(door)

    monkeypatch.setattr(ExecDoor, "command_output", watch)
    monkeypatch.setattr(ExecDoor, "pause_writing", pause)
    raw = await Raw.open(server)
    await raw.login()
    size = 30_000_000
    raw.send(FrameType.RUN, RunRequest(("head", "-c", str(size), "/dev/zero")).to_body())
    await asyncio.wait_for(paused.wait(), STEP)  # we read nothing: the server must pause
    received = 0
    while True:
        kind, body = await raw.frame()
        if kind == FrameType.EXIT:
            break
        received += len(body)
    assert received == size and json.loads(body)["code"] == 0
    # Output is read only while the socket is under its high-water mark and
    # less than QUEUE_MAX is waiting for the engine: so never more than both.
    assert largest < high_water + QUEUE_MAX, largest


async def test_stdout_stops_being_read_while_the_client_is_not_reading(exec_server, monkeypatch):
    await stream_to_a_stalled_client(await exec_server(), monkeypatch)


def test_stdout_back_pressure_on_uvloop_too(tmp_path, token_file, monkeypatch):
    async def main() -> None:
        options = {"token_file": str(token_file), "data_dir": str(tmp_path), "allow": ["head"]}
        (server,), runtime = make_servers(ServiceConfig(service="exec", port=0, options=options),
                                          SERVICES["exec"])
        await server.start()
        try:
            await stream_to_a_stalled_client(server, monkeypatch)
        finally:
            while Raw.opened:  # on this loop, not the fixture's
                Raw.opened.pop().writer.close()
            runtime.begin_shutdown()
            await server.shutdown()
            runtime.close()

    loops.run(main(), "uvloop")


async def test_100_mb_stream_through_with_flat_server_memory(token_file):
    served = await start_sockhub("exec", "--port", "0", "--token-file", str(token_file),
                                 "--max-output", "none", "--allow", "head")
    status = Path(f"/proc/{served.process.pid}/status")

    def peak_kb() -> int:
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1])

    try:
        client = await ExecClient.connect("127.0.0.1", served.ports["exec"], token=TOKEN)
        await client.run(["head", "-c", "1000000", "/dev/zero"])  # warm up every code path
        before = peak_kb()
        received = 0

        def count(data: bytes) -> None:
            nonlocal received
            received += len(data)

        result = await asyncio.wait_for(
            client.run(["head", "-c", "100000000", "/dev/zero"], on_stdout=count), 60)
        assert result.code == 0 and received == 100_000_000 == result.stdout_bytes
        growth_mb = (peak_kb() - before) / 1024
        assert growth_mb < 16, f"server peak memory grew {growth_mb:.1f} MB for 100 MB"
        await client.close()
    finally:
        assert await served.stop() == 0


# --- Bad input -----------------------------------------------------------------------


async def test_an_oversize_frame_gets_an_error_and_a_close(exec_server):
    server = await exec_server(max_frame=1000)
    raw = await Raw.open(server)
    await raw.login()
    raw.writer.write(struct.pack("!I", 1001) + b"\x02")
    error = await raw.error()
    assert error["code"] == "frame_too_large" and error["fatal"] is True
    await raw.expect_eof()


async def test_a_malformed_run_request_gets_an_error_and_the_connection_goes_on(exec_server):
    raw = await Raw.open(await exec_server())
    await raw.login()
    raw.send(FrameType.RUN, b'{"argv": ["echo", "\xff"]}')
    assert await raw.error() == {"code": "bad_request", "fatal": False,
                                 "message": "run request is not valid UTF-8 (byte 19)"}
    raw.send(FrameType.RUN, b'{"argv": "echo hi"}')
    assert (await raw.error())["message"] == "argv must be a non-empty list of strings"
    raw.send(FrameType.RUN, RunRequest(("echo", "ok")).to_body())
    assert await raw.frame() == (FrameType.STDOUT, b"ok\n")
    assert (await raw.frame())[0] == FrameType.EXIT


async def test_a_client_over_max_conns_gets_an_error_frame(exec_server):
    server = await exec_server(max_conns=1)
    first = await connect(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.ports[0])
    frames = FrameDecoder(None).feed(await asyncio.wait_for(reader.read(), STEP))
    assert [(f[0], json.loads(f[1:])) for f in frames] == [(FrameType.ERROR, {
        "code": "refused", "message": "server full (1 connections); try again later",
        "fatal": True})]
    writer.close()
    await first.close()


async def test_binary_garbage_before_login_is_refused(exec_server):
    raw = await Raw.open(await exec_server())
    raw.writer.write(b"\x00\x00\x00\x05GET /")
    assert (await raw.error())["code"] == "auth_required"
    await raw.expect_eof()


# --- Settings and the token ----------------------------------------------------------


def build(tmp_path: Path, **kwargs) -> ExecService:
    options = {"data_dir": str(tmp_path), "allow": ["echo"], **kwargs.pop("options", {})}
    return ExecService.from_config(ServiceConfig(service="exec", options=options, **kwargs),
                                   Limits())


def test_a_token_is_generated_once_with_mode_0600(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="sockhub.exec")
    service = build(tmp_path / "state")
    path = tmp_path / "state" / "exec-token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_token(path) == service.token and len(service.token) >= 32
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert str(path) in logged and service.token.decode() not in logged
    assert build(tmp_path / "state").token == service.token  # reused on the next start


def test_a_token_file_others_can_read_is_refused(tmp_path, token_file):
    token_file.chmod(0o640)
    with pytest.raises(ConfigError, match=r"accessible to group or others \(mode 640\)"):
        build(tmp_path, options={"token_file": str(token_file)})


def test_a_short_token_is_refused(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(b"hunter2")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="shorter than 16 bytes"):
        build(tmp_path, options={"token_file": str(path)})


def test_a_non_loopback_address_needs_tls_or_insecure(tmp_path, token_file, caplog):
    options = {"token_file": str(token_file)}
    with pytest.raises(ConfigError, match="without TLS would send commands"):
        build(tmp_path, hosts=("0.0.0.0",), options=options)
    build(tmp_path, hosts=("127.0.0.1", "::1", "localhost"), options=options)
    build(tmp_path, unix=str(tmp_path / "exec.sock"), options=options)
    caplog.set_level(logging.WARNING, logger="sockhub.exec")
    build(tmp_path, hosts=("0.0.0.0",), options={**options, "insecure": True})
    assert any("WITHOUT TLS" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout must be more than 0"),
        ({"max_output": 1.5}, "max_output must be a whole number"),
        ({"max_concurrent": None}, "max_concurrent must be a whole number, not None"),
        ({"allow": "ls"}, "allow must be a list"),
        ({"env": {"A=B": "x"}}, "bad environment variable name"),
        ({"cwd": "/no/such/dir"}, "is not a directory"),
        ({"shell": True}, "unknown option"),
    ],
)
def test_bad_settings_are_refused(tmp_path, token_file, options, message):
    with pytest.raises(ConfigError, match=message):
        build(tmp_path, options={"token_file": str(token_file), **options})



# --- Reload --------------------------------------------------------------------------


def reconfigured(service: ExecService, **options) -> ServiceConfig:
    """The service's config with these options changed (None removes one)."""
    merged = {**service.config.options, **options}
    return replace(service.config, options={k: v for k, v in merged.items() if v is not None})


def test_reload_applies_new_settings_and_says_what_changed(tmp_path, token_file):
    service = build(tmp_path, options={"token_file": str(token_file)})
    assert service.check_argv(("ls",)) is not None
    new = reconfigured(service, allow=["echo", "ls", "df"], env={"LANG": "C"}, timeout=30,
                       max_concurrent=2, auth_delay=0.1, cwd=str(tmp_path))
    assert service.reload(new, Limits()) == [
        "allow list: 3 commands", "env", "cwd", "timeout 30", "max_concurrent 2",
        "auth settings"]
    assert service.check_argv(("ls",)) is None and service.env["LANG"] == "C"
    assert service.settings.max_concurrent == 2 and service.limiter.delay == 0.1
    assert service.reload(new, Limits()) == []  # nothing changed
    token_file.write_bytes(b"a brand new token, long enough\n")
    assert service.reload(new, Limits()) == ["token"]
    assert service.token == b"a brand new token, long enough"
    assert service.reload(reconfigured(service, allow=None, allow_any=True), Limits()) == [
        "allow: any command"]
    assert service.check_argv(("sh", "-c", "id")) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"allow": None}, "no allow list"),
        ({"allow_any": True}, "not both"),
        ({"timeout": -1}, "timeout must be more than 0"),
        ({"cwd": "/no/such/dir"}, "is not a directory"),
        ({"data_dir": "/elsewhere"}, "data_dir changed, which needs a restart"),
        ({"token_file": "/no/such/token"}, "cannot read token file"),
        ({"insecure": True, "hosts": ("0.0.0.0",)}, "hosts changed"),
        ({"port": 9999}, "port changed"),
    ],
)
def test_a_bad_reload_changes_nothing(tmp_path, token_file, change, message):
    service = build(tmp_path, options={"token_file": str(token_file)})
    before = (service.settings, service.token, service.allow, service.env, service.config)
    change = dict(change)
    fields_ = {k: change.pop(k) for k in ("hosts", "port") if k in change}
    # Every bad reload also asks for a good change, which must not happen either.
    config = replace(reconfigured(service, max_concurrent=1, **change), **fields_)
    with pytest.raises(ConfigError, match=message):
        service.reload(config, Limits())
    assert (service.settings, service.token, service.allow, service.env, service.config) == before


def test_a_reload_with_an_unprotected_token_file_keeps_the_old_token(tmp_path, token_file):
    service = build(tmp_path, options={"token_file": str(token_file)})
    token_file.write_bytes(b"a brand new token, long enough\n")
    token_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        service.reload(reconfigured(service, allow=["ls"]), Limits())
    assert service.token == TOKEN and service.check_argv(("ls",)) is not None


async def test_a_running_command_keeps_the_settings_it_started_with(exec_server):
    server = await exec_server(allow=[PY])
    service = server.runtime
    client = await connect(server)
    code = ("import sys; print('ready', flush=True); sys.stdin.readline(); "
            "sys.stdout.write('x' * 1000)")
    go = asyncio.Event()

    async def lines():
        await go.wait()
        yield b"go\n"

    started, seen, take = waiter()
    task = asyncio.create_task(client.run(py(code), stdin=lines(), on_stdout=take))
    await asyncio.wait_for(started.wait(), STEP)
    assert service.reload(reconfigured(service, max_output=10), service.limits) == [
        "max_output 10"]
    go.set()  # the output comes after the reload, under the old limit
    result = await asyncio.wait_for(task, STEP)
    assert (bytes(seen), result.reason) == (b"ready\n" + b"x" * 1000, "exit")
    cut = await client.run(py(code), stdin=b"go\n")
    assert (cut.stdout, cut.reason) == (b"ready\n" + b"x" * 4, "output_limit")
    await client.close()


# --- Closing -------------------------------------------------------------------------


async def test_closing_the_service_kills_every_group_sigterm_first(exec_server, tmp_path):
    server = await exec_server(kill_grace=0.5)
    client = await connect(server)
    marker = tmp_path / "got-sigterm"
    stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)")
    code = (f"import os, signal, subprocess, sys, time\n"
            f"def term(*_):\n    open({str(marker)!r}, 'w').write('term'); sys.exit(0)\n"
            f"signal.signal(signal.SIGTERM, term)\n"
            f"child = subprocess.Popen([{PY!r}, '-c', {stubborn!r}], stdout=subprocess.PIPE)\n"
            f"child.stdout.readline()\n"
            f"print(os.getpid(), child.pid, flush=True); time.sleep(60)\n")
    started, seen, take = waiter()
    task = asyncio.create_task(client.run(py(code), on_stdout=take))
    await asyncio.wait_for(started.wait(), STEP)
    pids = list(map(int, seen.split()))
    server.runtime.close()  # as on the way out: no shutdown first
    for pid in pids:
        await wait_gone(pid)  # the child ignored SIGTERM: SIGKILL took it
    assert marker.read_text() == "term" and not server.runtime.commands
    task.cancel()
    await client.close()
