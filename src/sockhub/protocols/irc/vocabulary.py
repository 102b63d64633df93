"""IRC's words for the hub's, sans-I/O: capabilities, ISUPPORT, modes, rendering.

Pure translation between the hub and IRC: channel mode letters to hub room
settings (:func:`parse_modes`, :func:`render_mode_changes`), hub events to
wire lines (:func:`render_event`), ``RPL_ISUPPORT`` tokens
(:func:`isupport_tokens`) and ``CAP`` lists (:func:`parse_cap_request`).
Rendering takes a *profile*, the few capability bits that change how a
shared event looks, so the door can render one event once per profile for
a whole channel. The connection's state machine is in ``protocol.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sockhub.codec.irc import MAX_BODY, format_tags, format_time, serialize, split_utf8
from sockhub.hub.events import (
    BanChanged,
    HubEvent,
    Joined,
    Kicked,
    Message,
    ModeChange,
    ModeChanged,
    NickChanged,
    Parted,
    Private,
    Quit,
    Signal,
    TopicChanged,
)
from sockhub.hub.names import (
    AWAY_MAX,
    BANS_PER_ROOM,
    CONTROLS,
    HISTORY_MAX,
    IRC_FORMATTING,
    NICK_MAX,
    PASSWORD_MAX,
    REALNAME_MAX,
    ROOM_MAX,
    ROOMS_PER_USER,
    TOPIC_MAX,
    USERNAME_MAX,
)

#: The server's software, as 002, 004, VERSION and INFO name it.
SOFTWARE = "sockhub"

#: Longest user name kept from USER (ISUPPORT ``USERLEN``); longer ones are cut,
#: as the Modern document requires once USERLEN is advertised.
USERLEN = USERNAME_MAX
_USERNAME_DROP = str.maketrans("", "", " !@:,*?" + CONTROLS)


def clean_username(name: str) -> str:
    """The user name from USER, without characters that break a hostmask or a
    terminal (control characters), cut to USERLEN."""
    return name.translate(_USERNAME_DROP)[:USERLEN]


#: Longest real name SETNAME takes (ISUPPORT ``NAMELEN``, as Ergo and InspIRCd name it).
NAMELEN = REALNAME_MAX
_REALNAME_BAD = frozenset(CONTROLS) - frozenset(IRC_FORMATTING)


def valid_realname(name: str) -> bool:
    """Whether SETNAME may take ``name``: IRCv3 setname, "Servers MUST check the
    realname for validity (taking length limits into consideration)": not empty,
    at most NAMELEN characters, no control character but IRC formatting."""
    return 0 < len(name) <= NAMELEN and not _REALNAME_BAD.intersection(name)


# Capabilities -------------------------------------------------------------------

#: Capabilities offered in ``CAP LS``, in the order listed.
CAPABILITIES: tuple[str, ...] = (
    "account-notify",
    "account-tag",
    "away-notify",
    "batch",
    "cap-notify",
    "draft/account-registration",
    "draft/chathistory",
    "draft/read-marker",
    "echo-message",
    "extended-join",
    "extended-monitor",
    "labeled-response",
    "message-tags",
    "multi-prefix",
    "sasl",
    "server-time",
    "setname",
    "userhost-in-names",
)


def parse_cap_request(text: str) -> list[tuple[str, bool]] | None:
    """``CAP REQ`` argument → [(capability, enable)], or None to NAK it whole.

    "The capability identifier set must be accepted as a whole, or
    rejected entirely" (capability negotiation); an unknown name, or an
    empty request, rejects it.
    """
    changes: list[tuple[str, bool]] = []
    for word in text.split():
        enable = not word.startswith("-")
        name = word.lstrip("-")
        if name not in CAPABILITIES:
            return None
        changes.append((name, enable))
    return changes or None


#: Capability values, shown to ``CAP LS 302`` clients only (capability negotiation):
#: the SASL mechanisms (sasl 3.2), and registration before connecting.
CAP_VALUES = {"sasl": "PLAIN,SCRAM-SHA-256", "draft/account-registration": "before-connect"}


def cap_ls_lines(version: int, budget: int = 400, *, values: Mapping[str, str] = CAP_VALUES,
                 extra: tuple[str, ...] = ()) -> list[str]:
    """The CAP LS list, in as many pieces as 302 clients need (one for older ones).

    ``values`` are capabilities' values (``sasl=PLAIN,...``), and ``extra``
    capabilities offered but never requested, with their values
    (``sts=port=6697``): both for 302 clients only, older ones see no values.
    """
    caps = [f"{c}={values[c]}" if version >= 302 and values.get(c) else c
            for c in CAPABILITIES]
    if version >= 302:
        caps += extra
    text = " ".join(caps)
    if version < 302 or len(text) <= budget:
        return [text]
    lines: list[str] = []
    current: list[str] = []
    for cap in caps:
        if current and len(" ".join([*current, cap])) > budget:
            lines.append(" ".join(current))
            current = []
        current.append(cap)
    lines.append(" ".join(current))
    return lines


# ISUPPORT ------------------------------------------------------------------------

#: Parameter modes one MODE command may carry (ISUPPORT ``MODES``); more are ignored.
MAX_MODES = 6
#: Targets of one PRIVMSG/NOTICE/TAGMSG/KICK (ISUPPORT ``TARGMAX``).
MAX_TARGETS = 4
#: Reasons of KICK are cut to this many characters (ISUPPORT ``KICKLEN``).
KICKLEN = TOPIC_MAX
#: Nicks one client may MONITOR (ISUPPORT ``MONITOR``; doors/irc/monitor.py).
MONITOR_MAX = 100


def isupport_tokens(network: str) -> list[str]:
    """RPL_ISUPPORT tokens: only limits the door really enforces."""
    targets = ",".join(
        f"{cmd}:{MAX_TARGETS}" for cmd in ("KICK", "NOTICE", "PRIVMSG", "TAGMSG")
    )
    return [
        f"AWAYLEN={AWAY_MAX}",
        f"BOT={BOT_MODE}",
        "CASEMAPPING=ascii",
        f"CHANLIMIT=#:{ROOMS_PER_USER}",
        "CHANMODES=b,k,l,Cimnpst",
        f"CHANNELLEN={ROOM_MAX}",
        "CHANTYPES=#",
        f"CHATHISTORY={HISTORY_MAX}",
        "ELIST=MNU",
        f"KEYLEN={PASSWORD_MAX}",
        f"KICKLEN={KICKLEN}",
        f"MAXLIST=b:{BANS_PER_ROOM}",
        f"MODES={MAX_MODES}",
        f"MONITOR={MONITOR_MAX}",
        "MSGREFTYPES=msgid,timestamp",
        f"NETWORK={network}",
        f"NAMELEN={NAMELEN}",
        f"NICKLEN={NICK_MAX}",
        "PREFIX=(ov)@+",
        f"TARGMAX=JOIN:,NAMES:,PART:,WHOIS:1,{targets}",
        f"TOPICLEN={TOPIC_MAX}",
        f"USERLEN={USERLEN}",
        "UTF8ONLY",
        "WHOX",
    ]


def chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# Modes ---------------------------------------------------------------------------

#: Channel mode letter → hub flag; type D (no parameter).
FLAG_MODES = {"C": "no_ctcp", "i": "invite_only", "m": "moderated", "n": "no_external",
              "p": "private", "s": "secret", "t": "topic_lock"}
#: Type B (a parameter both ways) and prefix modes.
PARAM_MODES = {"k": "password", "o": "operator", "v": "voice"}
#: Type C (a parameter when set only).
SET_PARAM_MODES = {"l": "limit"}
LETTERS = {
    flag: letter for letter, flag in {**FLAG_MODES, **PARAM_MODES, **SET_PARAM_MODES}.items()
}
#: User modes: bot, invisible, IRC operator, wallops (RPL_MYINFO lists them).
USER_MODES = "Biow"
#: The bot user mode (IRCv3 bot-mode; ISUPPORT ``BOT``).
BOT_MODE = "B"
CHANNEL_MODES = "Cbiklmnopstv"


@dataclass
class ParsedModes:
    """A channel MODE's changes, split the way the door handles them.

    Attributes:
        changes: hub changes, in order.
        bans: (add, mask) ban list changes.
        list_bans: the client asked for the ban list (``+b`` with no mask).
        unknown: letters the server does not know (``472 ERR_UNKNOWNMODE``).
        missing: letters that needed a parameter and got none (ignored, 461).
    """

    changes: list[ModeChange] = field(default_factory=list)
    bans: list[tuple[bool, str]] = field(default_factory=list)
    list_bans: bool = False
    unknown: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def parse_modes(modestring: str, args: Sequence[str]) -> ParsedModes:
    """Parse ``+mo-k nick key`` (Modern IRC, "MODE message").

    Type A (``b``) without an argument asks for the list; type B and C
    modes without a needed argument are ignored ("the server MUST ignore
    that mode"). At most :data:`MAX_MODES` modes with a parameter are
    taken; later ones are dropped, as ISUPPORT MODES promises.
    """
    parsed = ParsedModes()
    queue = list(args)
    on = True
    with_param = 0
    for letter in modestring:
        if letter in "+-":
            on = letter == "+"
            continue
        if letter == "b":
            if not queue:
                parsed.list_bans = True
                continue
            with_param += 1
            mask = queue.pop(0)
            if with_param <= MAX_MODES:
                parsed.bans.append((on, mask))
        elif letter in FLAG_MODES:
            parsed.changes.append(ModeChange(FLAG_MODES[letter], on))
        elif letter in PARAM_MODES or (letter in SET_PARAM_MODES and on):
            if not queue:
                if letter != "k" or on:  # "-k" needs no key: any is ignored anyway
                    parsed.missing.append(letter)
                    continue
                parsed.changes.append(ModeChange("password", False))
                continue
            with_param += 1
            arg = queue.pop(0)
            if with_param <= MAX_MODES:
                flag = PARAM_MODES.get(letter) or SET_PARAM_MODES[letter]
                parsed.changes.append(ModeChange(flag, on, None if flag == "password" and not on
                                                 else arg))
        elif letter in SET_PARAM_MODES:  # -l
            parsed.changes.append(ModeChange(SET_PARAM_MODES[letter], False))
        else:
            parsed.unknown.append(letter)
    return parsed


def render_mode_changes(changes: Iterable[ModeChange]) -> list[str]:
    """``["+mo-k", "nick", "*"]``: a MODE's mode string and arguments."""
    out = ""
    args: list[str] = []
    sign = ""
    for change in changes:
        want = "+" if change.on else "-"
        if want != sign:
            out += want
            sign = want
        out += LETTERS[change.flag]
        if change.flag == "password":
            args.append(change.arg if change.on and change.arg else "*")
        elif change.flag in ("operator", "voice") or (change.flag == "limit" and change.on):
            args.append(change.arg or "")
    return [out, *args]


# Rendering -------------------------------------------------------------------------

#: Profile bits: the capabilities that change how a shared event is written.
SERVER_TIME = 1
MESSAGE_TAGS = 2
EXTENDED_JOIN = 4
ACCOUNT_TAG = 8

ACTION_START = "\x01ACTION "


def irc_host(address: str) -> str:
    """A peer address usable as a host in IRC parameters (no leading ``:``)."""
    if not address:
        return "localhost"
    return "0" + address if address.startswith(":") else address


def irc_source(nick: str, username: str, address: str) -> str:
    """A full ``nick!user@host`` prefix (the nick stands in for no user name).

    Every message carries one, live or replayed (Modern IRC, "Source":
    clients rely on it to tell users apart; some libraries fail on a
    bare nick, and ii files such lines as the server's).
    """
    return f"{nick}!{username or nick}@{irc_host(address)}"


def event_tags(ts: float, profile: int, *, msgid: int | str | None = None,
               meta: Iterable[tuple[str, str]] = (), account: str | None = None,
               bot: bool = False) -> dict[str, str]:
    tags: dict[str, str] = {}
    if profile & SERVER_TIME:
        tags["time"] = format_time(ts)
    if account and profile & ACCOUNT_TAG:  # IRCv3 account-tag
        tags["account"] = account
    if profile & MESSAGE_TAGS:
        if msgid is not None and msgid != "":
            tags["msgid"] = str(msgid)
        tags.update(meta)
        if bot:  # IRCv3 bot-mode: the sender is +B
            tags["bot"] = ""
    return tags


def render_text(
    command: str, source: str, target: str, text: str, *, action: bool,
    tags: dict[str, str],
) -> bytes:
    """PRIVMSG/NOTICE lines for ``text``, split to fit 512 bytes per line."""
    overhead = len(f":{source} {command} {target} :".encode())
    if action:
        overhead += len(ACTION_START) + 1
    budget = max(MAX_BODY - overhead, 16)
    out = []
    for piece in split_utf8(text, budget):
        body = f"{ACTION_START}{piece}\x01" if action else piece
        out.append(serialize(command, (target, body), source=source, tags=tags))
    return b"".join(out)


#: Profile bits that give a room message tags (extended-join's does not).
_MESSAGE_TAG_BITS = SERVER_TIME | MESSAGE_TAGS | ACCOUNT_TAG


def render_message(event: Message, source: str, profile: int, *, account: str | None = None,
                   bot: bool = False) -> bytes:
    """A room message's line(s) for ``profile``: :func:`render_text`'s bytes, sooner.

    Rendered once per message and capability profile (the door shares the
    bytes), so this is per-message cost (issue 16). A message that fits one
    line (the usual case) is written in one go: ``[@tags ]:source PRIVMSG
    #room :text`` (Modern IRC, "Message Format"; message-tags for the tags),
    exactly what :func:`serialize` would write for it. Anything it would
    treat specially (a line to split or cut, CR/LF/NUL to blank out, a room
    name that is not a plain middle parameter) goes through :func:`render_text`.
    """
    command = "NOTICE" if event.notice else "PRIVMSG"
    tags = (event_tags(event.ts, profile, msgid=event.id, meta=event.meta, account=account,
                       bot=bot) if profile & _MESSAGE_TAG_BITS else None)
    room, text = event.room, event.text
    body = f"{ACTION_START}{text}\x01" if event.action else text
    line = f":{source} {command} {room} :{body}"
    if (source and room and room[0] != ":" and " " not in room
            and "\r" not in line and "\n" not in line and "\0" not in line):
        data = line.encode()
        if len(data) <= MAX_BODY:
            if not tags:
                return data + b"\r\n"
            head = format_tags(tags)
            if "\r" not in head and "\n" not in head and "\0" not in head:
                return head.encode() + b" " + data + b"\r\n"
    return render_text(command, source, room, text, action=event.action, tags=tags or {})


def render_event(event: HubEvent, source: str, profile: int, *, realname: str = "",
                 account: str | None = None, bot: bool = False) -> bytes:
    """The wire lines every viewer with ``profile`` gets for a shared event.

    ``source`` is the acting user's ``nick!user@host`` as it was when the
    event happened (the *old* nick for a nick change); ``account`` the
    account they are logged in to, if any.
    """
    if isinstance(event, Message):
        return render_message(event, source, profile, account=account, bot=bot)
    tags = event_tags(event.ts, profile, account=account)
    if isinstance(event, Joined):
        if profile & EXTENDED_JOIN:  # extended-join: the account, "*" for none
            return serialize("JOIN", (event.room, account or "*", realname or event.nick),
                             source=source, tags=tags)
        return serialize("JOIN", (event.room,), source=source, tags=tags)
    if isinstance(event, Parted):
        params = (event.room, event.reason) if event.reason else (event.room,)
        return serialize("PART", params, source=source, tags=tags)
    if isinstance(event, Kicked):
        return serialize("KICK", (event.room, event.nick, event.reason or event.by),
                         source=source, tags=tags)
    if isinstance(event, Quit):
        reason = quit_reason(event.reason, voluntary=event.voluntary)
        return serialize("QUIT", (reason,), source=source, tags=tags)
    if isinstance(event, NickChanged):
        return serialize("NICK", (event.new,), source=source, tags=tags)
    if isinstance(event, TopicChanged):
        return serialize("TOPIC", (event.room, event.topic), source=source, tags=tags)
    if isinstance(event, BanChanged):
        sign = "+b" if event.added else "-b"
        return serialize("MODE", (event.room, sign, event.mask), source=source, tags=tags)
    if isinstance(event, ModeChanged):
        return serialize("MODE", (event.room, *render_mode_changes(event.changes)),
                         source=source, tags=tags)
    raise TypeError(f"no shared rendering for {type(event).__name__}")


def sts_value(policy: tuple[int, int] | None, *, secure: bool) -> tuple[str, ...]:
    """The ``sts`` capability for CAP LS (IRCv3 Strict Transport Security), if any.

    "Servers MUST advertise the port key on insecure connections" and the
    duration key on secure ones; a plain client then reconnects to ``port``
    with TLS, where it reads the duration and keeps to TLS that long.
    """
    if policy is None:
        return ()
    port, duration = policy
    return (f"sts=duration={duration}",) if secure else (f"sts=port={port}",)


def quit_reason(reason: str, *, voluntary: bool = True) -> str:
    """A QUIT's reason as IRC shows it: ``Quit: why``, never a bare ``Quit: ``.

    A user's own reason is prefixed with ``Quit:`` so that no one can fake a
    server's (``Ping timeout``); an empty one reads ``Client Quit`` rather
    than a dangling ``Quit: ``.
    """
    if not voluntary:
        return reason or "Client Quit"
    return f"Quit: {reason}" if reason else "Client Quit"


def render_private(event: Private, source: str, profile: int, *,
                   account: str | None = None, bot: bool = False) -> bytes:
    tags = event_tags(event.ts, profile, msgid=event.msgid, meta=event.meta, account=account,
                      bot=bot)
    command = "NOTICE" if event.notice else "PRIVMSG"
    return render_text(command, source, event.target, event.text, action=event.action, tags=tags)


def render_signal(event: Signal, source: str, profile: int, *, bot: bool = False) -> bytes:
    tags = event_tags(event.ts, profile | MESSAGE_TAGS, msgid=event.msgid, meta=event.meta,
                      bot=bot)
    return serialize("TAGMSG", (event.room or event.target or "*",), source=source, tags=tags)


def parse_action(text: str) -> tuple[str, bool]:
    """CTCP ACTION (``\\x01ACTION waves\\x01``) → ("waves", True); other text as is."""
    if text.startswith(ACTION_START) and len(text) > len(ACTION_START):
        inner = text[len(ACTION_START) :]
        inner = inner[:-1] if inner.endswith("\x01") else inner
        if inner:
            return inner, True
    return text, False
