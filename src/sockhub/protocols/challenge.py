"""The challenge-response login shared by the exec and files protocols.

The server sends a fresh random nonce; the client proves it holds the
shared token with ``HMAC-SHA256(token, label + nonce)``. The token never
crosses the wire, and an answer is worth nothing on another connection,
whose nonce differs. Each protocol mixes in its own ``label``, so an answer
made for one service (or a later version) is never accepted by another
that shares the token. docs/exec-protocol.md (Login) is the specification.
"""

from __future__ import annotations

import hashlib
import hmac

NONCE_SIZE = 32
MAC_SIZE = 32  # SHA-256


def compute_answer(label: bytes, token: bytes, nonce: bytes) -> bytes:
    """The client's answer to a challenge: ``HMAC-SHA256(token, label + nonce)``."""
    return hmac.new(token, label + nonce, hashlib.sha256).digest()


def verify_answer(label: bytes, token: bytes, nonce: bytes, answer: bytes) -> bool:
    """Check an answer in constant time (``hmac.compare_digest``)."""
    return hmac.compare_digest(compute_answer(label, token, nonce), answer)
