"""The chat service's own settings, each declared once and checked when made."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from sockhub.hub.names import HISTORY_MAX, fold
from sockhub.options import option, port_number
from sockhub.passwords import is_hash
from sockhub.services.settings import ServiceSettings


def _operators(name: str, operators: dict[str, str]) -> dict[str, str]:
    """Hashes only (a plain password in a config file is one leak away), by folded nick."""
    for nick, stored in operators.items():
        if not is_hash(stored):
            raise ValueError(f"operator {nick!r} needs a password hash from 'sockhub passwd', "
                             "not a plain password")
    return {fold(nick): stored for nick, stored in operators.items()}


def _server_name(name: str, value: str) -> str:
    """One word that cannot be mistaken for a nick!user@host prefix or a mask."""
    if not value or any(c in value for c in " :!@,*?\r\n\0"):
        raise ValueError(f"server name {value!r} must be one word without :!@,*?")
    return value


def _origins(name: str, value: tuple[str, ...]) -> tuple[str, ...]:
    """``scheme://host[:port]``, as a browser sends it in ``Origin`` (RFC 6454 §6.1)."""
    for origin in value:
        scheme, sep, rest = origin.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
            raise ValueError(f"web origin {origin!r} must be http(s)://HOST[:PORT], "
                             "with no path")
    return tuple(origin.lower() for origin in value)


def _accounts_mode(name: str, value: str) -> str:
    if value not in ("off", "open", "operators-only"):
        raise ValueError(f"{name} must be off, open or operators-only, not {value!r}")
    return value


def _on_off(name: str, value: str) -> str:
    if value not in ("on", "off"):
        raise ValueError(f"{name} must be on or off, not {value!r}")
    return value


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number of seconds above 0")
    return value


def _room(name: str, value: str) -> str:
    if not value.startswith("#") or len(value) < 2 or any(c in value for c in " ,\r\n\0"):
        raise ValueError(f"{name} {value!r} must be a room name like #support")
    return value


def _bus_url(name: str, value: str | None) -> str | None:
    """``redis://`` or ``rediss://``, with no password in it (``--bus-password-file``)."""
    if value is None:
        return None
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("redis", "rediss") or not rest:
        raise ValueError(f"bus {value!r} must be redis://HOST:PORT/DB or rediss://HOST:PORT/DB")
    if "@" in rest.split("/", 1)[0]:
        raise ValueError("the bus URL must not carry a password: put it in a file and give "
                         "--bus-password-file")
    return value


