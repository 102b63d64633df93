"""TLS, IPv6, Unix sockets and TOML configurations."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest
import trustme

from net import STEP, read_line, read_until_eof, server_side
from sockhub.config import ServiceConfig, load_toml
from sockhub.engine import loops
from sockhub.engine.server import Engine, make_servers
from sockhub.errors import ConfigError
from sockhub.services.registry import resolve


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca, tmp_path):
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return str(cert_path), str(key_path)


async def test_tls_round_trip(serve, ca, tls_files):
    cert, key = tls_files
    server = await serve("upper", tls_cert=cert, tls_key=key)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", server.ports[0], ssl=context,
                                server_hostname="localhost"), STEP)
    writer.write(b"secret\n")
    assert await read_line(reader) == b"SECRET\r\n"
    assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    writer.close()


async def test_tls_rejects_a_plain_text_client_and_keeps_serving(serve, ca, tls_files):
    cert, key = tls_files
    server = await serve("echo", tls_cert=cert, tls_key=key)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.ports[0])
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    assert await read_until_eof(reader) == b""  # handshake fails, connection closed
    writer.close()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.ports[0], ssl=context, server_hostname="localhost")
    writer.write(b"ok")
    assert await asyncio.wait_for(reader.readexactly(2), STEP) == b"ok"
    writer.close()


def test_tls_needs_both_files():
    from sockhub.config import ServiceConfig

    with pytest.raises(ConfigError, match="go together"):
        ServiceConfig(service="echo", tls_cert="cert.pem")


async def test_ipv6_loopback(serve):
    server = await serve("upper", hosts=("::1",))
    assert server.addresses[0].startswith("[::1]:")
    reader, writer = await asyncio.open_connection("::1", server.ports[0])
    writer.write(b"six\n")
    assert await read_line(reader) == b"SIX\r\n"
    writer.close()


async def test_ipv4_and_ipv6_at_once(serve):
    server = await serve("echo", hosts=("127.0.0.1", "::1"), port=0)
    assert len(server.addresses) == 2


async def test_unix_socket(serve, tmp_path):
    path = str(tmp_path / "upper.sock")
    server = await serve("upper", unix=path)
    assert server.addresses == [f"unix:{path}"]
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(b"local\n")
    assert await read_line(reader) == b"LOCAL\r\n"
    writer.close()


async def test_unix_socket_left_by_a_dead_server_is_replaced(serve, tmp_path):
    import socket

    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    server = await serve("echo", unix=path)
    assert server.addresses == [f"unix:{path}"]


async def test_unix_socket_in_use_is_refused(serve, tmp_path):
    path = str(tmp_path / "busy.sock")
    await serve("echo", unix=path)
    with pytest.raises(ConfigError, match="another server is listening"):
        await serve("echo", unix=path)


async def test_port_in_use_is_a_clear_error(serve):
    server = await serve("echo")
    with pytest.raises(ConfigError, match="cannot listen on"):
        await serve("echo", port=server.ports[0])


async def test_toml_config_runs_several_services_in_one_process(tmp_path):
    config = tmp_path / "services.toml"
    config.write_text(
        'host = "127.0.0.1"\nidle_timeout = 30\n\n'
        '[[service]]\nservice = "echo"\nport = 0\n\n'
        '[[service]]\nservice = "hello"\nport = 0\nbanner = "hi there"\nmax_conns = 5\n\n'
        '[[service]]\nservice = "udp-echo"\nport = 0\n'
    )
    configs = load_toml(config)
    assert [c.service for c in configs] == ["echo", "hello", "udp-echo"]
    assert configs[1].limits == {"idle_timeout": 30, "max_conns": 5}
    engine = Engine(configs, resolve)
    await engine.start()
    try:
        echo, hello, _ = engine.servers
        assert hello.limits.max_conns == 5
        reader, writer = await asyncio.open_connection("127.0.0.1", hello.ports[0])
        assert await read_line(reader) == b"hi there\r\n"
        assert await read_line(reader) == b"hello!\r\n"
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", echo.ports[0])
        writer.write(b"e")
        assert await asyncio.wait_for(reader.readexactly(1), STEP) == b"e"
        writer.close()
    finally:
        await engine.shutdown()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[service]]\nport = 1\n", "needs a 'service' key"),
        ('[[service]]\nservice = "echo"\nbogus = 1\n', "unknown key"),
        ('[[service]]\nservice = "echo"\nmax_conns = -1\n', "at least 1"),
        ('[[service]]\nservice = "nope"\n', None),
        ("port = \n", "Invalid"),
        ("x = 1\n", "no \\[\\[service\\]\\] tables"),
    ],
)
def test_bad_toml_configs_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    if message is None:  # unknown service is caught when the engine is built
        with pytest.raises(ConfigError, match="unknown service"):
            Engine(load_toml(path), resolve)
    else:
        with pytest.raises(ConfigError, match=message):
            load_toml(path)


@pytest.mark.parametrize("tls", [False, True])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_tcp_nodelay_is_on_for_every_loop_plain_or_tls(ca, tls_files, loop, tls):
    """The engine leaves TCP_NODELAY to the loops (asking for the socket to set it made
    uvloop keep a PseudoSocket per connection): both must set it, under TLS too."""
    cert, key = tls_files

    async def main() -> int:
        extra = {"tls_cert": cert, "tls_key": key} if tls else {}
        (server,), _ = make_servers(ServiceConfig(service="echo", port=0, **extra),
                                    resolve("echo"))
        await server.start()
        context = None
        if tls:
            context = ssl.create_default_context()
            ca.configure_trust(context)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", server.ports[0], ssl=context,
                server_hostname="localhost" if tls else None), STEP)
            writer.write(b"x")
            assert await asyncio.wait_for(reader.readexactly(1), STEP) == b"x"
            sock = server_side(server, writer).transport.get_extra_info("socket")
            writer.close()
            return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        finally:
            await server.shutdown()

    assert loops.run(main(), loop) != 0
