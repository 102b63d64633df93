"""Operator passwords: scrypt hashes, never plain text, compared in constant time.

Format (one string, safe in TOML)::

    scrypt$<log2 N>$<r>$<p>$<salt, base64>$<hash, base64>

``sockhub passwd`` prints one, like Ergo's ``genpasswd``. N = 2**15, r = 8,
p = 1 costs ~50 ms and 32 MiB per check: cheap for a login, dear for a
password-guessing attacker with a stolen config.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_LOG_N, _R, _P = 15, 8, 1
_DKLEN = 32


def hash_password(password: str, *, log_n: int = _LOG_N) -> str:
    salt = os.urandom(16)
    digest = _scrypt(password, salt, log_n, _R, _P)
    return "$".join(["scrypt", str(log_n), str(_R), str(_P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored``; False for a malformed hash too."""
    try:
        scheme, log_n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(
            password, base64.b64decode(salt, validate=True), int(log_n), int(r), int(p)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def is_hash(stored: str) -> bool:
    return stored.startswith("scrypt$") and stored.count("$") == 5


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    if not 1 <= log_n <= 20:
        raise ValueError("scrypt cost out of range")
    n = 1 << log_n
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=_DKLEN
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