@dataclass(frozen=True, kw_only=True)
class ChatSettings(ServiceSettings):
    """The chat service's own settings (the ``options`` of its ServiceConfig)."""

    history: int = option(
        50, "most messages replayed to a user joining a room (IRC: those missed since it left)",
        minimum=0, maximum=HISTORY_MAX,
    )
    # Flood control is a token bucket per client: a paste of a few lines must
    # pass. The line door drops lines over it; the IRC door delays them, as
    # ircd does.
    flood_rate: float | None = option(
        5.0, "lines a second one client may send on average", off=True
    )
    flood_burst: int = option(
        20, "lines one client may send at once before flood control", minimum=1
    )
    # Auditorium-style large rooms (IRC's +u): N arrivals in a room cost O(N)
    # deliveries, not O(N²).
    quiet_above: int | None = option(
        1000, "members above which a room is quiet: joins, parts and quits in it are told "
        "only to the member and the room's operators, and a newcomer is shown the operators, "
        "not everyone", minimum=1, off=True, metavar="N",
    )
    operators: dict[str, str] = option(
        factory=dict,
        help="operator accounts, each a name and a password hash from 'sockhub passwd'",
        flag="--oper", metavar="NAME=HASH", check=_operators,
    )
    protected_rooms: tuple[str, ...] = option(
        ("#lobby",), "a room whose topic only operators set",
        flag="--protected-room", metavar="#ROOM",
    )
    server_name: str | None = option(
        None, "the name the server gives itself", metavar="NAME", check=_server_name,
        default_text="'sockhub' at the line door, the host name in IRC prefixes and numerics",
    )
    # A silent or trickling client must not hold a slot: every door counts
    # from connect to a chosen nick (the line door's first line; IRC's NICK,
    # USER and CAP END), then tells the client and closes.
    registration_timeout: float | None = option(
        60.0, "time a client has, at every chat door, to choose a nick before it is told "
        "and closed", unit="seconds", off=True, check=_seconds,
    )
    tls_port: int | None = option(
        None, "the line door's TLS port, beside its plain --port (needs --tls-cert)",
        metavar="N", check=port_number,
        default_text="9998 with --tls-cert (a free one with --port 0)",
    )
    # Accounts (docs/accounts.md). Guessing is slowed per address, never per
    # account, so no one can lock an owner out (services/accounts.py).
    accounts: str = option(
        "open", "who may register an account: off, open or operators-only",
        metavar="MODE", check=_accounts_mode,
    )
    accounts_per_hour: int = option(
        3, "accounts one address may register in an hour (operators are not counted)",
        unit="count", minimum=1,
    )
    accounts_after_connect: bool = option(
        False, "IRC clients may REGISTER an account only once connected, not before "
        "(draft/account-registration's before-connect)",
    )
    account_password_min: int = option(
        8, "the fewest characters an account password may have", unit="count", minimum=1,
        maximum=1000,
    )
    nick_grace: float | None = option(
        30.0, "time someone using another's registered nick has to identify before being "
        "renamed to a guest nick", unit="seconds", off=True, check=_seconds,
    )
    multiclient: str = option(
        "on", "on: a user logged in to an account may hold its nick from several connections "
        "at once, as one presence (docs/accounts.md); off: one connection per nick",
        metavar="on|off", check=_on_off,
    )
    account_delay: float = option(
        0.5, "time before a wrong account password is told, doubled for each earlier "
        "failure from that address", unit="seconds", check=_seconds, cli=False,
    )
    account_delay_max: float = option(
        5.0, "the longest that delay grows", unit="seconds", check=_seconds, cli=False,
    )
    account_window: float = option(
        300.0, "time without a failure after which an address starts over", unit="seconds",
        check=_seconds, cli=False,
    )
    account_max_pending: int = option(
        64, "wrong account passwords not yet told, in all", unit="count", minimum=1,
        cli=False,
    )
    account_max_pending_per_ip: int = option(
        4, "identify attempts in progress (wrong ones until told) from one address",
        unit="count", minimum=1, cli=False,
    )
    irc_port: int | None = option(
        None, "open the IRC door on this port; 0 picks a free one", metavar="N",
        check=port_number, default_text="closed",
    )
    irc_tls_port: int | None = option(
        None, "the IRC door's TLS port, beside its plain --irc-port (needs --tls-cert; "
        "alone, a TLS-only IRC door)", metavar="N", check=port_number,
        default_text="6697 with --tls-cert and --irc-port (a free one with --irc-port 0)",
    )
    irc_sts_duration: int | None = option(
        None, "advertise IRCv3 STS: IRC clients on the plain port are sent to the TLS port "
        "and keep to it this long (0 withdraws the policy); needs a fixed --irc-tls-port",
        unit="seconds", minimum=0, off=True, default_text="off",
    )
    motd_file: Path | None = option(
        None, "text sent to IRC users as the message of the day", metavar="FILE"
    )
    irc_password: str | None = option(
        None, "connection password IRC clients must send (PASS); plain text or a hash "
        "from 'sockhub passwd'", metavar="PASSWORD", secret=True,
    )
    irc_ping_interval: float = option(
        120.0, "quiet time after which the IRC door sends PING", unit="seconds",
        check=_seconds, cli=False,
    )
    irc_ping_timeout: float = option(
        60.0, "time allowed for an answer to that PING before the client is dropped",
        unit="seconds", check=_seconds, cli=False,
    )

    web_port: int | None = option(
        None, "open the web door (HTTP, the chat page, WebSocket at /ws) on this port; "
        "0 picks a free one", metavar="N", check=port_number, default_text="closed",
    )
    web_tls_port: int | None = option(
        None, "the web door's HTTPS and WSS port, beside its plain --web-port (needs "
        "--tls-cert; alone, an HTTPS-only web door)", metavar="N", check=port_number,
        default_text="8443 with --tls-cert and --web-port (a free one with --web-port 0)",
    )
    # The hotline (docs/hotline.md): a door of this hub, or `sockhub serve ivr`.
    ivr_port: int | None = option(
        None, "open the hotline door (menu callers, handed to #support) on this port; "
        "0 picks a free one", metavar="N", check=port_number,
        default_text="closed; 'sockhub serve ivr' listens on --port",
    )
    line_port: int | None = option(
        None, "the operators' line door of 'sockhub serve ivr'", metavar="N", check=port_number,
        default_text="9999, a free port with --port 0",
    )
    menu: Path | None = option(
        None, "the hotline's menu file (TOML)", metavar="FILE",
        default_text="the built-in 10086 menu",
    )
    ivr_room: str = option("#support", "the room hotline callers are handed to",
                           metavar="#ROOM", check=_room)
    ivr_timeout: float = option(10.0, "time a caller has to press a key before the prompt "
                                "is repeated", unit="seconds", check=_seconds)
    ivr_digit_timeout: float = option(3.0, "pause that ends a multi-digit entry",
                                      unit="seconds", check=_seconds)
    ivr_max_timeouts: int = option(3, "prompts without a key before the hotline hangs up",
                                   minimum=1)
    ivr_max_failures: int = option(3, "wrong keys in a row before the hotline hangs up",
                                   minimum=1)

    web_origin: tuple[str, ...] = option(
        (), "another origin whose pages may open the web door's WebSocket (the page's "
        "own origin always may)", flag="--web-origin", metavar="ORIGIN", check=_origins,
    )
    web_header_timeout: float = option(
        10.0, "time a web client has to send a request's headers before it gets 408",
        unit="seconds", check=_seconds, cli=False,
    )
    web_keepalive_timeout: float = option(
        30.0, "idle time between two HTTP requests on one connection before it is closed",
        unit="seconds", check=_seconds, cli=False,
    )
    web_ping_interval: float = option(
        30.0, "quiet time after which the web door pings a WebSocket client",
        unit="seconds", check=_seconds, cli=False,
    )
    web_ping_timeout: float = option(
        20.0, "time allowed for the pong before the WebSocket is closed (another as long "
        "while the client's output is paused over write_high_water or drained a pause since "
        "the ping; output merely queued earns none: docs/web-protocol.md)",
        unit="seconds", check=_seconds, cli=False,
    )
    web_close_timeout: float = option(
        2.0, "time a WebSocket client has to answer the server's close frame before the "
        "connection is closed anyway", unit="seconds", check=_seconds, cli=False,
    )

    # Scale-out (docs/scale-out.md): several processes or hosts share rooms
    # through Redis. The password comes from a file, never the command line.
    bus: str | None = option(
        None, "share rooms with other sockhub processes through Redis: "
        "redis://HOST:PORT/DB or rediss:// (TLS)", metavar="URL", check=_bus_url,
        default_text="in-process",
    )
    bus_password_file: Path | None = option(
        None, "file holding the Redis password (its first line)", metavar="FILE",
    )
    bus_ca_file: Path | None = option(
        None, "CA certificate(s), PEM, that a rediss:// bus's certificate must be signed by",
        metavar="FILE", default_text="the system's CA store",
    )
    bus_prefix: str = option(
        "sockhub", "prefix of the cluster's Redis keys (one cluster per prefix)",
        metavar="NAME", cli=False,
    )
    bus_stream_max: int = option(
        100_000, "events the cluster's Redis stream keeps (MAXLEN ~): how long a node may "
        "be cut off and still catch up", minimum=100, cli=False,
    )
    bus_node_ttl: float = option(
        10.0, "time after a node's last heartbeat before its users are announced as gone",
        unit="seconds", check=_seconds,
    )

    @property
    def line_name(self) -> str:
        return self.server_name or "sockhub"

    @property
    def irc_name(self) -> str:
        return self.server_name or socket.gethostname() or "sockhub"
