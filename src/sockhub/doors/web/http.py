"""What the web door answers over plain HTTP: routes, the page's files, the headers.

Pure functions of a request's method and path (and a few facts the door
passes in); the door (``door.py``) does the parsing with h11 and the
sending. The table of routes is docs/web-protocol.md's, in code.
"""

from __future__ import annotations

import http
import importlib.resources
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from sockhub import metrics

#: The largest request line plus headers a client may send (then 431).
HEADER_MAX = 16 * 1024
#: The largest body a GET may carry, read and ignored (then 413).
BODY_MAX = 16 * 1024

#: On every response (docs/web-protocol.md): no inline script can run, whatever
#: text reaches the page; nothing is sniffed, framed, or told where it came from.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy",
     "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
     "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)

ALLOW = "GET, HEAD"
TEXT = "text/plain; charset=utf-8"

#: The page's files, by path: the file in the package's ``static/`` and its type.
STATIC: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}

#: Every path the door knows besides the page's files.
PATHS = frozenset({*STATIC, "/hello", "/healthz", "/metrics", "/ws"})


@dataclass
class Reply:
    """An HTTP response to send: status, headers besides the common ones, body."""

    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False

    def all_headers(self, *, head: bool = False) -> list[tuple[str, str]]:
        """The headers to send, the security headers and Content-Length included.

        A HEAD response says the length the GET's body would have (RFC 9110 §9.3.2).
        """
        headers = [("Content-Type", self.content_type),
                   ("Content-Length", str(len(self.body))),
                   *SECURITY_HEADERS, *self.headers]
        if self.close:
            headers.append(("Connection", "close"))
        return headers

    @property
    def reason(self) -> bytes:
        try:
            return http.HTTPStatus(self.status).phrase.encode()
        except ValueError:
            return b""


def text_reply(status: int, text: str | None = None, **kwargs: object) -> Reply:
    """A short plain-text answer: ``text`` or the status's own phrase."""
    if text is None:
        text = f"{status} {http.HTTPStatus(status).phrase}"
    return Reply(status, (text + "\n").encode(), **kwargs)  # type: ignore[arg-type]


_static_cache: dict[str, bytes | None] = {}


def static_file(name: str) -> bytes | None:
    """A file of the page from the package (read once per process), or None if absent."""
    if name not in _static_cache:
        resource = importlib.resources.files(__package__ or "sockhub.doors.web") / "static" / name
        try:
            _static_cache[name] = resource.read_bytes()
        except OSError:
            _static_cache[name] = None
    return _static_cache[name]


#: How long one rendering of ``/metrics`` is served again: a client
#: pipelining scrapes cannot make the server render it for each.
METRICS_CACHE_SECONDS = 1.0
_metrics_cache: list[tuple[float, bytes, str]] = []


def metrics_exposition(now: float) -> tuple[bytes, str]:
    """The Prometheus text from ``sockhub.metrics`` and its type, rendered at most once a second.

    ``now`` is the door's clock (seconds, monotonic).
    """
    if _metrics_cache:
        stamp, body, content_type = _metrics_cache[0]
        if 0 <= now - stamp < METRICS_CACHE_SECONDS:
            return body, content_type
    body, content_type = metrics.exposition()
    _metrics_cache[:] = [(now, body, content_type)]
    return body, content_type


#: Host names that are this machine whatever DNS says.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


def host_name(host: str) -> str:
    """A ``Host`` header (or an origin's ``host[:port]``) without the port, lower case.

    ``Example.COM:8080`` → ``example.com``; ``[::1]:8080`` → ``[::1]``.
    """
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[:end + 1] if end > 0 else host
    return host.partition(":")[0]


def is_loopback(address: str) -> bool:
    """Whether ``address`` (ConnectionInfo's ``127.0.0.1:8080``, ``[::1]:8080``) is loopback."""
    host = address.rpartition(":")[0].strip("[]") if ":" in address else address
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def host_allowed(host: str, *, local: str, server_name: str | None,
                 origins: Iterable[str]) -> bool:
    """Whether a request naming ``host`` may be served on the connection to ``local``.

    DNS rebinding: a page from ``evil.example`` whose name is made to point
    at 127.0.0.1 sends ``Host: evil.example`` and ``Origin:
    http://evil.example``, which look like the page's own origin. So on a
    loopback connection the Host must be a loopback name or address, the
    server's name, or the host of an allowed ``--web-origin``. A request
    with no Host (HTTP/1.0, not a browser) passes.
    """
    if not host or not is_loopback(local):
        return True
    name = host_name(host)
    if name in LOOPBACK_NAMES or name == (server_name or "").lower():
        return True
    try:
        if ipaddress.ip_address(name.strip("[]")).is_loopback:
            return True
    except ValueError:
        pass
    return any(name == host_name(origin.partition("://")[2]) for origin in origins)


def route(method: str, path: str, *, shutting_down: bool, now: float) -> Reply:
    """The answer to a request that is not a WebSocket upgrade."""
    path = path.split("?", 1)[0]
    if path not in PATHS:
        return text_reply(404)
    if method not in ("GET", "HEAD"):
        return text_reply(405, headers=[("Allow", ALLOW)])
    if path in STATIC:
        name, content_type = STATIC[path]
        body = static_file(name)
        if body is None:
            return text_reply(404, f"404 Not Found: {name} is not installed")
        return Reply(200, body, content_type)
    if path == "/hello":
        return Reply(200, b"Hello, World")
    if path == "/healthz":
        if shutting_down:
            return text_reply(503, "shutting down")
        if not metrics.chat.bus_ready:  # --bus: Redis lost; this node refuses messages
            return text_reply(503, "chat bus (Redis) unreachable")
        return text_reply(200, "ok")
    if path == "/metrics":
        body, content_type = metrics_exposition(now)
        return Reply(200, body, content_type)
    # /ws without an Upgrade: this is the WebSocket's address, not a page.
    return text_reply(426, "426 Upgrade Required: /ws is a WebSocket",
                      headers=[("Upgrade", "websocket")])
