"""IRC channel commands: JOIN PART TOPIC NAMES LIST INVITE KICK MODE PRIVMSG NOTICE TAGMSG.

Each handler translates one IRC command (RFC 2812 §3.2-3.3 as the Modern
IRC document describes current practice) into calls of the chat service,
and the hub's refusals into the numerics the specifications name. The
command table has already checked registration and the least number of
parameters.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sockhub.codec.irc import (
    ERR_BANLISTFULL,
    ERR_CANNOTSENDTOCHAN,
    ERR_CHANOPRIVSNEEDED,
    ERR_INVALIDMODEPARAM,
    ERR_NEEDMOREPARAMS,
    ERR_NORECIPIENT,
    ERR_NOSUCHCHANNEL,
    ERR_NOSUCHNICK,
    ERR_NOTEXTTOSEND,
    ERR_NOTONCHANNEL,
    ERR_TOOMANYTARGETS,
    ERR_UMODEUNKNOWNFLAG,
    ERR_UNKNOWNMODE,
    ERR_USERSDONTMATCH,
    MAX_BODY,
    RPL_AWAY,
    RPL_BANLIST,
    RPL_CHANNELMODEIS,
    RPL_CREATIONTIME,
    RPL_ENDOFBANLIST,
    RPL_ENDOFNAMES,
    RPL_INVITING,
    RPL_LIST,
    RPL_LISTEND,
    RPL_LISTSTART,
    RPL_NAMREPLY,
    RPL_NOTOPIC,
    RPL_TOPIC,
    RPL_TOPICTIME,
    RPL_UMODEIS,
    IrcMessage,
)
from sockhub.hub import HubError, Room, User
from sockhub.hub.events import Message
from sockhub.hub.names import BANS_PER_ROOM, TOPIC_MAX, fold
from sockhub.protocols.chat_irc import (
    KICKLEN,
    MAX_TARGETS,
    SERVER_TIME,
    event_tags,
    irc_host,
    parse_action,
    parse_modes,
    render_text,
)
from sockhub.services.irc_core import IrcDoorCore

#: Channels a NAMES without parameters lists at most.
NAMES_MAX = 100


class ChannelCommands(IrcDoorCore):
    """Channel membership, channel settings and messages."""

    __slots__ = ()

    # JOIN / PART -----------------------------------------------------------

    def _cmd_join(self, message: IrcMessage) -> None:
        user = self.user
        assert user is not None
        if message.params[0] == "0":  # "leave all channels" (Modern IRC, JOIN)
            for room in list(user.rooms.values()):
                self.service.part(user, room.name, "Left all channels")
            return
        names = message.params[0].split(",")
        keys = message.params[1].split(",") if len(message.params) > 1 else []
        for i, name in enumerate(names):
            if not name or fold(name) in user.rooms:
                continue  # already there: RFC 2812 asks for no reply
            key = keys[i] if i < len(keys) and keys[i] else None
            try:
                self.service.join(user, name, password=key)
            except HubError as exc:
                self.hub_error("JOIN", exc, name)
                continue
            room = user.rooms.get(fold(name))
            if room is None:  # joined and removed at once (a ban raced it)
                continue
            # Modern IRC: the JOIN (delivered by the hub), then the topic,
            # then the names, "in this order".
            self.send_topic(room, explicit=False)
            self.send_names(room)
            self.replay_history(room)

    def _cmd_part(self, message: IrcMessage) -> None:
        user = self.user
        assert user is not None
        reason = message.params[1] if len(message.params) > 1 else ""
        for name in message.params[0].split(","):
            if not name:
                continue
            try:
                self.service.part(user, name, reason)
            except HubError as exc:
                self.hub_error("PART", exc, name)

    # TOPIC / NAMES / LIST ---------------------------------------------------

    def _cmd_topic(self, message: IrcMessage) -> None:
        user = self.user
        assert user is not None
        name = message.params[0]
        if len(message.params) == 1:
            room = self.service.hub.find_room(name)
            if room is None:
                self.reply(ERR_NOSUCHCHANNEL, name, "No such channel")
            elif user.key not in room.members:
                self.reply(ERR_NOTONCHANNEL, room.name, "You're not on that channel")
            else:
                self.send_topic(room, explicit=True)
            return
        try:  # TOPICLEN: longer topics are cut, as other servers do
            self.service.set_topic(user, name, message.params[1][:TOPIC_MAX])
        except HubError as exc:
            self.hub_error("TOPIC", exc, name)

    def send_topic(self, room: Room, *, explicit: bool) -> None:
        if room.topic:
            self.reply(RPL_TOPIC, room.name, room.topic)
            self.reply(RPL_TOPICTIME, room.name, room.topic_by, str(int(room.topic_ts)))
        elif explicit:  # not on JOIN (irctest: "shouldn't send RPL_NOTOPIC")
            self.reply(RPL_NOTOPIC, room.name, "No topic is set")

    def member_prefix(self, room: Room, key: str) -> str:
        """``@``/``+`` (both with multi-prefix) for a member of ``room``."""
        op, voice = key in room.operators, key in room.voiced
        if "multi-prefix" in self.caps:
            return ("@" if op else "") + ("+" if voice else "")
        return "@" if op else "+" if voice else ""

    def visible(self, room: Room, viewer: User) -> list[User]:
        """Members ``viewer`` may see: invisible users only from inside the room."""
        if viewer.key in room.members:
            return list(room.members.values())
        return [u for u in room.members.values() if not u.invisible]

    def send_names(self, room: Room, *, end: str | None = None) -> None:
        """RPL_NAMREPLY lines, then RPL_ENDOFNAMES for ``end`` (the room) unless ""."""
        viewer = self.user
        assert viewer is not None
        long_form = "userhost-in-names" in self.caps
        entries = []
        for member in self.visible(room, viewer):
            name = (
                f"{member.nick}!{member.username or member.nick}@{irc_host(member.address)}"
                if long_form
                else member.nick
            )
            entries.append(self.member_prefix(room, member.key) + name)
        head = f":{self.server_name} {RPL_NAMREPLY} {self.nick} = {room.name} :"
        budget = MAX_BODY - len(head.encode())
        line: list[str] = []
        size = 0
        for entry in entries:
            n = len(entry.encode()) + 1
            if line and size + n > budget:
                self.reply(RPL_NAMREPLY, "=", room.name, " ".join(line))
                line, size = [], 0
            line.append(entry)
            size += n
        if line:
            self.reply(RPL_NAMREPLY, "=", room.name, " ".join(line))
        if end != "":
            self.reply(RPL_ENDOFNAMES, end or room.name, "End of /NAMES list")

    def _cmd_names(self, message: IrcMessage) -> None:
        hub = self.service.hub
        if not message.params or not message.params[0]:
            # RFC 2812 §3.2.5: every channel (none is secret here), one end.
            for room in sorted(hub.rooms.values(), key=lambda r: r.key)[:NAMES_MAX]:
                self.send_names(room, end="")
            self.reply(RPL_ENDOFNAMES, "*", "End of /NAMES list")
            return
        names = message.params[0].split(",")
        if len(names) == 1:
            room = hub.find_room(names[0])
            if room is None:  # "one RPL_ENDOFNAMES numeric containing the given channel name"
                self.reply(RPL_ENDOFNAMES, names[0], "End of /NAMES list")
            else:
                self.send_names(room)
            return
        for name in names:  # several channels: their names, then one end for them all
            room = hub.find_room(name)
            if room is not None:
                self.send_names(room, end="")
        self.reply(RPL_ENDOFNAMES, message.params[0], "End of /NAMES list")

    def _cmd_list(self, message: IrcMessage) -> None:
        hub = self.service.hub
        wanted = message.params[0] if message.params else ""
        if wanted and wanted[0] in "<>":  # an ELIST condition: not advertised, so ignored
            wanted = ""
        rooms = (
            [r for r in (hub.find_room(n) for n in wanted.split(",")) if r is not None]
            if wanted
            else sorted(hub.rooms.values(), key=lambda r: r.key)
        )
        self.reply(RPL_LISTSTART, "Channel", "Users  Name")
        for room in rooms:
            self.reply(RPL_LIST, room.name, str(len(room.members)), room.topic)
        self.reply(RPL_LISTEND, "End of /LIST")

    # INVITE / KICK ----------------------------------------------------------

    def _cmd_invite(self, message: IrcMessage) -> None:
        user = self.user
        assert user is not None
        nick, name = message.params[0], message.params[1]
        try:
            event = self.service.invite(user, nick, name)
        except HubError as exc:
            self.hub_error("INVITE", exc, name)
            return
        self.reply(RPL_INVITING, event.nick, event.room)
        target = self.service.hub.find_user(event.nick)
        if target is not None and target.away:
            self.reply(RPL_AWAY, target.nick, target.away)

    def _cmd_kick(self, message: IrcMessage) -> None:
        user = self.user
        assert user is not None
        channels = message.params[0].split(",")
        nicks = [n for n in message.params[1].split(",") if n]
        reason = message.params[2][:KICKLEN] if len(message.params) > 2 else ""
        if len(channels) == 1:
            pairs = [(channels[0], nick) for nick in nicks[:MAX_TARGETS]]
        elif len(channels) == len(nicks):
            pairs = list(zip(channels, nicks, strict=True))[:MAX_TARGETS]
        else:  # RFC 2812 §3.2.8: one channel, or as many channels as users
            self.reply(ERR_NEEDMOREPARAMS, "KICK", "Not enough parameters")
            return
        for name, nick in pairs:
            try:
                self.service.kick(user, name, nick, reason)
            except HubError as exc:
                self.hub_error("KICK", exc, name)

    # MODE --------------------------------------------------------------------

    def _cmd_mode(self, message: IrcMessage) -> None:
        if message.params[0].startswith("#"):
            self._channel_mode(message)
        else:
            self._user_mode(message)

    def _channel_mode(self, message: IrcMessage) -> None:
        user = self.user
        assert user is not None
        hub = self.service.hub
        room = hub.find_room(message.params[0])
        if room is None:
            self.reply(ERR_NOSUCHCHANNEL, message.params[0], "No such channel")
            return
        if len(message.params) == 1:
            self.reply(RPL_CHANNELMODEIS, room.name, *self.room_modes(room, user))
            self.reply(RPL_CREATIONTIME, room.name, str(int(room.created)))
            return
        parsed = parse_modes(message.params[1], message.params[2:])
        for letter in parsed.unknown:
            self.reply(ERR_UNKNOWNMODE, letter, "is unknown mode char to me")
        if parsed.list_bans:
            for mask in hub.bans.get(room.key, []):
                self.reply(RPL_BANLIST, room.name, mask)
            self.reply(RPL_ENDOFBANLIST, room.name, "End of channel ban list")
        if (parsed.changes or parsed.bans) and not hub.may_moderate(user, room):
            if user.key in room.members:
                self.reply(ERR_CHANOPRIVSNEEDED, room.name, "You're not channel operator")
            else:
                self.reply(ERR_NOTONCHANNEL, room.name, "You're not on that channel")
            return
        if parsed.missing:
            self.reply(ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
        for add, mask in parsed.bans:
            if add and len(hub.bans.get(room.key, [])) >= BANS_PER_ROOM:
                self.reply(ERR_BANLISTFULL, room.name, "b", "Channel ban list is full")
                continue
            try:  # IRC bans keep members in; they only stop joins and speech
                self.service.ban(user, room.name, mask, add=add, kick=False)
            except HubError as exc:
                if exc.code != "invalid_text":  # already (or not) banned: nothing to change
                    self.hub_error("MODE", exc, room.name)
        if parsed.changes:
            for exc in self.service.set_modes(user, room.name, parsed.changes):
                if exc.code == "invalid_password":
                    self.reply(ERR_INVALIDMODEPARAM, room.name, "k", "*", str(exc))
                elif exc.code == "invalid_limit":
                    arg = next((c.arg for c in parsed.changes if c.flag == "limit"), "*")
                    self.reply(ERR_INVALIDMODEPARAM, room.name, "l", arg or "*", str(exc))
                else:
                    self.hub_error("MODE", exc, room.name)

    def room_modes(self, room: Room, viewer: User) -> list[str]:
        """RPL_CHANNELMODEIS parameters: ``+klnt key 10``; the key only for members."""
        letters = "".join(
            letter
            for letter, on in (
                ("i", room.invite_only),
                ("m", room.moderated),
                ("n", room.no_external),
                ("t", room.protected),
            )
            if on
        )
        args = []
        if room.password is not None:
            letters += "k"
            args.append(room.password if viewer.key in room.members else "*")
        if room.limit is not None:
            letters += "l"
            args.append(str(room.limit))
        return ["+" + letters, *args]

    def _user_mode(self, message: IrcMessage) -> None:
        user = self.user
        assert user is not None
        target = self.service.hub.find_user(message.params[0])
        if target is None:
            self.reply(ERR_NOSUCHNICK, message.params[0], "No such nick/channel")
            return
        if target is not user:
            self.reply(ERR_USERSDONTMATCH, "Can't change mode for other users")
            return
        if len(message.params) == 1:
            self.reply(RPL_UMODEIS, self.user_modes(user))
            return
        on, unknown, changed = True, False, ""
        sign = ""
        for letter in message.params[1]:
            if letter in "+-":
                on = letter == "+"
                continue
            if letter == "i" and user.invisible != on:
                user.invisible = on
            elif letter == "o" and not on and user.is_oper:
                user.is_oper = False  # anyone may drop operator status; only OPER gives it
            elif letter in "io":
                continue
            else:
                unknown = True
                continue
            want = "+" if on else "-"
            changed += (want if want != sign else "") + letter
            sign = want
        if changed:
            self.send_from(self.source_of(user.nick), "MODE", user.nick, changed)
        if unknown:
            self.reply(ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")

    @staticmethod
    def user_modes(user: User) -> str:
        return "+" + ("i" if user.invisible else "") + ("o" if user.is_oper else "")

    # PRIVMSG / NOTICE / TAGMSG ------------------------------------------------

    def _cmd_privmsg(self, message: IrcMessage) -> None:
        self._send_text(message, notice=False)

    def _cmd_notice(self, message: IrcMessage) -> None:
        # "servers ... must not send any error back to the client on receipt
        # of a NOTICE command" (Modern IRC): every refusal below is silent.
        self._send_text(message, notice=True)

    def _send_text(self, message: IrcMessage, *, notice: bool) -> None:
        user = self.user
        assert user is not None
        command = message.command
        params = message.params
        if not params or not params[0]:
            if not notice:
                self.reply(ERR_NORECIPIENT, f"No recipient given ({command})")
            return
        if len(params) < 2 or not params[1]:
            if not notice:
                self.reply(ERR_NOTEXTTOSEND, "No text to send")
            return
        text, action = parse_action(params[1])
        meta = tuple((k, v) for k, v in message.tags.items() if k.startswith("+"))
        for i, target in enumerate(t for t in params[0].split(",") if t):
            if i >= MAX_TARGETS:
                if not notice:
                    self.reply(ERR_TOOMANYTARGETS, target, "Too many targets")
                break
            try:
                if target.startswith("#"):
                    self.service.say(user, target, text, action=action, notice=notice, meta=meta)
                    continue
                event = self.service.private(
                    user, target, text, action=action, notice=notice, meta=meta
                )
            except HubError as exc:
                if not notice:
                    self._message_error(command, target, exc)
                continue
            other = self.service.hub.find_user(event.target)
            if not notice and other is not None and other.away:
                self.reply(RPL_AWAY, other.nick, other.away)

    def _message_error(self, command: str, target: str, exc: HubError) -> None:
        if exc.code in ("no_such_room", "invalid_room", "no_such_nick"):
            self.reply(ERR_NOSUCHNICK, target, "No such nick/channel")
        elif exc.code in ("not_in_room", "cannot_send"):
            self.reply(ERR_CANNOTSENDTOCHAN, target, f"Cannot send to channel: {exc}")
        else:
            self.hub_error(command, exc, target)

    def _cmd_tagmsg(self, message: IrcMessage) -> None:
        user = self.user
        assert user is not None
        meta = tuple((k, v) for k, v in message.tags.items() if k.startswith("+"))
        for i, target in enumerate(t for t in message.params[0].split(",") if t):
            if i >= MAX_TARGETS:
                self.reply(ERR_TOOMANYTARGETS, target, "Too many targets")
                break
            try:
                self.service.signal(user, target, meta)
            except HubError as exc:
                self._message_error("TAGMSG", target, exc)

    # History -------------------------------------------------------------------

    def replay_history(self, room: Room) -> None:
        """The room's last messages after a JOIN, unless the client pages itself.

        With server-time the messages carry their original times; without
        it their text starts with ``[YYYY-MM-DD HH:MM:SS]`` (UTC) so they
        cannot pass for new ones. A client that negotiated
        ``draft/chathistory`` asks with CHATHISTORY instead.
        """
        limit = self.service.settings.history
        if limit <= 0 or "draft/chathistory" in self.caps:
            return
        messages = self.service.history(room.name, limit)
        if messages:
            self.send_history(room.name, messages, stamp=not self._profile & SERVER_TIME)

    def send_history(self, target: str, messages: list[Message], *, stamp: bool = False) -> None:
        """Messages from the store, in a ``chathistory`` batch if the client has batches."""
        ref = self.next_batch() if "batch" in self.caps else None
        if ref is not None:
            self._emit(self.line("BATCH", "+" + ref, "chathistory", target))
        for item in messages:
            tags = event_tags(item.ts, self._profile, msgid=item.id)
            if ref is not None:
                tags["batch"] = ref
            text = item.text
            if stamp:
                when = datetime.fromtimestamp(item.ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
                text = f"[{when}] {text}"
            command = "NOTICE" if item.notice else "PRIVMSG"
            self._emit(render_text(command, self.source_of(item.nick), item.room, text,
                                   action=item.action, tags=tags))
        if ref is not None:
            self._emit(self.line("BATCH", "-" + ref))
