"""The web door's HTTP side over real sockets: routes, headers, keep-alive, and bad HTTP.

Requests are written by hand on raw sockets, so what is tested is what the
server does with bytes (docs/web-protocol.md, HTTP): the right status and
a close for oversize headers, garbage, a slow request or an oversize body,
never a traceback.
"""

from __future__ import annotations

import asyncio

import h11
import pytest

from net import STEP, open_client, read_until_eof
from sockhub.doors.web.http import route

SECURITY = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@pytest.fixture
async def web(serve, tmp_path):
    """Start the chat service with the web door on a free port; its servers by name."""

    async def start(**options):
        servers = await serve("chat", options={"data_dir": str(tmp_path), "web_port": 0,
                                               **options})
        return {server.name: server for server in servers}

    return start


class HttpClient:
    """A raw connection, responses read with h11's client side."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.CLIENT)

    async def request(self, method: str, path: str, *, headers: tuple = (),
                      head: bool = False) -> tuple[h11.Response, bytes]:
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: [::1]\r\n".encode()
                          + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n")
        self.conn.send(h11.Request(method=method, target=path, headers=[("Host", "localhost")]))
        self.conn.send(h11.EndOfMessage())
        response, body = None, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(self.reader.read(65536), STEP)
                self.conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return response, body
            else:
                raise AssertionError(f"unexpected {event!r}")


def headers_of(response: h11.Response) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in response.headers}


async def raw(port: int, data: bytes) -> bytes:
    """Send ``data``, read until the server closes."""
    reader, writer = await open_client(port)
    writer.write(data)
    try:
        return await read_until_eof(reader)
    finally:
        writer.close()


async def test_hello_health_page_and_the_security_headers_on_each(web):
    port = (await web())["web"].ports[0]
    client = HttpClient(*await open_client(port))
    response, body = await client.request("GET", "/hello")
    assert response.status_code == 200 and body == b"Hello, World"
    headers = headers_of(response)
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert SECURITY.items() <= headers.items()
    # Keep-alive: the same connection answers again.
    response, body = await client.request("GET", "/healthz")
    assert response.status_code == 200 and body.strip() == b"ok"
    response, body = await client.request("GET", "/")
    assert response.status_code == 200 and body.startswith(b"<!doctype html>")
    assert headers_of(response)["content-type"] == "text/html; charset=utf-8"
    assert SECURITY.items() <= headers_of(response).items()
    for path in ("/nope", "/hello/x", "/../etc/passwd"):
        response, _ = await client.request("GET", path)
        assert response.status_code == 404
        assert SECURITY.items() <= headers_of(response).items()
    client.writer.close()


async def test_head_gives_the_headers_without_the_body(web):
    port = (await web())["web"].ports[0]
    client = HttpClient(*await open_client(port))
    response, body = await client.request("HEAD", "/hello")
    assert response.status_code == 200 and body == b""
    assert headers_of(response)["content-length"] == "12"
    response, body = await client.request("GET", "/hello")  # still in step
    assert body == b"Hello, World"
    client.writer.close()


async def test_another_method_on_a_known_path_is_405_with_allow(web):
    port = (await web())["web"].ports[0]
    reply = await raw(port, b"DELETE /hello HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 405 ")
    assert b"\r\nAllow: GET, HEAD\r\n" in reply
    reply = await raw(port, b"POST /nothing HTTP/1.1\r\nHost: [::1]\r\nContent-Length: 2\r\n"
                            b"Connection: close\r\n\r\nhi")
    assert reply.startswith(b"HTTP/1.1 404 ")


async def test_ws_without_an_upgrade_is_426(web):
    port = (await web())["web"].ports[0]
    reply = await raw(port, b"GET /ws HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 426 ") and b"\r\nUpgrade: websocket\r\n" in reply


async def test_metrics_answers(web):
    port = (await web())["web"].ports[0]
    reply = await raw(port, b"GET /metrics HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ") and b"sockhub_connections_open" in reply


async def test_healthz_is_503_once_a_graceful_stop_began(web):
    servers = await web()
    port = servers["web"].ports[0]
    client = HttpClient(*await open_client(port))
    response, _ = await client.request("GET", "/healthz")
    assert response.status_code == 200
    servers["web"].runtime.begin_shutdown()
    response, body = await client.request("GET", "/healthz")
    assert response.status_code == 503 and body.strip() == b"shutting down"
    client.writer.close()
    assert route("GET", "/healthz", shutting_down=True, now=0.0).status == 503


async def test_headers_over_16_kib_get_431_and_a_close(web):
    port = (await web())["web"].ports[0]
    big = b"X-Big: " + b"a" * 17000 + b"\r\n"
    reply = await raw(port, b"GET / HTTP/1.1\r\nHost: [::1]\r\n" + big + b"\r\n")
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert b"Traceback" not in reply


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello on the plain port
    b"GET\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
])
async def test_malformed_requests_get_400_and_a_close(web, garbage):
    port = (await web())["web"].ports[0]
    reply = await raw(port, garbage)
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:60]


async def test_a_request_not_complete_in_time_gets_408(web):
    port = (await web(web_header_timeout=0.3))["web"].ports[0]
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await raw(port, b"GET /hello HTTP/1.1\r\nHost: [::1]\r\n")  # never finished
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert loop.time() - started < STEP


async def test_an_idle_keep_alive_connection_is_closed(web):
    port = (await web(web_keepalive_timeout=0.3))["web"].ports[0]
    reply = await raw(port, b"GET /hello HTTP/1.1\r\nHost: [::1]\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"Hello, World")


async def test_a_get_body_over_16_kib_is_413(web):
    port = (await web())["web"].ports[0]
    body = b"x" * 17000
    reply = await raw(port, b"GET /hello HTTP/1.1\r\nHost: [::1]\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert reply.startswith(b"HTTP/1.1 413 ")
    small = (b"GET /hello HTTP/1.1\r\nHost: [::1]\r\nContent-Length: 5\r\n"
             b"Connection: close\r\n\r\nhello")
    assert (await raw(port, small)).startswith(b"HTTP/1.1 200 ")


async def test_pipelined_requests_are_answered_in_order(web):
    port = (await web())["web"].ports[0]
    reply = await raw(port, b"GET /hello HTTP/1.1\r\nHost: [::1]\r\n\r\n"
                            b"GET /healthz HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
    assert reply.count(b"HTTP/1.1 200 ") == 2
    assert reply.index(b"Hello, World") < reply.index(b"\r\n\r\nok")


async def test_a_client_refused_when_the_server_is_full_gets_503(serve, tmp_path):
    servers = await serve("chat", options={"data_dir": str(tmp_path), "web_port": 0},
                          max_conns=1)
    port = {s.name: s for s in servers}["web"].ports[0]
    reader, writer = await open_client(port)
    writer.write(b"GET /hello HTTP/1.1\r\nHost: [::1]\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"Hello, World"), STEP)
    reply = await raw(port, b"GET /hello HTTP/1.1\r\nHost: [::1]\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert SECURITY["content-security-policy"].encode() in reply
    writer.close()


def test_metrics_are_rendered_at_most_once_a_second(monkeypatch):
    from sockhub import metrics
    from sockhub.doors.web import http as web_http

    calls = []

    def exposition() -> tuple[bytes, str]:
        calls.append(1)
        return b"n %d\n" % len(calls), "text/plain"

    monkeypatch.setattr(metrics, "exposition", exposition)
    monkeypatch.setattr(web_http, "_metrics_cache", [])
    assert web_http.metrics_exposition(100.0) == (b"n 1\n", "text/plain")
    assert web_http.metrics_exposition(100.9)[0] == b"n 1\n"
    assert web_http.metrics_exposition(101.0)[0] == b"n 2\n"
    assert len(calls) == 2


async def test_sixty_kilobytes_of_pipelined_requests_are_all_answered_in_order(web):
    port = (await web())["web"].ports[0]
    count = 60_000 // len(b"GET /hello?0000 HTTP/1.1\r\nHost: [::1]\r\n\r\n")
    requests = b"".join(b"GET /hello?%04d HTTP/1.1\r\nHost: [::1]\r\n\r\n" % n
                        for n in range(count))
    reply = await raw(port, requests + b"GET /hello HTTP/1.1\r\nHost: [::1]\r\n"
                                       b"Connection: close\r\n\r\n")
    assert reply.count(b"HTTP/1.1 200 OK\r\n") == count + 1


async def test_a_quarter_megabyte_of_pipelined_requests_gets_429(web):
    port = (await web())["web"].ports[0]
    reader, writer = await open_client(port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: [::1]\r\n\r\n" * 7000)
    reply = b""
    try:  # closed with our requests unread: the kernel may reset rather than end
        while chunk := await asyncio.wait_for(reader.read(65536), STEP):
            reply += chunk
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    # At most the first few answers, then the 429 (unless the reset overtook it).
    assert reply.count(b"HTTP/1.1 200 ") <= 8
    assert (await raw(port, b"GET /hello HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n"
                      )).startswith(b"HTTP/1.1 200 ")
