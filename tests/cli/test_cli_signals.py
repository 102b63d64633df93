"""Signals on a real ``sockhub serve`` process: TERM/INT stop, HUP reloads and never exits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl

import pytest
import trustme

from helpers import write_token
from net import STEP, FirstLine, LineClient, chat_client, open_client, read_line, wait_gone
from proc import start_sockhub
from sockhub.client.exec import ExecClient


async def test_sighup_keeps_chat_clients_connected_and_chatting(tmp_path):
    served = await start_sockhub("chat", "--port", "0", "--data-dir", str(tmp_path))
    try:
        port = served.ports["chat"]
        alice, bob = await chat_client(port, "alice"), await chat_client(port, "bob")
        for _ in range(2):
            served.process.send_signal(signal.SIGHUP)
            assert "reloaded (nothing changed)" in await served.expect_log("reloaded")
        assert served.process.returncode is None
        await alice.send("still here?")
        await bob.expect("<alice> still here?")
        await bob.send("yes")
        await alice.expect("<bob> yes")
        carol = await chat_client(port, "carol")  # and the door still admits newcomers
        for client in (alice, bob, carol):
            client.close()
    finally:
        assert await served.stop() == 0


async def _motd(port: int, nick: str) -> list[str]:
    """Register on the IRC door and return the MOTD's text lines (372)."""
    reader, writer = await open_client(port)
    writer.write(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode())
    lines = []
    while True:
        line = (await read_line(reader)).decode()
        assert line, "EOF before the end of the MOTD"
        if " 372 " in line:
            lines.append(line.rstrip("\r\n").split(" :", 1)[1])
        if " 376 " in line or " 422 " in line:
            writer.close()
            return lines


async def test_sighup_rereads_the_config_file_and_a_bad_file_keeps_the_old(tmp_path):
    motd = tmp_path / "motd.txt"
    motd.write_text("first motd\n")
    config = tmp_path / "hub.toml"
    body = (f'[[service]]\nservice = "chat"\nport = 0\noptions = {{ irc_port = 0, '
            f'data_dir = "{tmp_path}", motd_file = "{motd}" }}\n')
    config.write_text(body)
    served = await start_sockhub("--config", str(config), listeners=2)
    try:
        irc, line_door = served.ports["irc"], served.ports["chat"]
        alice = await chat_client(line_door, "alice")
        assert "- first motd" in await _motd(irc, "one")

        motd.write_text("second motd\n")
        served.process.send_signal(signal.SIGHUP)
        assert "reloaded chat: motd" in await served.expect_log("reloaded")
        assert "- second motd" in await _motd(irc, "two")

        config.write_text(body + "[[service]\n")  # broken TOML
        served.process.send_signal(signal.SIGHUP)
        assert "reload refused, old settings kept" in await served.expect_log("reload")

        config.write_text(body.replace("port = 0", "port = 1"))
        served.process.send_signal(signal.SIGHUP)
        line = await served.expect_log("reload")
        assert "refused" in line and "port changed, which needs a restart" in line

        missing = body.replace(str(motd), str(tmp_path / "gone.txt"))
        config.write_text(missing)
        served.process.send_signal(signal.SIGHUP)
        line = await served.expect_log("reload")
        assert "chat refused, old settings kept" in line and "gone.txt" in line

        assert "- second motd" in await _motd(irc, "three")
        await alice.send("/who")
        await alice.expect("alice")  # the line user never noticed any of it
        alice.close()
        assert served.process.returncode is None
    finally:
        assert await served.stop() == 0


@pytest.fixture(scope="module")
def two_cas() -> tuple[trustme.CA, trustme.CA]:
    return trustme.CA(), trustme.CA()


def _write_cert(ca: trustme.CA, tmp_path, cert_name: str, key_name: str) -> None:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / cert_name))
    cert.private_key_pem.write_to_path(str(tmp_path / key_name))


