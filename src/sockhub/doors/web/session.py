"""The chat page's login: accounts over HTTP, a session in an HttpOnly cookie.

The page posts an account and password as JSON to ``/login`` (or
``/register``); the answer sets a cookie holding a random session token
(256 bits, ``ChatApi.session_start``), which the browser sends back with
the WebSocket upgrade, so a reload finds the user logged in. The token is
never in a URL nor readable by the page's script (``HttpOnly``), is sent
to this site only (``SameSite=Strict``; ``Secure`` over TLS), and the
server keeps only its SHA-256. ``/logout`` revokes it.

Cross-site requests are refused twice over: a POST needs an ``Origin``
that is the page's own (or an allowed ``--web-origin``) and a JSON body,
which a form on another site cannot send without a CORS preflight this
server never answers; the WebSocket upgrade's Origin is checked by
websockets (``door.py``). Pure functions; the door does the I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sockhub.doors.web.http import Reply

#: The cookie's name. ``__Host-`` would pin it to a secure origin, which a plain
#: loopback page is not.
COOKIE = "sockhub_session"
#: The account requests: POST with a JSON body, except ``/session`` (GET).
ACCOUNT_PATHS = frozenset({"/login", "/register", "/logout", "/session"})
#: The largest body of an account request (then 413).
ACCOUNT_BODY_MAX = 4096
JSON = "application/json"
#: How long a login lasts (seconds): 30 days, then the page asks again.
SESSION_SECONDS = 30 * 86400


def json_reply(status: int, obj: dict[str, object], *,
               headers: Iterable[tuple[str, str]] = ()) -> Reply:
    return Reply(status, json.dumps(obj).encode(), JSON, list(headers))


def session_cookie(token: str, *, secure: bool, max_age: int) -> str:
    """The ``Set-Cookie`` value that gives the browser its session."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={token}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{flags}"


def clear_cookie(*, secure: bool) -> str:
    """The ``Set-Cookie`` value that makes the browser forget it."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict{flags}"


def cookie_token(headers: Iterable[str]) -> str | None:
    """The session token from ``Cookie`` headers, or None (RFC 6265 §5.4: ``a=b; c=d``)."""
    for header in headers:
        for part in header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and 0 < len(value) <= 128:
                return value
    return None


def origin_allowed(origin: str, *, host: str, scheme: str, origins: Iterable[str]) -> bool:
    """Whether a POST's ``Origin`` is the page's own (scheme and Host) or an allowed one.

    A missing Origin is refused: every browser sends one with a POST from
    a script, and this is only the page's endpoint.
    """
    if not origin or origin == "null":
        return False
    own = f"{scheme}://{host.lower()}" if host else None
    return origin.lower() == own or origin in set(origins)


def credentials(body: bytes) -> tuple[str, str] | str:
    """``{"account": ..., "password": ...}`` → (account, password), or what is wrong."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "the body must be one JSON object"
    if not isinstance(obj, dict):
        return "the body must be one JSON object"
    account, password = obj.get("account"), obj.get("password")
    if not isinstance(account, str) or not account.strip():
        return "account must be a non-empty string"
    if not isinstance(password, str) or not password:
        return "password must be a non-empty string"
    return account.strip(), password
