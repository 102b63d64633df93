"""Parse ``HOST:PORT`` the way people type it, IPv6 included."""

from __future__ import annotations

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
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"bad address {text!r}: expected HOST:PORT") from None
    if not 0 < port <= 65535:
        raise ConfigError(f"bad address {text!r}: port must be 1-65535")
    return host, port


def client_tls_context(*, insecure: bool = False, cafile: str | None = None) -> ssl.SSLContext:
    """A client TLS context: system CAs (or ``cafile``), or no checks at all."""
    context = ssl.create_default_context(cafile=cafile)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
