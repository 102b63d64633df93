"""SCRAM-SHA-256 (RFC 5802, RFC 7677), the server side, sans-I/O.

Theory of operation
-------------------

SCRAM lets a client prove it knows a password without sending it, and
lets the server check that proof without storing the password: the server
keeps, per account, a salt, an iteration count, ``StoredKey`` and
``ServerKey`` (RFC 5802 §3), made once by :func:`derive` at registration.

The exchange is two round trips (RFC 5802 §5)::

    C: n,,n=user,r=CNONCE                    client-first-message
    S: r=CNONCE SNONCE,s=SALT,i=4096         server-first-message
    C: c=biws,r=CNONCE SNONCE,p=PROOF        client-final-message
    S: v=SERVER-SIGNATURE                    server-final-message

:class:`ScramServer` is that exchange as a state machine: it is fed the
client's two messages (``bytes``) and answers with the server's, looking
the account up through a function it is given, so it knows no store. The
proof is compared in constant time. It never raises for what a client
sent: a bad message ends the exchange with :class:`ScramFailure` (and the
RFC's ``e=`` reason, for the caller's logs, never the password).

Channel binding is not offered (the gs2 flag must be ``n`` or ``y``);
SASL in IRC runs above TLS without it, as Ergo and Atheme do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

#: RFC 7677 §4: "The hash iteration-count ... SHOULD be at least 4096."
ITERATIONS = 4096
MECHANISM = "SCRAM-SHA-256"


@dataclass(frozen=True)
class ScramCredentials:
    """What the server keeps for one account (RFC 5802 §3): never the password."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


class ScramFailure(Exception):
    """The exchange failed; ``str()`` is the RFC 5802 §7 ``server-error-value``."""


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """``Hi(Normalize(password), salt, i)``, which is PBKDF2-HMAC-SHA-256 (RFC 5802 §2.2).

    SASLprep (RFC 4013) is left out: the password's UTF-8 bytes are used as
    given, which agrees with SASLprep for every ASCII password.
    """
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)


def derive(password: str, *, salt: bytes | None = None,
           iterations: int = ITERATIONS) -> ScramCredentials:
    """The stored credentials for ``password`` (a fresh 16-byte salt unless given)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = salted_password(password, salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramCredentials(salt, iterations, hashlib.sha256(client_key).digest(),
                            _hmac(salted, b"Server Key"))


def _attributes(text: str) -> dict[str, str]:
    """``a=1,b=2`` → {"a": "1", "b": "2"}; raises ScramFailure on a malformed part."""
    out: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or len(name) != 1 or name in out:
            raise ScramFailure("invalid-encoding")
        out[name] = value
    return out


def _unescape_name(name: str) -> str:
    """RFC 5802 §5.1: ``=2C`` is a comma and ``=3D`` an equals sign; any other ``=`` is bad."""
    out, i = [], 0
    while i < len(name):
        if name[i] == "=":
            code = name[i + 1 : i + 3]
            if code not in ("2C", "3D"):
                raise ScramFailure("invalid-username-encoding")
            out.append("," if code == "2C" else "=")
            i += 3
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


class ScramServer:
    """One SCRAM-SHA-256 exchange, seen from the server.

    Args:
        lookup: an account name → its credentials, or None if there is no
            such account. An unknown account still gets a plausible
            ``server-first-message`` (a salt derived from the name and a
            server secret), so the exchange does not tell which names exist;
            it fails at the proof.
        nonce: the server's part of the nonce; random unless a test gives one.
    """

    def __init__(self, lookup: Callable[[str], ScramCredentials | None], *,
                 nonce: str | None = None, secret: bytes = b"") -> None:
        self._lookup = lookup
        self._nonce = nonce if nonce is not None else secrets.token_urlsafe(18)
        self._secret = secret or secrets.token_bytes(16)
        self._credentials: ScramCredentials | None = None
        self._known = False
        self._client_first_bare = ""
        self._server_first = ""
        self._gs2_header = ""
        self._full_nonce = ""
        self.account: str | None = None  #: the name the client gave (after the first message)
        self.step = 0

    def first(self, message: bytes) -> bytes:
        """The client-first-message in, the server-first-message out (RFC 5802 §5.1).

        Raises:
            ScramFailure: malformed message, or channel binding asked for.
        """
        if self.step != 0:
            raise ScramFailure("other-error")
        self.step = 1
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise ScramFailure("invalid-encoding") from None
        flag, sep, rest = text.partition(",")
        authzid, sep2, bare = rest.partition(",")
        if not sep or not sep2:
            raise ScramFailure("invalid-encoding")
        if flag.startswith("p="):
            raise ScramFailure("server-does-support-channel-binding")
        if flag not in ("n", "y"):
            raise ScramFailure("invalid-encoding")
        if bare.startswith("m="):  # §5.1: reserved for extensions; none are known
            raise ScramFailure("extensions-not-supported")
        attrs = _attributes(bare)
        if "n" not in attrs or "r" not in attrs or not attrs["r"] or not attrs["n"]:
            raise ScramFailure("invalid-encoding")
        name = _unescape_name(attrs["n"])
        if authzid:
            authz = authzid[2:] if authzid.startswith("a=") else None
            if authz is None or _unescape_name(authz) != name:
                raise ScramFailure("invalid-username-encoding")
        self.account = name
        found = self._lookup(name)
        if found is None:  # a decoy, the same for the same name during this run
            salt = _hmac(self._secret, name.encode("utf-8"))[:16]
            found = ScramCredentials(salt, ITERATIONS, b"\0" * 32, b"\0" * 32)
        else:
            self._known = True
        self._credentials = found
        self._gs2_header = f"{flag},{authzid},"
        self._client_first_bare = bare
        self._full_nonce = attrs["r"] + self._nonce
        salt_text = base64.b64encode(found.salt).decode("ascii")
        self._server_first = f"r={self._full_nonce},s={salt_text},i={found.iterations}"
        return self._server_first.encode("ascii")

    def final(self, message: bytes) -> bytes:
        """The client-final-message in; the server-final-message out if the proof is right.

        Raises:
            ScramFailure: a malformed message, a changed nonce or binding, or
                a wrong proof (``invalid-proof``).
        """
        if self.step != 1 or self._credentials is None:
            raise ScramFailure("other-error")
        self.step = 2
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise ScramFailure("invalid-encoding") from None
        without_proof, sep, proof_part = text.rpartition(",p=")
        if not sep:
            raise ScramFailure("invalid-encoding")
        attrs = _attributes(without_proof)
        binding = base64.b64encode(self._gs2_header.encode("utf-8")).decode("ascii")
        if attrs.get("c") != binding:
            raise ScramFailure("channel-bindings-dont-match")
        if attrs.get("r") != self._full_nonce:
            raise ScramFailure("other-error")
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError:
            raise ScramFailure("invalid-encoding") from None
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}"
        creds = self._credentials
        signature = _hmac(creds.stored_key, auth_message.encode("utf-8"))
        # §3: ClientKey = ClientProof XOR ClientSignature; StoredKey = H(ClientKey).
        if len(proof) != len(signature):
            raise ScramFailure("invalid-proof")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        right = hmac.compare_digest(hashlib.sha256(client_key).digest(), creds.stored_key)
        if not (right and self._known):
            raise ScramFailure("invalid-proof")
        server_signature = _hmac(creds.server_key, auth_message.encode("utf-8"))
        return b"v=" + base64.b64encode(server_signature)
