"""``sockhub connect``, ``ping`` and ``bench`` as real processes against real servers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import trustme

from proc import run_sockhub
from sockhub.client.address import parse_hostport
from sockhub.errors import ConfigError


async def test_connect_relays_stdin_and_prints_replies(serve):
    server = await serve("hello")
    code, out, err = await run_sockhub(
        "connect", f"127.0.0.1:{server.ports[0]}", stdin=b"bob\nexit\n")
    assert code == 0, err
    assert out == b"hello!\r\nHello, bob!\r\nBye!\r\n"


async def test_connect_half_closes_at_end_of_input(serve):
    server = await serve("echo")
    data = bytes(range(256)) * 400  # binary, 100 KiB
    code, out, _ = await run_sockhub("connect", f"127.0.0.1:{server.ports[0]}", stdin=data)
    assert code == 0
    assert out == data


async def test_connect_ipv6(serve):
    server = await serve("upper", hosts=("::1",))
    code, out, _ = await run_sockhub("connect", f"[::1]:{server.ports[0]}", stdin=b"v6\n")
    assert (code, out) == (0, b"V6\r\n")


async def test_connect_unix(serve, tmp_path):
    path = str(tmp_path / "u.sock")
    await serve("upper", unix=path)
    code, out, _ = await run_sockhub("connect", "--unix", path, stdin=b"unix\n")
    assert (code, out) == (0, b"UNIX\r\n")


async def test_connect_udp_one_datagram_per_line(serve):
    server = await serve("udp-echo")
    code, out, _ = await run_sockhub(
        "connect", f"127.0.0.1:{server.ports[0]}", "--udp", "--wait", "0.5",
        stdin=b"first\nsecond\n")
    assert code == 0
    assert out == b"first\nsecond\n"


async def test_connect_tls_verifies_with_cafile_or_runs_insecure(serve, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "c.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "k.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = await serve("upper", tls_cert=str(tmp_path / "c.pem"),
                         tls_key=str(tmp_path / "k.pem"))
    address = f"localhost:{server.ports[0]}"
    code, out, err = await run_sockhub(
        "connect", address, "--tls", "--cafile", str(tmp_path / "ca.pem"), stdin=b"tls\n")
    assert (code, out) == (0, b"TLS\r\n"), err
    code, out, _ = await run_sockhub("connect", address, "--insecure", stdin=b"x\n")
    assert (code, out) == (0, b"X\r\n")
    # Without the CA the certificate is not trusted: a clear error, exit 1.
    code, out, err = await run_sockhub("connect", address, "--tls", stdin=b"x\n")
    assert code == 1
    assert b"TLS error" in err and b"Traceback" not in err


async def test_connect_refused_is_a_clear_error():
    port = _free_port()
    code, _, err = await run_sockhub("connect", f"127.0.0.1:{port}", stdin=b"")
    assert code == 1
    assert f"127.0.0.1:{port}: connection refused".encode() in err


async def test_ping_tcp_prints_round_trips(serve):
    server = await serve("echo")
    code, out, _ = await run_sockhub(
        "ping", f"127.0.0.1:{server.ports[0]}", "-c", "3", "-i", "0.05")
    text = out.decode()
    assert code == 0
    assert text.count("32 bytes from 127.0.0.1") == 3
    assert "3 probes sent, 3 received, 0% loss" in text
    assert "rtt min/avg/max/mdev = " in text


async def test_ping_udp_and_connect_modes(serve):
    udp = await serve("udp-echo")
    code, out, _ = await run_sockhub(
        "ping", f"127.0.0.1:{udp.ports[0]}", "--udp", "-c", "2", "-i", "0.05")
    assert code == 0 and b"2 probes sent, 2 received" in out
    tcp = await serve("hello")  # --connect works against any TCP service
    code, out, _ = await run_sockhub(
        "ping", f"127.0.0.1:{tcp.ports[0]}", "--connect", "-c", "2", "-i", "0.05")
    assert code == 0 and out.count(b"connected to 127.0.0.1") == 2


async def test_ping_with_nobody_listening_reports_loss():
    port = _free_port()
    code, out, _ = await run_sockhub(
        "ping", f"127.0.0.1:{port}", "--udp", "-c", "2", "-i", "0.05", "-W", "0.5")
    assert code == 1
    assert b"100% loss" in out


async def test_bench_echo_reports_json(serve):
    server = await serve("echo")
    code, out, err = await run_sockhub(
        "bench", "echo", f"127.0.0.1:{server.ports[0]}", "--conns", "4", "--size", "512",
        "--seconds", "0.5", "--procs", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["requests"] > 0 and result["errors"] == 0
    assert result["conns"] == 4 and result["procs"] == 2 and result["size"] == 512
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]


async def test_bench_text_report(serve):
    server = await serve("echo")
    code, out, _ = await run_sockhub(
        "bench", "echo", f"127.0.0.1:{server.ports[0]}", "--seconds", "0.3", "--conns", "2")
    assert code == 0
    for word in (b"req/s", b"MB/s", b"p50", b"p99", b"errors      0", b"client CPU"):
        assert word in out


async def test_bench_counts_refused_connections_as_errors():
    code, out, _ = await run_sockhub(
        "bench", "echo", f"127.0.0.1:{_free_port()}", "--seconds", "0.2", "--conns", "3",
        "--json")
    assert code == 1
    assert json.loads(out)["errors"] == 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("example.org:80", ("example.org", 80)), ("[::1]:6667", ("::1", 6667)),
     (":9000", ("127.0.0.1", 9000)), ("9000", ("127.0.0.1", 9000))],
)
def test_parse_hostport(text, expected):
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["host", "host:0", "host:99999", "::1:80", "[::1]80", "h:x"])
def test_parse_hostport_rejects(text):
    with pytest.raises(ConfigError):
        parse_hostport(text)


async def test_client_errors_exit_2():
    code, _, err = await run_sockhub("connect", "nohost")
    assert code == 2 and b"expected HOST:PORT" in err
    code, _, err = await run_sockhub("connect")
    assert code == 2 and b"give HOST:PORT or --unix PATH" in err


def test_a_client_command_does_not_load_the_servers():
    """`sockhub ping` builds only its own parser: the service registry stays unimported."""
    code = ("import sys\nfrom sockhub.cli import main\n"
            "try:\n    main(['ping', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('sockhub.services.registry' in sys.modules, 'sockhub.doors' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    assert out.splitlines()[-1] == "False False"
