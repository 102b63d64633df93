"""SCRAM-SHA-256 server (protocols/scram.py) against RFC 7677 §3's test vector and bad input."""

from __future__ import annotations

import base64

import pytest

from scram_client import ScramClient
from sockhub.protocols.scram import ScramFailure, ScramServer, derive

# RFC 7677 §3: user "user", password "pencil".
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SERVER_FIRST = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

CREDS = derive("pencil", salt=SALT)


def server(nonce: str = SERVER_NONCE) -> ScramServer:
    return ScramServer(lambda name: CREDS if name == "user" else None, nonce=nonce)


def test_rfc7677_vector() -> None:
    s = server()
    assert s.first(CLIENT_FIRST) == SERVER_FIRST
    assert s.final(CLIENT_FINAL) == SERVER_FINAL
    assert s.account == "user"


def test_client_helper_round_trip_and_verifies_server() -> None:
    s, c = server(), ScramClient("user", "pencil")
    assert c.first() == CLIENT_FIRST
    final = c.final(s.first(c.first()))
    assert final == CLIENT_FINAL
    assert c.verify(s.final(final))


def test_wrong_password_is_invalid_proof() -> None:
    s, c = server(), ScramClient("user", "pencil2")
    with pytest.raises(ScramFailure, match="invalid-proof"):
        s.final(c.final(s.first(c.first())))


def test_unknown_account_looks_the_same_then_fails() -> None:
    s, c = server(), ScramClient("nobody", "pencil")
    first = s.first(c.first())
    assert b",s=" in first and first.endswith(b",i=4096")
    # The decoy salt is stable for a name, so asking twice does not tell.
    assert ScramServer(lambda n: None, nonce="x", secret=b"k").first(c.first()).split(b",")[1] \
        == ScramServer(lambda n: None, nonce="y", secret=b"k").first(c.first()).split(b",")[1]
    with pytest.raises(ScramFailure, match="invalid-proof"):
        s.final(c.final(first))


@pytest.mark.parametrize("message, reason", [
    (b"p=tls-unique,,n=user,r=abc", "server-does-support-channel-binding"),
    (b"x,,n=user,r=abc", "invalid-encoding"),
    (b"n,,n=user", "invalid-encoding"),
    (b"n,,m=ext,n=user,r=abc", "extensions-not-supported"),
    (b"n,,n=us=41r,r=abc", "invalid-username-encoding"),
    (b"n,a=other,n=user,r=abc", "invalid-username-encoding"),
    (b"\xff", "invalid-encoding"),
    (b"n,,n=user,r=", "invalid-encoding"),
])
def test_bad_first_messages(message: bytes, reason: str) -> None:
    with pytest.raises(ScramFailure, match=reason):
        server().first(message)


@pytest.mark.parametrize("final, reason", [
    (b"c=biws,r=WRONG,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "other-error"),
    (b"c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
     "channel-bindings-dont-match"),
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!", "invalid-encoding"),
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA", "invalid-proof"),
    (b"no proof here", "invalid-encoding"),
])
def test_bad_final_messages(final: bytes, reason: str) -> None:
    s = server()
    s.first(CLIENT_FIRST)
    with pytest.raises(ScramFailure, match=reason):
        s.final(final)


def test_out_of_order() -> None:
    with pytest.raises(ScramFailure):
        server().final(CLIENT_FINAL)
    s = server()
    s.first(CLIENT_FIRST)
    with pytest.raises(ScramFailure):
        s.first(CLIENT_FIRST)
