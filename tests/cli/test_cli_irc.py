"""``sockhub serve chat --irc-port ...`` as a real process, and the IRC door over TLS."""

from __future__ import annotations

import asyncio
import ssl

import trustme

from net import STEP, read_until, read_until_eof
from proc import start_sockhub
from sockhub.cli import main


async def test_serve_chat_with_irc_options(tmp_path):
    (tmp_path / "motd.txt").write_text("hello IRC\n")
    served = await start_sockhub(
        "chat", "--port", "0", "--irc-port", "0", "--data-dir", str(tmp_path),
        "--server-name", "irc.test", "--motd-file", str(tmp_path / "motd.txt"),
        "--irc-password", "letmein", listeners=2,
    )
    try:
        assert sorted(served.ports) == ["chat", "irc"]
        assert any(line.endswith("(irc)") and "listening on 127.0.0.1:" in line
                   for line in served.log)
        reader, writer = await asyncio.open_connection("127.0.0.1", served.ports["irc"])
        writer.write(b"PASS letmein\r\nNICK alice\r\nUSER alice 0 * :Alice\r\n")
        lines = await read_until(reader, b" 376 ")
        assert lines[0] == b":irc.test 001 alice :Welcome to the irc.test Network, " \
                           b"alice!alice@127.0.0.1\r\n"
        assert b":irc.test 372 alice :- hello IRC\r\n" in lines
        writer.write(b"QUIT :bye\r\n")
        assert (await read_until_eof(reader)).startswith(b"ERROR :Closing Link:")
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", served.ports["irc"])
        writer.write(b"NICK bob\r\nUSER bob 0 * :Bob\r\n")
        rest = await read_until_eof(reader)
        assert b" 464 * :Password incorrect\r\n" in rest and b"ERROR :" in rest
        writer.close()
    finally:
        assert await served.stop() == 0


async def test_shutdown_tells_irc_clients_with_error(tmp_path):
    served = await start_sockhub("--port", "0", "--data-dir", str(tmp_path), listeners=2)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.ports["irc"])
    writer.write(b"NICK carol\r\nUSER carol 0 * :Carol\r\n")
    await read_until(reader, b" 422 ")
    assert await served.stop() == 0
    assert (await read_until_eof(reader)).endswith(b"(server shutting down)\r\n")
    writer.close()


def test_irc_options_are_chat_options(capsys):
    assert main(["serve", "echo", "--irc-port", "6667"]) == 2
    assert "apply to chat only" in capsys.readouterr().err


async def test_irc_door_over_tls(serve, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    options = {"data_dir": str(tmp_path), "irc_port": 0, "server_name": "irc.test"}
    servers = await serve("chat", options=options, tls_cert=str(cert_path),
                          tls_key=str(key_path))
    # Each door gets a TLS twin; its plain listener stays plain.
    assert [(s.name, s.transport_name) for s in servers] == [
        ("chat", "tcp"), ("chat", "tls"), ("irc", "tcp"), ("irc", "tls")]
    irc_server = servers[3]
    context = ssl.create_default_context()
    ca.configure_trust(context)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", irc_server.ports[0], ssl=context,
                                server_hostname="localhost"), STEP)
    writer.write(b"NICK tls\r\nUSER tls 0 * :T\r\nWHOIS tls\r\n")
    lines = await read_until(reader, b" 318 ")
    assert b":irc.test 671 tls tls :is using a secure connection\r\n" in lines
    writer.close()
