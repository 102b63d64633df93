"""Parse ``HOST:PORT`` (or nc's ``HOST PORT``) the way people type it, IPv6 included."""

from __future__ import annotations

import ipaddress
import ssl

from sockhub.errors import ConfigError


def parse_hostport(text: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"example:80"``, ``"[::1]:80"``, ``":80"`` and ``"80"`` → (host, port).

    Raises:
        ConfigError: no port, a port out of range, or unbalanced brackets.
    """
    host, port_text = default_host, text
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise ConfigError(f"bad address {text!r}: expected [IPv6]:PORT")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise ConfigError(f"bad address {text!r}: write IPv6 addresses as [ADDR]:PORT")
        host = host or default_host
    return host, _port(port_text, text, "expected HOST:PORT")


def parse_address(text: str, port: str | None = None) -> tuple[str, int]:
    """``HOST:PORT``, or ``HOST PORT`` as nc takes them: (host, port).

    With ``port`` given apart, ``text`` is the host alone: a name, an IPv4
    address, or an IPv6 address with or without brackets (``::1``, ``[::1]``).

    Raises:
        ConfigError: a bad port, or a host that is not one.
    """
    if port is None:
        return parse_hostport(text)
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if not host or any(c in host for c in "[] /"):
        raise ConfigError(f"bad host {text!r}: expected HOST PORT or HOST:PORT")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(
                f"bad host {text!r}: give HOST PORT or HOST:PORT, not both") from None
    return host, _port(port, f"{text} {port}", "expected HOST PORT")


def _port(port_text: str, text: str, expected: str) -> int:
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"bad address {text!r}: {expected}") from None
    if not 0 < port <= 65535:
        raise ConfigError(f"bad address {text!r}: port must be 1-65535")
    return port


def client_tls_context(*, insecure: bool = False, cafile: str | None = None) -> ssl.SSLContext:
    """A client TLS context: system CAs (or ``cafile``), or no checks at all."""
    context = ssl.create_default_context(cafile=cafile)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
