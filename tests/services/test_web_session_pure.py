"""The page's login helpers without sockets (doors/web/session.py): the cookie, the
Origin check, the credentials body."""

from __future__ import annotations

import pytest

from sockhub.doors.web.session import (
    clear_cookie,
    cookie_token,
    credentials,
    origin_allowed,
    session_cookie,
)


def test_the_cookie_says_httponly_strict_and_secure_only_over_tls():
    assert session_cookie("T", secure=False, max_age=60) == (
        "sockhub_session=T; Max-Age=60; Path=/; HttpOnly; SameSite=Strict")
    assert session_cookie("T", secure=True, max_age=60).endswith("; SameSite=Strict; Secure")
    assert clear_cookie(secure=False).startswith("sockhub_session=; Max-Age=0; ")


@pytest.mark.parametrize(("headers", "token"), [
    (["sockhub_session=abc"], "abc"),
    (["a=1; sockhub_session=abc; b=2"], "abc"),
    (["a=1", "sockhub_session=abc"], "abc"),
    (["xsockhub_session=abc"], None),
    (["sockhub_session="], None),
    (["sockhub_session=" + "x" * 129], None),
    ([], None),
])
def test_the_token_is_found_among_cookies(headers, token):
    assert cookie_token(headers) == token


@pytest.mark.parametrize(("origin", "allowed"), [
    ("http://127.0.0.1:8080", True),
    ("HTTP://127.0.0.1:8080", True),
    ("https://127.0.0.1:8080", False),  # another scheme is another origin
    ("http://127.0.0.1:8081", False),
    ("http://chat.example", True),  # --web-origin
    ("http://evil.example", False),
    ("null", False),
    ("", False),
])
def test_a_post_must_come_from_the_page_s_own_origin(origin, allowed):
    assert origin_allowed(origin, host="127.0.0.1:8080", scheme="http",
                          origins=("http://chat.example",)) is allowed


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"account": " alice ", "password": "pw"}', ("alice", "pw")),
    (b'{"account": "alice"}', "password must be a non-empty string"),
    (b'{"account": "", "password": "pw"}', "account must be a non-empty string"),
    (b'{"account": 1, "password": "pw"}', "account must be a non-empty string"),
    (b"[]", "the body must be one JSON object"),
    (b"\xff", "the body must be one JSON object"),
    (b"[" * 100000, "the body must be one JSON object"),
])
def test_credentials_are_checked_field_by_field(body, expected):
    assert credentials(body) == expected
