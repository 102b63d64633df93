"""IRC queries: WHO WHOIS AWAY ISON USERHOST LUSERS MOTD VERSION TIME INFO HELP CHATHISTORY.

Replies follow the Modern IRC document's formats; ``WHO`` also answers
IRCv3 WHOX (``WHO <mask> %fields[,token]``), which clients such as pydle
use instead of one WHOIS per channel member.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sockhub._version import __version__
from sockhub.codec.irc import (
    ERR_HELPNOTFOUND,
    ERR_NOMOTD,
    ERR_NONICKNAMEGIVEN,
    ERR_NOSUCHNICK,
    ERR_NOSUCHSERVER,
    RPL_AWAY,
    RPL_ENDOFHELP,
    RPL_ENDOFINFO,
    RPL_ENDOFMOTD,
    RPL_ENDOFWHO,
    RPL_ENDOFWHOIS,
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
    IrcMessage,
    parse_time,
    split_utf8,
)
from sockhub.hub import Room, User
from sockhub.hub.names import fold, mask_match
from sockhub.protocols.chat_irc import COMMANDS, chunks, irc_host, isupport_tokens
from sockhub.services.irc_channels import ChannelCommands
from sockhub.services.irc_core import SOFTWARE
from sockhub.store.history import HISTORY_MAX, Bound

#: WHOX fields in the order their values are sent (IRCv3 WHOX).
WHOX_ORDER = "tcuihsnfdlaor"
#: Users a wildcard WHO lists at most.
WHO_MAX = 500
CHATHISTORY_SUBCOMMANDS = ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN")


class QueryCommands(ChannelCommands):
    """Questions about users, channels and the server."""

    __slots__ = ()

    # WHO ------------------------------------------------------------------------

    def _cmd_who(self, message: IrcMessage) -> None:
        viewer = self.user
        assert viewer is not None
        mask = message.params[0]
        whox: tuple[str, str] | None = None
        if len(message.params) > 1 and message.params[1].startswith("%"):
            fields, _, token = message.params[1][1:].partition(",")
            whox = (fields, token)
        hub = self.service.hub
        if mask.startswith("#"):
            room = hub.find_room(mask)
            if room is not None:
                for member in self.visible(room, viewer):
                    self._who_reply(member, room, whox)
        else:
            pattern = fold(mask)
            exact = hub.find_user(mask) if not any(c in mask for c in "*?") else None
            if exact is not None:
                candidates = [exact]
            elif mask in ("0", "*") or any(c in mask for c in "*?"):
                shared = {k for room in viewer.rooms.values() for k in room.members}
                candidates = [
                    u for u in hub.users.values()
                    if (not u.invisible or u.key in shared or u is viewer)
                    and (mask in ("0", "*") or mask_match(pattern, u.key))
                ][:WHO_MAX]
            else:
                candidates = []
            for user in candidates:
                self._who_reply(user, None, whox)
        self.reply(RPL_ENDOFWHO, mask, "End of WHO list")

    def _who_reply(self, user: User, room: Room | None, whox: tuple[str, str] | None) -> None:
        flags = ("G" if user.away else "H") + ("*" if user.is_oper else "")
        if room is not None:
            flags += self.member_prefix(room, user.key)
        channel = room.name if room is not None else "*"
        username = user.username or user.nick
        host = irc_host(user.address)
        if whox is None:
            self.reply(RPL_WHOREPLY, channel, username, host, self.server_name, user.nick,
                       flags, f"0 {user.realname or user.nick}")
            return
        fields, token = whox
        values = {
            "t": token or "0",
            "c": channel,
            "u": username,
            "i": host,
            "h": host,
            "s": self.server_name,
            "n": user.nick,
            "f": flags,
            "d": "0",
            "l": str(max(0, int(time.time() - user.active))),
            "a": "0",  # no accounts
            "o": "n/a",
            "r": user.realname or user.nick,
        }
        self.reply(RPL_WHOSPCRPL, *(values[f] for f in WHOX_ORDER if f in fields))

    # WHOIS ----------------------------------------------------------------------

    def _cmd_whois(self, message: IrcMessage) -> None:
        viewer = self.user
        assert viewer is not None
        params = message.params
        if not params or not params[-1]:
            self.reply(ERR_NONICKNAMEGIVEN, "No nickname given")
            return
        hub = self.service.hub
        if len(params) > 1:  # WHOIS <server or nick> <nick>: we are the only server
            server = params[0]
            if fold(server) != fold(self.server_name) and hub.find_user(server) is None:
                self.reply(ERR_NOSUCHSERVER, server, "No such server")
                return
        nick = params[-1].split(",")[0]
        user = hub.find_user(nick)
        if user is None:
            self.reply(ERR_NOSUCHNICK, nick, "No such nick/channel")
            self.reply(RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
            return
        self.reply(RPL_WHOISUSER, user.nick, user.username or user.nick, irc_host(user.address),
                   "*", user.realname or user.nick)
        channels = [
            self.member_prefix(room, user.key) + room.name
            for room in sorted(user.rooms.values(), key=lambda r: r.key)
            if not user.invisible or viewer.key in room.members or user is viewer
        ]
        for piece in split_utf8(" ".join(channels), 400) if channels else []:
            self.reply(RPL_WHOISCHANNELS, user.nick, piece.strip())
        self.reply(RPL_WHOISSERVER, user.nick, self.server_name, "sockhub chat hub")
        if user.is_oper:
            self.reply(RPL_WHOISOPERATOR, user.nick, "is an IRC operator")
        if user.away:
            self.reply(RPL_AWAY, user.nick, user.away)
        if user.secure:
            self.reply(RPL_WHOISSECURE, user.nick, "is using a secure connection")
        idle = max(0, int(time.time() - user.active))
        self.reply(RPL_WHOISIDLE, user.nick, str(idle), str(int(user.signon)),
                   "seconds idle, signon time")
        self.reply(RPL_ENDOFWHOIS, user.nick, "End of /WHOIS list")

    # AWAY / ISON / USERHOST -------------------------------------------------------

    def _cmd_away(self, message: IrcMessage) -> None:
        user = self.user
        assert user is not None
        text = message.params[0] if message.params else ""
        self.service.set_away(user, text or None)
        if user.away:
            self.reply(RPL_NOWAWAY, "You have been marked as being away")
        else:
            self.reply(RPL_UNAWAY, "You are no longer marked as being away")

    def _cmd_ison(self, message: IrcMessage) -> None:
        hub = self.service.hub
        online = []
        for param in message.params:
            for nick in param.split():
                user = hub.find_user(nick)
                if user is not None:
                    online.append(user.nick)
        self.reply(RPL_ISON, " ".join(online))

    def _cmd_userhost(self, message: IrcMessage) -> None:
        hub = self.service.hub
        replies = []
        for nick in message.params[:5]:
            user = hub.find_user(nick)
            if user is not None:
                oper = "*" if user.is_oper else ""
                away = "-" if user.away else "+"
                host = f"{user.username or user.nick}@{irc_host(user.address)}"
                replies.append(f"{user.nick}{oper}={away}{host}")
        self.reply(RPL_USERHOST, " ".join(replies))

    # Server queries ----------------------------------------------------------------

    def send_lusers(self) -> None:
        hub = self.service.hub
        users = len(hub.users)
        invisible = sum(1 for u in hub.users.values() if u.invisible)
        opers = sum(1 for u in hub.users.values() if u.is_oper)
        peak = self.service.peak_users = max(self.service.peak_users, users)
        self.reply(RPL_LUSERCLIENT,
                   f"There are {users - invisible} users and {invisible} invisible on 1 servers")
        self.reply(RPL_LUSEROP, str(opers), "operator(s) online")
        self.reply(RPL_LUSERCHANNELS, str(len(hub.rooms)), "channels formed")
        self.reply(RPL_LUSERME, f"I have {users} clients and 0 servers")
        self.reply(RPL_LOCALUSERS, str(users), str(peak),
                   f"Current local users {users}, max {peak}")
        self.reply(RPL_GLOBALUSERS, str(users), str(peak),
                   f"Current global users {users}, max {peak}")

    def _cmd_lusers(self, message: IrcMessage) -> None:
        self.send_lusers()

    def send_motd(self) -> None:
        motd = self.service.motd
        if motd is None:
            self.reply(ERR_NOMOTD, "MOTD File is missing")
            return
        self.reply(RPL_MOTDSTART, f"- {self.server_name} Message of the day - ")
        for line in motd or [""]:
            for piece in split_utf8(line, 400) if line else [""]:
                self.reply(RPL_MOTD, f"- {piece}")
        self.reply(RPL_ENDOFMOTD, "End of /MOTD command.")

    def _check_server(self, message: IrcMessage) -> bool:
        """A ``[<target>]`` parameter must name this server (or one of its users)."""
        if message.params and message.params[0]:
            target = message.params[0]
            if not mask_match(fold(target), fold(self.server_name)) and (
                self.service.hub.find_user(target) is None
            ):
                self.reply(ERR_NOSUCHSERVER, target, "No such server")
                return False
        return True

    def _cmd_motd(self, message: IrcMessage) -> None:
        if self._check_server(message):
            self.send_motd()

    def send_isupport(self) -> None:
        tokens = isupport_tokens(self.service.settings.line_name)
        for group in chunks(tokens, 13):
            self.reply(RPL_ISUPPORT, *group, "are supported by this server")

    def _cmd_version(self, message: IrcMessage) -> None:
        if self._check_server(message):
            self.reply(RPL_VERSION, f"{SOFTWARE}-{__version__}", self.server_name,
                       "chat hub with line, IRC and web doors")
            self.send_isupport()

    def _cmd_time(self, message: IrcMessage) -> None:
        if self._check_server(message):
            now = time.time()
            human = datetime.fromtimestamp(now, UTC).strftime("%A %B %d %Y -- %H:%M:%S +00:00")
            self.reply(RPL_TIME, self.server_name, str(int(now)), "0", human)

    def _cmd_info(self, message: IrcMessage) -> None:
        for text in (
            f"{SOFTWARE} {__version__}: socket services on asyncio",
            "A chat hub shared by a line door (nc, telnet) and this IRC door.",
            f"Up since {datetime.fromtimestamp(self.service.started, UTC):%Y-%m-%d %H:%M:%S} UTC",
        ):
            self.reply(RPL_INFO, text)
        self.reply(RPL_ENDOFINFO, "End of /INFO list")

    def _cmd_help(self, message: IrcMessage) -> None:
        subject = message.params[0].upper() if message.params and message.params[0] else "*"
        if subject != "*" and subject not in COMMANDS:
            self.reply(ERR_HELPNOTFOUND, subject, "No help available on this topic")
            return
        if subject == "*":
            self.reply(RPL_HELPSTART, "*", f"** {SOFTWARE} help **")
            self.reply(RPL_HELPTXT, "*", "")
            for group in chunks(sorted(COMMANDS), 10):
                self.reply(RPL_HELPTXT, "*", " ".join(group))
            self.reply(RPL_ENDOFHELP, "*", "See docs/irc.md for what each command does")
            return
        spec = COMMANDS[subject]
        self.reply(RPL_HELPSTART, subject, f"** The {subject} command **")
        self.reply(RPL_HELPTXT, subject, "")
        self.reply(RPL_ENDOFHELP, subject,
                   f"{subject} takes at least {spec.min_params} parameter(s)")

    # CHATHISTORY (IRCv3 draft/chathistory) -------------------------------------------

    def _cmd_chathistory(self, message: IrcMessage) -> None:
        user = self.user
        assert user is not None
        params = message.params
        sub = params[0].upper() if params else "*"
        if sub == "TARGETS" or (params and sub not in CHATHISTORY_SUBCOMMANDS):
            self._fail("CHATHISTORY", "INVALID_PARAMS", sub, "Unknown subcommand")
            return
        needed = 5 if sub == "BETWEEN" else 4
        if len(params) < needed:
            self._fail("CHATHISTORY", "NEED_MORE_PARAMS", sub, "Missing parameters")
            return
        target = params[1]
        try:
            limit = min(int(params[-1]), HISTORY_MAX)
        except ValueError:
            limit = 0
        refs = [_reference(p) for p in params[2:-1]]
        stars = [i for i, r in enumerate(refs) if r is not None and r[0] == "*"]
        if limit < 1 or None in refs or stars not in ([], [0] if sub == "LATEST" else []):
            self._fail("CHATHISTORY", "INVALID_PARAMS", sub, "Invalid reference or limit")
            return
        if not target.startswith("#"):
            # Private messages are not stored: an empty history, as the spec
            # asks for "if no content exists to return".
            self.send_history(target, [])
            return
        room = user.rooms.get(fold(target))
        if room is None:
            self._fail("CHATHISTORY", "INVALID_TARGET", sub, target,
                       "Messages could not be retrieved")
            return
        store = self.service.store
        first = refs[0]
        assert first is not None
        if sub == "LATEST":
            after = None if first[0] == "*" else first
            messages = store.page(room.name, limit, after=after, newest=True)
        elif sub == "BEFORE":
            messages = store.page(room.name, limit, before=first, newest=True)
        elif sub == "AFTER":
            messages = store.page(room.name, limit, after=first, newest=False)
        elif sub == "AROUND":  # the message referred to, and as many on each side
            older = store.page(room.name, limit // 2, before=first, newest=True)
            newer = store.page(room.name, limit - len(older), after=(first[0], first[1] - 1),
                               newest=False)
            messages = older + newer
        else:  # BETWEEN: "may be forwards or backwards in time"
            second = refs[1]
            assert second is not None
            low, high = sorted((first, second), key=lambda ref: self._position(room, ref))
            forward = self._position(room, first) <= self._position(room, second)
            messages = store.page(room.name, limit, after=low, before=high, newest=not forward)
        self.send_history(room.name, messages)

    def _position(self, room: Room, ref: Bound) -> float:
        """Where a reference falls in time, in milliseconds, to order two of them."""
        if ref[0] == "ms":
            return ref[1]
        found = self.service.store.find(room.name, int(ref[1]))
        return found.ts * 1000 if found is not None else float(ref[1])

    def _fail(self, command: str, code: str, *context: str) -> None:
        self._emit(self.line("FAIL", command, code, *context))


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

