"""``sockhub serve`` as a real process: the command-line contract."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from net import STEP, read_line, read_until_eof
from proc import run_sockhub, start_sockhub
from sockhub.cli import main


async def test_default_serve_runs_the_chat_hub_and_logs_real_ports(tmp_path):
    served = await start_sockhub("--port", "0", "--data-dir", str(tmp_path), listeners=3)
    try:
        assert sorted(served.ports) == ["chat", "irc", "web"]
        assert served.ports["chat"] > 0 and served.ports["irc"] > 0 and served.ports["web"] > 0
        reader, writer = await asyncio.open_connection("127.0.0.1", served.ports["web"])
        writer.write(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await read_until_eof(reader)).endswith(b"\r\n\r\nHello, World")
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", served.ports["irc"])
        writer.write(b"NICK alice\r\nUSER alice 0 * :Alice\r\n")
        assert b" 001 alice " in await read_line(reader)
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", served.ports["chat"])
        assert (await read_line(reader)).startswith(b"-- welcome to sockhub chat")
        writer.close()
    finally:
        assert await served.stop() == 0
    assert (tmp_path / "chat.sqlite3").exists()


async def test_the_echo_family_from_a_config_file(tmp_path):
    path = tmp_path / "family.toml"
    path.write_text("".join(f'[[service]]\nservice = "{name}"\nport = 0\n\n'
                            for name in ("echo", "upper", "hello", "udp-echo")))
    served = await start_sockhub("--config", str(path), listeners=4)
    try:
        assert set(served.ports) == {"echo", "upper", "hello", "udp-echo, udp"}
        reader, writer = await asyncio.open_connection("127.0.0.1", served.ports["hello"])
        assert await read_line(reader) == b"hello!\r\n"
        writer.close()
    finally:
        assert await served.stop() == 0


async def test_sigterm_shuts_down_gracefully_telling_clients():
    served = await start_sockhub("upper", "--port", "0")
    reader, writer = await asyncio.open_connection("127.0.0.1", served.ports["upper"])
    writer.write(b"x\n")
    assert await read_line(reader) == b"X\r\n"
    assert await served.stop(signal.SIGTERM) == 0
    assert await read_until_eof(reader) == b"error: server shutting down\r\n"
    assert any("shutting down" in line for line in served.log)
    writer.close()


async def test_sigint_also_exits_zero():
    served = await start_sockhub("echo", "--port", "0", "--loop", "asyncio")
    assert await served.stop(signal.SIGINT) == 0


async def test_json_log_format():
    served = await start_sockhub("echo", "--port", "0", "--log-format", "json")
    try:
        import json

        entry = json.loads(served.log[-1])
        assert entry["message"].startswith("listening on 127.0.0.1:")
        assert entry["level"] == "info"
    finally:
        await served.stop()


async def test_user_service_from_an_import_path(tmp_path):
    (tmp_path / "shoutsvc.py").write_text(
        "from sockhub import LineProtocol\n\n"
        "class Shout(LineProtocol):\n"
        "    def line_received(self, line):\n"
        "        self.send_line(line.upper() + '!')\n"
    )
    served = await start_sockhub(
        "shoutsvc:Shout", "--port", "0", "--max-line", "10",
        env={"PYTHONPATH": str(tmp_path)},
    )
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.ports["shoutsvc:Shout"])
        writer.write(b"hey\n0123456789X\n")
        assert await read_line(reader) == b"HEY!\r\n"
        assert await read_line(reader) == b"error: line too long (max 10 bytes); closing\r\n"
        writer.close()
    finally:
        assert await served.stop() == 0


async def test_workers_share_one_port():
    served = await start_sockhub("echo", "--port", "0", "--workers", "2")
    try:
        assert list(served.ports) == ["echo, 2 workers"]
        port = served.ports["echo, 2 workers"]
        children = [
            pid for pid in os.listdir("/proc") if pid.isdigit() and _ppid(pid) == served.process.pid
        ]
        assert len(children) == 2

        async def round_trip(i: int) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"w%d" % i)
            got = await asyncio.wait_for(reader.readexactly(len(b"w%d" % i)), STEP)
            writer.close()
            return got

        assert await asyncio.gather(*(round_trip(i) for i in range(20))) == [
            b"w%d" % i for i in range(20)
        ]
    finally:
        assert await served.stop() == 0


def _ppid(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


async def test_workers_refuse_a_unix_socket(tmp_path):
    code, _, err = await run_sockhub(
        "serve", "echo", "--workers", "2", "--unix", str(tmp_path / "s.sock"))
    assert code == 2
    assert b"--workers needs a TCP or UDP port" in err


async def test_config_file_from_the_command_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[service]]\nservice = "upper"\nport = 0\n\n'
                    '[[service]]\nservice = "echo"\nport = 0\n')
    served = await start_sockhub("--config", str(path), listeners=2)
    try:
        assert set(served.ports) == {"upper", "echo"}
    finally:
        assert await served.stop() == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "nosuch"], "unknown service 'nosuch'"),
        (["serve", "nosuchmodule:Thing"], "cannot import 'nosuchmodule'"),
        (["serve", "sockhub.cli:main"], "is not a subclass of sockhub.Protocol"),
        (["serve", "echo", "--tls-cert", "c.pem"], "go together"),
        (["serve", "echo", "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k"],
         "cannot load TLS certificate"),
        (["serve", "--port", "9000"], "--port needs a SERVICE"),
        (["serve", "echo", "--config", "x.toml"], "not both"),
        (["serve", "--config", "/nonexistent.toml"], "cannot read"),
        (["serve", "echo", "--port", "70000"], "out of range"),
        (["serve", "udp-echo", "--unix", "/tmp/x.sock"], "neither TLS nor a Unix socket"),
        (["serve", "echo", "--loop", "asyncio", "--workers", "0"], "at least 1"),
        (["serve", "upper", "--max-line", "0"], "max_line must be at least 1"),
        (["serve", "upper", "--max-line", "2.5"], "--max-line must be a whole number"),
        (["serve", "upper", "--idle-timeout", "0"], "idle_timeout must be more than 0"),
    ],
)
def test_bad_serve_options_exit_2_with_a_clear_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_limit_options_accept_none(capsys):
    from sockhub.cli import build_parser
    from sockhub.cli.serve import serve_configs as _serve_configs

    args = build_parser().parse_args(
        ["serve", "echo", "--idle-timeout", "none", "--max-conns", "5", "--max-line", "100"])
    (config,) = _serve_configs(args)
    assert config.limits == {"idle_timeout": None, "max_conns": 5, "max_line": 100}
    limits = config.resolved_limits({})
    assert limits.idle_timeout is None and limits.max_conns == 5


def test_serve_help_documents_every_limit(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--max-conns", "--max-conns-per-ip", "--idle-timeout", "--max-line",
                 "--max-frame", "--write-high-water", "--write-buffer-max", "--write-timeout",
                 "--drain-timeout", "--tls-cert", "--tls-key", "--workers", "--config",
                 "--loop", "--unix", "--banner", "listening on HOST:PORT (SERVICE)"):
        assert flag in out


async def test_passwd_prints_a_hash_that_verifies():
    from sockhub.passwords import verify_password

    code, out, _ = await run_sockhub("passwd", stdin=b"correct horse\n")
    assert code == 0
    stored = out.decode().strip()
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong horse", stored)
    code, _, err = await run_sockhub("passwd", stdin=b"\n")
    assert code == 2 and b"empty password" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "echo", "--history", "5"], "apply to chat only"),
        (["serve", "chat", "--oper", "admin"], "--oper takes NAME=HASH"),
        (["serve", "chat", "--oper", "admin=plaintext"], "needs a password hash"),
        (["serve", "chat", "--history", "5000"], "history must be 0-1000"),
        (["serve", "chat", "--registration-timeout", "0"],
         "registration_timeout must be a number of seconds above 0"),
        (["serve", "echo", "--registration-timeout", "5"], "apply to chat only"),
    ],
)
def test_bad_chat_options(argv, message, capsys, tmp_path):
    assert main([*argv, "--data-dir", str(tmp_path), "--port", "0"]) == 2
    assert message in capsys.readouterr().err


def test_registration_timeout_is_one_chat_option_for_every_door():
    from sockhub.cli import build_parser
    from sockhub.cli.serve import serve_configs as _serve_configs

    for given, wanted in (("2.5", 2.5), ("none", None)):
        args = build_parser().parse_args(["serve", "chat", "--registration-timeout", given])
        (config,) = _serve_configs(args)
        assert config.options["registration_timeout"] == wanted
