"""IRC queries: WHO WHOIS WHOWAS AWAY ISON USERHOST LUSERS MOTD VERSION TIME INFO HELP
CHATHISTORY, and the operator's KILL.

Replies follow the Modern IRC document's formats; ``WHO`` also answers
IRCv3 WHOX (``WHO <mask> %fields[,token]``), which clients such as pydle
use instead of one WHOIS per channel member.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sockhub._version import __version__
from sockhub.codec.irc import (
    ERR_HELPNOTFOUND,
    ERR_NOMOTD,
    ERR_NONICKNAMEGIVEN,
    ERR_NOPRIVILEGES,
    ERR_NOSUCHNICK,
    ERR_NOSUCHSERVER,
    ERR_WASNOSUCHNICK,
    RPL_AWAY,
    RPL_ENDOFHELP,
    RPL_ENDOFINFO,
    RPL_ENDOFLINKS,
    RPL_ENDOFMOTD,
    RPL_ENDOFWHO,
    RPL_ENDOFWHOIS,
    RPL_ENDOFWHOWAS,
    RPL_GLOBALUSERS,
    RPL_HELPSTART,
    RPL_HELPTXT,
    RPL_INFO,
    RPL_ISON,
    RPL_ISUPPORT,
    RPL_LOCALUSERS,
    RPL_LUSERCHANNELS,
    RPL_LUSERCLIENT,
    RPL_LUSERME,
    RPL_LUSEROP,
    RPL_MOTD,
    RPL_MOTDSTART,
    RPL_NOWAWAY,
    RPL_TIME,
    RPL_UNAWAY,
    RPL_USERHOST,
    RPL_VERSION,
    RPL_WHOISCHANNELS,
    RPL_WHOISIDLE,
    RPL_WHOISOPERATOR,
    RPL_WHOISSECURE,
    RPL_WHOISSERVER,
    RPL_WHOISUSER,
    RPL_WHOREPLY,
    RPL_WHOSPCRPL,
    RPL_WHOWASUSER,
    IrcMessage,
    parse_time,
    split_utf8,
)
from sockhub.doors.api import Bound
from sockhub.doors.irc.channels import member_prefix, send_history, visible
from sockhub.doors.irc.readmarker import ms_time
from sockhub.hub import HubError, Message, Room, User
from sockhub.hub.names import HISTORY_MAX, fold, mask_match
from sockhub.protocols.irc.vocabulary import SOFTWARE, chunks, irc_host, isupport_tokens

if TYPE_CHECKING:
    from sockhub.doors.irc.door import IrcDoor

#: WHOX fields in the order their values are sent (IRCv3 WHOX).
WHOX_ORDER = "tcuihsnfdlaor"
#: Users a wildcard WHO lists at most.
WHO_MAX = 500
CHATHISTORY_SUBCOMMANDS = ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN")


# WHO ------------------------------------------------------------------------

def cmd_who(door: IrcDoor, message: IrcMessage) -> None:
    viewer = door.user
    assert viewer is not None
    mask = message.params[0]
    whox: tuple[str, str] | None = None
    if len(message.params) > 1 and message.params[1].startswith("%"):
        fields, _, token = message.params[1][1:].partition(",")
        whox = (fields, token)
    chat = door.chat
    if mask.startswith("#"):
        room = chat.find_room(mask)
        if room is not None:
            for member in visible(door, room, viewer):
                _who_reply(door, member, room, whox)
    else:
        pattern = fold(mask)
        exact = chat.find_user(mask) if not any(c in mask for c in "*?") else None
        if exact is not None:
            candidates = [exact]
        elif mask in ("0", "*") or any(c in mask for c in "*?"):
            shared = {k for room in viewer.rooms.values() for k in room.members}
            candidates = [
                u for u in chat.users()
                if (not u.invisible or u.key in shared or u is viewer)
                and (mask in ("0", "*") or mask_match(pattern, u.key))
            ][:WHO_MAX]
        else:
            candidates = []
        for user in candidates:
            _who_reply(door, user, None, whox)
    door.reply(RPL_ENDOFWHO, mask, "End of WHO list")


def _who_reply(door: IrcDoor, user: User, room: Room | None, whox: tuple[str, str] | None) -> None:
    flags = (("G" if user.away else "H") + ("*" if user.is_oper else "")
             + ("B" if user.bot else ""))  # IRCv3 bot-mode: the bot flag
    if room is not None:
        flags += member_prefix(door, room, user.key)
    channel = room.name if room is not None else "*"
    username = user.username or user.nick
    host = irc_host(user.address)
    if whox is None:
        door.reply(RPL_WHOREPLY, channel, username, host, door.server_name, user.nick,
                   flags, f"0 {user.realname or user.nick}")
        return
    fields, token = whox
    values = {
        "t": token or "0",
        "c": channel,
        "u": username,
        "i": host,
        "h": host,
        "s": door.server_name,
        "n": user.nick,
        "f": flags,
        "d": "0",
        "l": str(max(0, int(door.clock.wall() - user.active))),
        "a": user.account or "0",  # WHOX: "0" when not logged in
        "o": "n/a",
        "r": user.realname or user.nick,
    }
    door.reply(RPL_WHOSPCRPL, *(values[f] for f in WHOX_ORDER if f in fields))


# WHOIS ----------------------------------------------------------------------

def cmd_whois(door: IrcDoor, message: IrcMessage) -> None:
    viewer = door.user
    assert viewer is not None
    params = message.params
    if not params or not params[-1]:
        door.reply(ERR_NONICKNAMEGIVEN, "No nickname given")
        return
    chat = door.chat
    if len(params) > 1:  # WHOIS <server or nick> <nick>: we are the only server
        server = params[0]
        if fold(server) != fold(door.server_name) and chat.find_user(server) is None:
            door.reply(ERR_NOSUCHSERVER, server, "No such server")
            return
    nick = params[-1].split(",")[0]
    user = chat.find_user(nick)
    if user is None:
        door.reply(ERR_NOSUCHNICK, nick, "No such nick/channel")
        door.reply(RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
        return
    door.reply(RPL_WHOISUSER, user.nick, user.username or user.nick, irc_host(user.address),
               "*", user.realname or user.nick)
    channels = [
        member_prefix(door, room, user.key) + room.name
        for room in sorted(user.rooms.values(), key=lambda r: r.key)
        if viewer.key in room.members or user is viewer
        or not (user.invisible or room.hidden)  # +s/+p rooms only to their members
    ]
    for piece in split_utf8(" ".join(channels), 400) if channels else []:
        door.reply(RPL_WHOISCHANNELS, user.nick, piece.strip())
    door.reply(RPL_WHOISSERVER, user.nick, door.server_name, "sockhub chat hub")
    if user.bot:  # 335 RPL_WHOISBOT (IRCv3 bot-mode)
        door.reply("335", user.nick, f"is a bot on {door.chat.settings.line_name}")
    if user.is_oper:
        door.reply(RPL_WHOISOPERATOR, user.nick, "is an IRC operator")
    if user.away:
        door.reply(RPL_AWAY, user.nick, user.away)
    if user.secure:
        door.reply(RPL_WHOISSECURE, user.nick, "is using a secure connection")
    if user.account:  # 330 RPL_WHOISACCOUNT (as Ergo, Solanum and InspIRCd send it)
        door.reply("330", user.nick, user.account, "is logged in as")
    idle = max(0, int(door.clock.wall() - user.active))
    door.reply(RPL_WHOISIDLE, user.nick, str(idle), str(int(user.signon)),
               "seconds idle, signon time")
    door.reply(RPL_ENDOFWHOIS, user.nick, "End of /WHOIS list")


# WHOWAS / KILL ------------------------------------------------------------------

def cmd_whowas(door: IrcDoor, message: IrcMessage) -> None:
    """WHOWAS nick[,nick] [count] (RFC 2812 §3.6.3; Modern IRC, "WHOWAS message").

    Each nick: ``314`` per earlier holder, the most recent first, each
    followed by ``312`` (when they left), or ``406``; then ``369``. A
    count that is not positive asks for all. Wildcards are not searched.
    """
    params = message.params
    if not params or not params[0]:
        # "a single reply, using either ERR_NONICKNAMEGIVEN or ERR_NEEDMOREPARAMS" (Modern)
        door.reply(ERR_NONICKNAMEGIVEN, "No nickname given")
        return
    try:
        count = int(params[1]) if len(params) > 1 else 0
    except ValueError:
        count = 0
    for nick in [n for n in params[0].split(",") if n][:MAX_WHOWAS_TARGETS]:
        found = door.chat.whowas(nick, count)
        if not found:
            door.reply(ERR_WASNOSUCHNICK, nick, "There was no such nickname")
        for entry in found:
            door.reply(RPL_WHOWASUSER, entry.nick, entry.username, irc_host(entry.address),
                       "*", entry.realname or entry.nick)
            left = datetime.fromtimestamp(entry.ts, UTC).strftime("%a %b %d %H:%M:%S %Y")
            door.reply(RPL_WHOISSERVER, entry.nick, door.server_name, left)
        door.reply(RPL_ENDOFWHOWAS, nick, "End of WHOWAS")


#: Nicks one WHOWAS looks up at most (ISUPPORT does not advertise WHOWAS targets).
MAX_WHOWAS_TARGETS = 4


def cmd_kill(door: IrcDoor, message: IrcMessage) -> None:
    """KILL nick [reason] (Modern IRC, "KILL message"): server operators only.

    Anyone else gets ``481 ERR_NOPRIVILEGES``; the victim's channels see it
    quit with ``Killed (<operator> (<reason>))``.
    """
    user = door.user
    assert user is not None
    target = message.params[0]
    reason = message.params[1] if len(message.params) > 1 else ""
    try:
        door.chat.kill(user, target, reason)
    except HubError as exc:
        if exc.code == "not_privileged":
            door.reply(ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")
        else:
            door.hub_error("KILL", exc)


def cmd_wallops(door: IrcDoor, message: IrcMessage) -> None:
    """WALLOPS :text (RFC 2812 §4.7; Modern IRC): from server operators to
    users with mode +w, echoed to the sender; anyone else gets 481."""
    user = door.user
    assert user is not None
    try:
        door.chat.wallops(user, message.params[0])
    except HubError as exc:
        if exc.code == "not_privileged":
            door.reply(ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")
        else:
            door.hub_error("WALLOPS", exc)


# AWAY / ISON / USERHOST -------------------------------------------------------

def cmd_away(door: IrcDoor, message: IrcMessage) -> None:
    user = door.user
    assert user is not None
    text = message.params[0] if message.params else ""
    door.chat.set_away(user, text or None)
    if user.away:
        door.reply(RPL_NOWAWAY, "You have been marked as being away")
    else:
        door.reply(RPL_UNAWAY, "You are no longer marked as being away")


def cmd_ison(door: IrcDoor, message: IrcMessage) -> None:
    chat = door.chat
    online = []
    for param in message.params:
        for nick in param.split():
            user = chat.find_user(nick)
            if user is not None:
                online.append(user.nick)
    door.reply(RPL_ISON, " ".join(online))


def cmd_userhost(door: IrcDoor, message: IrcMessage) -> None:
    chat = door.chat
    replies = []
    for nick in message.params[:5]:
        user = chat.find_user(nick)
        if user is not None:
            oper = "*" if user.is_oper else ""
            away = "-" if user.away else "+"
            host = f"{user.username or user.nick}@{irc_host(user.address)}"
            replies.append(f"{user.nick}{oper}={away}{host}")
    door.reply(RPL_USERHOST, " ".join(replies))

# Server queries ----------------------------------------------------------------

def send_lusers(door: IrcDoor) -> None:
    chat = door.chat
    users, invisible, opers = chat.user_counts()
    peak = door.chat.note_users()
    door.reply(RPL_LUSERCLIENT,
               f"There are {users - invisible} users and {invisible} invisible on 1 servers")
    door.reply(RPL_LUSEROP, str(opers), "operator(s) online")
    door.reply(RPL_LUSERCHANNELS, str(len(chat.rooms())), "channels formed")
    door.reply(RPL_LUSERME, f"I have {users} clients and 0 servers")
    door.reply(RPL_LOCALUSERS, str(users), str(peak),
               f"Current local users {users}, max {peak}")
    door.reply(RPL_GLOBALUSERS, str(users), str(peak),
               f"Current global users {users}, max {peak}")


def cmd_lusers(door: IrcDoor, message: IrcMessage) -> None:
    send_lusers(door)


def send_motd(door: IrcDoor) -> None:
    motd = door.chat.motd
    if motd is None:
        door.reply(ERR_NOMOTD, "MOTD File is missing")
        return
    door.reply(RPL_MOTDSTART, f"- {door.server_name} Message of the day - ")
    for line in motd or [""]:
        for piece in split_utf8(line, 400) if line else [""]:
            door.reply(RPL_MOTD, f"- {piece}")
    door.reply(RPL_ENDOFMOTD, "End of /MOTD command.")


def _check_server(door: IrcDoor, message: IrcMessage) -> bool:
    """A ``[<target>]`` parameter must name this server (or one of its users)."""
    if message.params and message.params[0]:
        target = message.params[0]
        if not mask_match(fold(target), fold(door.server_name)) and (
            door.chat.find_user(target) is None
        ):
            door.reply(ERR_NOSUCHSERVER, target, "No such server")
            return False
    return True


def cmd_motd(door: IrcDoor, message: IrcMessage) -> None:
    if _check_server(door, message):
        send_motd(door)


def send_isupport(door: IrcDoor) -> None:
    tokens = isupport_tokens(door.chat.settings.line_name)
    for group in chunks(tokens, 13):
        door.reply(RPL_ISUPPORT, *group, "are supported by this server")


def cmd_version(door: IrcDoor, message: IrcMessage) -> None:
    if _check_server(door, message):
        door.reply(RPL_VERSION, f"{SOFTWARE}-{__version__}", door.server_name,
                   "chat hub with line and IRC doors")
        send_isupport(door)


def cmd_time(door: IrcDoor, message: IrcMessage) -> None:
    if _check_server(door, message):
        now = door.clock.wall()
        human = datetime.fromtimestamp(now, UTC).strftime("%A %B %d %Y -- %H:%M:%S +00:00")
        door.reply(RPL_TIME, door.server_name, str(int(now)), "0", human)


def cmd_info(door: IrcDoor, message: IrcMessage) -> None:
    for text in (
        f"{SOFTWARE} {__version__}: socket services on asyncio",
        "A chat hub shared by a line door (nc, telnet) and this IRC door.",
        f"Up since {datetime.fromtimestamp(door.chat.started, UTC):%Y-%m-%d %H:%M:%S} UTC",
    ):
        door.reply(RPL_INFO, text)
    door.reply(RPL_ENDOFINFO, "End of /INFO list")


def cmd_help(door: IrcDoor, message: IrcMessage) -> None:
    subject = message.params[0].upper() if message.params and message.params[0] else "*"
    if subject != "*" and subject not in door.irc.commands:
        door.reply(ERR_HELPNOTFOUND, subject, "No help available on this topic")
        return
    if subject == "*":
        door.reply(RPL_HELPSTART, "*", f"** {SOFTWARE} help **")
        door.reply(RPL_HELPTXT, "*", "")
        for group in chunks(sorted(door.irc.commands), 10):
            door.reply(RPL_HELPTXT, "*", " ".join(group))
        door.reply(RPL_ENDOFHELP, "*", "See docs/irc.md for what each command does")
        return
    spec = door.irc.commands[subject]
    door.reply(RPL_HELPSTART, subject, f"** The {subject} command **")
    door.reply(RPL_HELPTXT, subject, "")
    door.reply(RPL_ENDOFHELP, subject,
               f"{subject} takes at least {spec.min_params} parameter(s)")

def cmd_links(door: IrcDoor, message: IrcMessage) -> None:
    """LINKS (RFC 2812 §3.4.5): one server and no links, so the end of the list alone."""
    door.reply(RPL_ENDOFLINKS, "*", "End of /LINKS list")


# CHATHISTORY (IRCv3 draft/chathistory) -------------------------------------------

def cmd_chathistory(door: IrcDoor, message: IrcMessage) -> None:
    user = door.user
    assert user is not None
    params = message.params
    sub = params[0].upper() if params else "*"
    if params and sub not in CHATHISTORY_SUBCOMMANDS and sub != "TARGETS":
        _fail(door, "CHATHISTORY", "INVALID_PARAMS", sub, "Unknown subcommand")
        return
    needed = 5 if sub == "BETWEEN" else 4
    if len(params) < needed:
        _fail(door, "CHATHISTORY", "NEED_MORE_PARAMS", sub, "Missing parameters")
        return
    if sub == "TARGETS":
        _targets(door, user, params)
        return
    target = params[1]
    try:
        limit = min(int(params[-1]), HISTORY_MAX)
    except ValueError:
        limit = 0
    refs = [_reference(p) for p in params[2:-1]]
    stars = [i for i, r in enumerate(refs) if r is not None and r[0] == "*"]
    if limit < 1 or None in refs or stars not in ([], [0] if sub == "LATEST" else []):
        _fail(door, "CHATHISTORY", "INVALID_PARAMS", sub, "Invalid reference or limit")
        return
    chat = door.chat
    pages: Pager
    if not target.startswith("#"):
        # A private conversation: the one kept for the user's account (none
        # without one: an empty batch, "if no content exists to return").
        def pages(limit: int, **bounds: Any) -> list[Message]:
            return chat.private_history(user, target, limit, **bounds)

        def find(message_id: int) -> Message | None:
            return chat.find_private(user, target, message_id)
        name = target
    else:
        room = user.rooms.get(fold(target))
        if room is None:
            _fail(door, "CHATHISTORY", "INVALID_TARGET", sub, target,
                  "Messages could not be retrieved")
            return
        name = room.name

        def pages(limit: int, **bounds: Any) -> list[Message]:
            return chat.history_page(name, limit, **bounds)

        def find(message_id: int) -> Message | None:
            return chat.find_message(name, message_id)
    first = refs[0]
    assert first is not None
    if sub == "LATEST":
        after = None if first[0] == "*" else first
        messages = pages(limit, after=after, newest=True)
    elif sub == "BEFORE":
        messages = pages(limit, before=first, newest=True)
    elif sub == "AFTER":
        messages = pages(limit, after=first, newest=False)
    elif sub == "AROUND":  # the message referred to, and as many on each side
        older = pages(limit // 2, before=first, newest=True)
        newer = pages(limit - len(older), after=(first[0], first[1] - 1), newest=False)
        messages = older + newer
    else:  # BETWEEN: "may be forwards or backwards in time"
        second = refs[1]
        assert second is not None
        low, high = sorted((first, second), key=lambda ref: _position(find, ref))
        forward = _position(find, first) <= _position(find, second)
        messages = pages(limit, after=low, before=high, newest=not forward)
    send_history(door, name if name.startswith("#") else target, messages)


#: A page of one conversation's history: ``pages(limit, after=, before=, newest=)``.
Pager = Callable[..., list[Message]]


def _position(find: Callable[[int], Message | None], ref: Bound) -> float:
    """Where a reference falls in time, in milliseconds, to order two of them."""
    if ref[0] == "ms":
        return ref[1]
    found = find(int(ref[1]))
    return found.ts * 1000 if found is not None else float(ref[1])


def _targets(door: IrcDoor, user: User, params: tuple[str, ...]) -> None:
    """CHATHISTORY TARGETS <timestamp> <timestamp> <limit>: the conversations whose
    newest message falls strictly between the two times, oldest first (the rooms
    the user is in, and the nicks their account exchanged private messages with)."""
    refs = [_reference(p) for p in params[1:3]]
    try:
        limit = min(int(params[3]), HISTORY_MAX)
    except ValueError:
        limit = 0
    if limit < 1 or any(r is None or r[0] != "ms" for r in refs):
        _fail(door, "CHATHISTORY", "INVALID_PARAMS", "TARGETS", "Invalid timestamps or limit")
        return
    low, high = sorted(r[1] for r in refs if r is not None)
    found = []
    for name, ts in door.chat.history_targets(user):
        ms = math.floor(ts * 1000)
        if low < ms < high:
            found.append((ms, name))
    found.sort()
    ref = door.next_batch() if "batch" in door.caps else None
    if ref is not None:
        door.emit(door.line("BATCH", "+" + ref, "draft/chathistory-targets"))
    for ms, name in found[:limit]:
        door.send_from(door.server_name, "CHATHISTORY", "TARGETS", name, ms_time(ms),
                       tags={"batch": ref} if ref is not None else None)
    if ref is not None:
        door.emit(door.line("BATCH", "-" + ref))


def _fail(door: IrcDoor, command: str, code: str, *context: str) -> None:
    door.emit(door.line("FAIL", command, code, *context))


def _reference(text: str) -> Bound | None:
    """``*``, ``msgid=N`` or ``timestamp=YYYY-MM-DDThh:mm:ss.sssZ`` → a store bound."""
    if text == "*":
        return ("*", 0)
    kind, _, value = text.partition("=")
    if kind == "msgid" and value.isdigit():
        return ("id", int(value))
    if kind == "timestamp":
        ts = parse_time(value)
        if ts is not None:
            return ("ms", round(ts * 1000))
    return None

