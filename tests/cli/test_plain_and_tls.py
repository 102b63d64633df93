"""Plain and TLS side by side (issue 13, item 7): one process, each door twice.

A certificate gives every chat door a TLS twin and leaves its plain port
plain, so IRC users find 6667 and 6697 at once, line users 9999 and 9998;
STS is advertised only when ``--irc-sts-duration`` asks for it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
import trustme

from net import STEP, LineClient, chat_client, irc_client
from proc import start_sockhub
from sockhub.cli import main
from sockhub.config import ServiceConfig
from sockhub.errors import ConfigError
from sockhub.limits import Limits
from sockhub.services.chat import ChatService
from sockhub.services.chat_settings import ChatSettings


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cert(ca: trustme.CA, tmp_path: Path) -> list[str]:
    """``--tls-cert`` and ``--tls-key`` for 127.0.0.1, signed by ``ca``."""
    issued = ca.issue_cert("127.0.0.1", "localhost")
    issued.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    return ["--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")]


def _trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def _tls_client(port: int, ca: trustme.CA) -> LineClient:
    return LineClient(*await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port, ssl=_trusting(ca), server_hostname="localhost"), STEP))


async def _tls_irc(port: int, ca: trustme.CA, nick: str, channel: str) -> LineClient:
    client = await _tls_client(port, ca)
    await client.send(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN {channel}\r\n".encode())
    await client.expect(f" 366 {nick} {channel} ")
    return client


async def _cap_ls(client: LineClient, version: str = "302", nick: str = "*") -> str:
    await client.send(f"CAP LS {version}\r\n".encode())
    return await client.expect(f" CAP {nick} LS ")


def _free_port() -> int:
    """A port free now, for the one option that refuses port 0 (a remembered STS port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_plain_and_tls_doors_serve_at_once_and_talk_across(ca, cert, tmp_path):
    served = await start_sockhub(
        "chat", "--port", "0", "--irc-port", "0", "--data-dir", str(tmp_path),
        "--server-name", "irc.test", "--flood-rate", "none", "--banner", "hi there", *cert,
        listeners=4)
    try:
        assert sorted(served.ports) == ["chat", "chat, tls", "irc", "irc, tls"]
        plain = await irc_client(served.ports["irc"], "plain", "#x")
        secure = await _tls_irc(served.ports["irc, tls"], ca, "secure", "#x")
        await plain.expect(":secure!secure@127.0.0.1 JOIN #x")
        await plain.send(b"PRIVMSG #x :over plain\r\n")
        assert await secure.expect("over plain") == ":plain!plain@127.0.0.1 PRIVMSG #x :over plain"
        await secure.send(b"PRIVMSG #x :over tls\r\n")
        assert await plain.expect("over tls") == ":secure!secure@127.0.0.1 PRIVMSG #x :over tls"
        # WHOIS says who came in with TLS (671), whichever port asks.
        await plain.send(b"WHOIS secure\r\nWHOIS plain\r\n")
        await plain.expect(" 671 plain secure :is using a secure connection")
        await plain.expect(" 318 plain plain ")
        assert not any(" 671 plain plain " in line for line in plain.seen)

        # The line door: 9999-style plain and 9998-style TLS, in the same rooms.
        nc = await chat_client(served.ports["chat"], "nc")
        tls_line = await _tls_client(served.ports["chat, tls"], ca)
        await tls_line.expect("enter a nick")
        assert tls_line.seen[0] == "hi there"  # the banner, at both of the line door's ports
        assert nc.seen[0] == "hi there"
        await tls_line.send("sline")
        await tls_line.expect("#lobby * sline joined")
        await nc.send("/join #x")
        await tls_line.send("/join #x")
        await secure.expect(":sline!sline@127.0.0.1 JOIN #x")
        await nc.send("from nc")
        assert (await tls_line.expect("from nc")).endswith(" #x <nc> from nc")
        assert await secure.expect("from nc") == ":nc!nc@127.0.0.1 PRIVMSG #x :from nc"
        await secure.send(b"PRIVMSG #x :hello lines\r\n")
        for line_user in (nc, tls_line):
            assert (await line_user.expect("hello lines")).endswith(" #x <secure> hello lines")

        # No STS unless asked for, on either port.
        for client, nick in ((plain, "plain"), (secure, "secure")):
            assert not any(cap.startswith(("sts", ":sts"))
                           for cap in (await _cap_ls(client, nick=nick)).split())
        # Plain IRC on the TLS port is refused; that port keeps serving.
        reader, writer = await asyncio.open_connection("127.0.0.1", served.ports["irc, tls"])
        writer.write(b"NICK oops\r\nUSER oops 0 * :oops\r\n")
        assert await asyncio.wait_for(reader.read(), STEP) == b""
        writer.close()
        again = await _tls_irc(served.ports["irc, tls"], ca, "again", "#x")
        await plain.expect(":again!again@127.0.0.1 JOIN #x")
        for client in (plain, secure, nc, tls_line, again):
            client.close()
    finally:
        assert await served.stop() == 0


async def test_sts_is_advertised_only_when_configured(ca, cert, tmp_path):
    tls_port = _free_port()
    served = await start_sockhub(
        "chat", "--port", "0", "--irc-port", "0", "--irc-tls-port", str(tls_port),
        "--irc-sts-duration", "300", "--data-dir", str(tmp_path), "--server-name", "irc.test",
        *cert, listeners=4)
    try:
        assert served.ports["irc, tls"] == tls_port
        plain = LineClient(*await asyncio.open_connection("127.0.0.1", served.ports["irc"]))
        # IRCv3 STS: the port key on an insecure connection, for CAP LS 302 clients.
        assert f"sts=port={tls_port}" in (await _cap_ls(plain)).split()
        assert not any(cap.startswith(("sts", ":sts"))
                       for cap in (await _cap_ls(plain, "")).split())
        await plain.send(b"CAP REQ sts\r\n")
        await plain.expect(" CAP * NAK :sts")
        secure = await _tls_client(tls_port, ca)
        assert "sts=duration=300" in (await _cap_ls(secure)).split()
        plain.close()
        secure.close()
    finally:
        assert await served.stop() == 0


def test_the_usual_tls_ports_when_a_certificate_is_given(tmp_path):
    """9998 beside 9999, 6697 beside 6667, 8443 beside 8080; free ones beside free ones."""

    def ports(tls: bool, port: int = 9999, **options: object) -> list[tuple[int | None, bool]]:
        settings = ChatSettings(data_dir=tmp_path, **options)  # type: ignore[arg-type]
        service = ChatService(settings, Limits(), port=port, tls=tls)
        try:
            return [(x.port, x.tls) for x in service.listeners() if x.port is not None]
        finally:
            service.close()

    assert ports(False, irc_port=6667) == [(9999, False), (6667, False)]
    assert ports(True, irc_port=6667, web_port=8080) == [
        (9999, False), (9998, True), (6667, False), (6697, True), (8080, False), (8443, True)]
    assert ports(True, port=0, irc_port=0) == [(0, False), (0, True), (0, False), (0, True)]
    # A TLS-only IRC door, and a line door whose TLS twin moved.
    assert ports(True, tls_port=7000, irc_tls_port=7001) == [
        (9999, False), (7000, True), (7001, True)]
    with pytest.raises(ConfigError, match="--irc-tls-port needs --tls-cert"):
        ports(False, irc_tls_port=6697)
    with pytest.raises(ConfigError, match="--irc-sts-duration needs"):
        ports(True, port=0, irc_port=0, irc_sts_duration=60)  # a free port cannot be kept to
    with pytest.raises(ConfigError, match="--irc-sts-duration needs"):
        ports(False, irc_port=6667, irc_sts_duration=60)


def test_a_tls_port_without_a_certificate_is_refused_at_start(capsys, tmp_path):
    assert main(["serve", "chat", "--port", "0", "--tls-port", "0",
                 "--data-dir", str(tmp_path)]) == 2
    assert "--tls-port needs --tls-cert and --tls-key" in capsys.readouterr().err


def test_sighup_keeps_the_tls_ports_and_reloads_the_sts_duration(tmp_path):
    def config(**options: object) -> ServiceConfig:
        return ServiceConfig(service="chat", port=9999, tls_cert="c.pem", tls_key="k.pem",
                             options={"data_dir": str(tmp_path), "irc_port": 6667, **options},
                             settings_type=ChatSettings)

    service = ChatService.from_config(config(irc_sts_duration=60), Limits())
    try:
        assert service.irc_sts == (6697, 60)
        with pytest.raises(ConfigError, match="irc_tls_port changed, which needs a restart"):
            service.reload(config(irc_sts_duration=60, irc_tls_port=7000), Limits())
        with pytest.raises(ConfigError, match="tls_port changed"):
            service.reload(config(tls_port=7000), Limits())
        assert service.reload(config(irc_sts_duration=0), Limits()) == ["irc sts duration"]
        assert service.irc_sts == (6697, 0)  # withdrawing the policy is a reload
        assert service.reload(config(), Limits()) == ["irc sts duration"]
        assert service.irc_sts is None
    finally:
        service.close()
