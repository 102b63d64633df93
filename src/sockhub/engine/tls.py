"""Server TLS contexts whose certificate can be replaced while the server runs.

asyncio (and uvloop) bind a listener to one :class:`ssl.SSLContext` for
its whole life, so a reload cannot hand the listener a new one. Instead the
listener's context carries an SNI callback that moves each new handshake
onto whatever context is current (``SSLObject.context`` may be reassigned
there; CPython calls the callback whether or not the client sent a server
name). Replacing the current context is one assignment: a handshake sees
either the old certificate or the new one, never a half-loaded mix, and
connections already open keep the session they negotiated.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

from sockhub.errors import ConfigError


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server-side TLS context with the stdlib's secure defaults (TLS >= 1.2).

    Raises:
        ConfigError: the files cannot be read, or the key does not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from exc
    return context


def tls_files_digest(cert: str, key: str) -> bytes:
    """What the certificate and key files hold now, to tell whether a reload changed them."""
    try:
        return hashlib.sha256(Path(cert).read_bytes() + b"\0" + Path(key).read_bytes()).digest()
    except OSError:
        return b""  # unreadable: server_tls_context has said why, or will


class ReloadableTls:
    """The context a listener is bound to, and the one its handshakes use."""

    def __init__(self, cert: str, key: str) -> None:
        self.digest = tls_files_digest(cert, key)
        self.current = server_tls_context(cert, key)
        self.listener = server_tls_context(cert, key)
        self.listener.sni_callback = self._pick

    def _pick(self, ssl_object: ssl.SSLObject, _name: str | None,
              _context: ssl.SSLContext) -> None:
        ssl_object.context = self.current
        return None

    def replace(self, context: ssl.SSLContext, digest: bytes) -> bool:
        """Serve new handshakes with ``context`` (already loaded and checked).

        Returns:
            whether the files it came from differ from the ones in use.
        """
        self.current = context
        changed, self.digest = digest != self.digest, digest
        return changed