async def _tls_upper(port: int, ca: trustme.CA, server_hostname: str) -> bytes:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_hostname),
        STEP)
    writer.write(b"tls\n")
    answer = await read_line(reader)
    writer.close()
    return answer


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_sighup_reloads_the_tls_certificate_and_a_broken_key_keeps_the_old(
    tmp_path, two_cas, loop
):
    old_ca, new_ca = two_cas
    _write_cert(old_ca, tmp_path, "cert.pem", "key.pem")
    served = await start_sockhub("upper", "--port", "0", "--tls-cert", str(tmp_path / "cert.pem"),
                                 "--tls-key", str(tmp_path / "key.pem"), "--loop", loop)
    try:
        port = served.ports["upper, tls"]
        plain = LineClient(*await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=_trusting(old_ca), server_hostname="localhost"), STEP))
        await plain.send("before")
        await plain.expect("BEFORE")

        (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n")
        served.process.send_signal(signal.SIGHUP)
        line = await served.expect_log("reload")
        assert "reload refused, old settings kept" in line and "key.pem" in line
        assert await _tls_upper(port, old_ca, "localhost") == b"TLS\r\n"

        _write_cert(new_ca, tmp_path, "cert.pem", "key.pem")
        served.process.send_signal(signal.SIGHUP)
        assert "reloaded upper: TLS certificate" in await served.expect_log("reload")
        # With a name (SNI sent) and with an IP address (no SNI): both get the new one.
        for name in ("localhost", "127.0.0.1"):
            assert await _tls_upper(port, new_ca, name) == b"TLS\r\n"
        with pytest.raises(ssl.SSLCertVerificationError):
            await _tls_upper(port, old_ca, "localhost")
        await plain.send("after")  # a connection made before the reload goes on
        await plain.expect("AFTER")
        plain.close()
    finally:
        assert await served.stop() == 0


def _trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_workers_reload_on_sighup_and_keep_serving():
    served = await start_sockhub("upper", "--port", "0", "--workers", "2")
    try:
        served.process.send_signal(signal.SIGHUP)
        await served.expect_log("reloaded (nothing changed)")
        await served.expect_log("reloaded (nothing changed)")
        client = LineClient(*await open_client(served.ports["upper, 2 workers"]))
        await client.send("up")
        await client.expect("UP")
        client.close()
    finally:
        assert await served.stop() == 0


def _token(tmp_path) -> tuple[str, bytes]:
    token = b"0123456789abcdef-test-token-of-32"
    return str(write_token(tmp_path / "token", token)), token


async def test_sighup_leaves_a_running_exec_command_alone_and_sigterm_kills_its_group(tmp_path):
    token_file, token = _token(tmp_path)
    served = await start_sockhub("exec", "--port", "0", "--token-file", token_file,
                                 "--allow", "sh", "--timeout", "300")
    client = await ExecClient.connect("127.0.0.1", served.ports["exec"], token=token)
    first = FirstLine()
    # The command and a child of its own: both must outlive the HUP, neither the TERM.
    task = asyncio.create_task(client.run(["sh", "-c", "sleep 300 & echo $$ $!; wait"],
                                          on_stdout=first))
    try:
        pids = [int(word) for word in (await first.line()).split()]
        served.process.send_signal(signal.SIGHUP)
        assert "reloaded (nothing changed)" in await served.expect_log("reloaded")
        for pid in pids:
            os.kill(pid, 0)  # still running: raises ProcessLookupError otherwise
        assert not task.done()
        assert await served.stop(signal.SIGTERM) == 0
        for pid in pids:
            await wait_gone(pid)
        audit = [entry for entry in served.log if "exec peer=" in entry]
        assert len(audit) == 1 and "sleep 300" in audit[0]
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await client.close()


async def test_a_command_running_across_a_sighup_is_still_bound_by_its_timeout(tmp_path):
    token_file, token = _token(tmp_path)
    served = await start_sockhub("exec", "--port", "0", "--token-file", token_file,
                                 "--allow", "sh", "--timeout", "3")
    try:
        client = await ExecClient.connect("127.0.0.1", served.ports["exec"], token=token)
        first = FirstLine()
        task = asyncio.create_task(client.run(["sh", "-c", "echo started; exec sleep 300"],
                                              on_stdout=first))
        assert await first.line() == b"started"
        served.process.send_signal(signal.SIGHUP)
        await served.expect_log("reloaded")
        result = await asyncio.wait_for(task, STEP)
        assert result.reason == "timeout"
        await client.close()
    finally:
        assert await served.stop() == 0
