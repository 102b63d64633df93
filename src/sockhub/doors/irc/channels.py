"""IRC channel commands: JOIN PART TOPIC NAMES LIST INVITE KICK MODE PRIVMSG NOTICE TAGMSG.

Each handler translates one IRC command (RFC 2812 §3.2-3.3 as the Modern
IRC document describes current practice) into calls of the chat service,
and the hub's refusals into the numerics the specifications name. The
command table has already checked registration and the least number of
parameters.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sockhub.codec.irc import (
    ERR_BANLISTFULL,
    ERR_CANNOTSENDTOCHAN,
    ERR_CHANOPRIVSNEEDED,
    ERR_INPUTTOOLONG,
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
    RPL_ENDOFINVITELIST,
    RPL_ENDOFNAMES,
    RPL_INVITELIST,
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
    split_utf8,
)
from sockhub.doors.irc import accounts, chanserv, readmarker
from sockhub.hub import HubError, Room, User
from sockhub.hub.events import Message
from sockhub.hub.names import BANS_PER_ROOM, TOPIC_MAX, fold, mask_match
from sockhub.protocols.irc.vocabulary import (
    KICKLEN,
    MAX_TARGETS,
    SERVER_TIME,
    USER_MODES,
    event_tags,
    irc_host,
    irc_source,
    parse_action,
    parse_modes,
    render_text,
)

if TYPE_CHECKING:
    from sockhub.doors.irc.door import IrcDoor

#: Channels a NAMES without parameters lists at most.
NAMES_MAX = 100


# JOIN / PART -----------------------------------------------------------

def cmd_join(door: IrcDoor, message: IrcMessage) -> None:
    user = door.user
    assert user is not None
    if message.params[0] == "0":  # "leave all channels" (Modern IRC, JOIN)
        for room in list(user.rooms.values()):
            door.chat.part(user, room.name, "Left all channels", via=door)
        return
    names = message.params[0].split(",")
    keys = message.params[1].split(",") if len(message.params) > 1 else []
    for i, name in enumerate(names):
        if not name or fold(name) in user.rooms:
            continue  # already there: RFC 2812 asks for no reply
        key = keys[i] if i < len(keys) and keys[i] else None
        try:
            door.chat.join(user, name, password=key, via=door)
        except HubError as exc:
            door.hub_error("JOIN", exc, name)
            continue
        joined = user.rooms.get(fold(name))
        if joined is None:  # joined and removed at once (a ban raced it)
            continue
        # Modern IRC: the JOIN (delivered by the hub), then the topic,
        # then the names, "in this order".
        send_topic(door, joined, explicit=False)
        readmarker.send_marker(door, joined.name)  # "before RPL_ENDOFNAMES" (read-marker)
        send_names(door, joined, brief=door.chat.is_quiet(joined))
        replay_history(door, joined)


def cmd_part(door: IrcDoor, message: IrcMessage) -> None:
    user = door.user
    assert user is not None
    reason = message.params[1] if len(message.params) > 1 else ""
    for name in message.params[0].split(","):
        if not name:
            continue
        try:
            door.chat.part(user, name, reason, via=door)
        except HubError as exc:
            door.hub_error("PART", exc, name)


# TOPIC / NAMES / LIST ---------------------------------------------------

def cmd_topic(door: IrcDoor, message: IrcMessage) -> None:
    user = door.user
    assert user is not None
    name = message.params[0]
    if len(message.params) == 1:
        room = door.chat.find_room(name)
        if room is None:
            door.reply(ERR_NOSUCHCHANNEL, name, "No such channel")
        elif user.key not in room.members:
            door.reply(ERR_NOTONCHANNEL, room.name, "You're not on that channel")
        else:
            send_topic(door, room, explicit=True)
        return
    try:  # TOPICLEN: longer topics are cut, as other servers do
        door.chat.set_topic(user, name, message.params[1][:TOPIC_MAX])
    except HubError as exc:
        door.hub_error("TOPIC", exc, name)


def send_topic(door: IrcDoor, room: Room, *, explicit: bool) -> None:
    if room.topic:
        door.reply(RPL_TOPIC, room.name, room.topic)
        # The setter in full, as Ergo and InspIRCd send it: they may be long gone.
        setter = irc_source(room.topic_by, room.topic_username, room.topic_address)
        door.reply(RPL_TOPICTIME, room.name, setter, str(int(room.topic_ts)))
    elif explicit:  # not on JOIN (irctest: "shouldn't send RPL_NOTOPIC")
        door.reply(RPL_NOTOPIC, room.name, "No topic is set")


def member_prefix(door: IrcDoor, room: Room, key: str) -> str:
    """``@``/``+`` (both with multi-prefix) for a member of ``room``."""
    op, voice = key in room.operators, key in room.voiced
    if "multi-prefix" in door.caps:
        return ("@" if op else "") + ("+" if voice else "")
    return "@" if op else "+" if voice else ""


def visible(door: IrcDoor, room: Room, viewer: User) -> list[User]:
    """Members ``viewer`` may see: invisible users only from inside the room,
    and nobody of a secret (+s) or private (+p) room from outside it."""
    if viewer.key in room.members:
        return list(room.members.values())
    if room.hidden:
        return []
    return [u for u in room.members.values() if not u.invisible]


def listed(room: Room, viewer: User) -> bool:
    """May ``viewer`` see ``room`` in LIST or NAMES? Not a +s/+p room from outside
    (Modern IRC, "Secret Channel Mode"; RFC 1459 §4.2.6)."""
    return not room.hidden or viewer.key in room.members


def names_symbol(room: Room) -> str:
    """RPL_NAMREPLY's channel type (RFC 2812 §5.2): ``@`` secret, ``*`` private, ``=`` public."""
    return "@" if room.secret else "*" if room.private else "="


def send_names(door: IrcDoor, room: Room, *, end: str | None = None,
               brief: bool = False) -> None:
    """RPL_NAMREPLY lines, then RPL_ENDOFNAMES for ``end`` (the room) unless "".

    ``brief`` (joining a quiet room): only the viewer and the operators, as
    auditorium modes show, found in O(operators); an explicit NAMES lists everyone.
    """
    viewer = door.user
    assert viewer is not None
    long_form = "userhost-in-names" in door.caps
    entries = []
    if brief and viewer.key in room.members:  # the operators by nick, then the newcomer
        shown = [*sorted((u for u in room.operators_present() if u is not viewer),
                         key=lambda u: u.key), viewer]
    else:
        shown = visible(door, room, viewer)
    for member in shown:
        name = (
            f"{member.nick}!{member.username or member.nick}@{irc_host(member.address)}"
            if long_form
            else member.nick
        )
        entries.append(member_prefix(door, room, member.key) + name)
    symbol = names_symbol(room)
    head = f":{door.server_name} {RPL_NAMREPLY} {door.nick} {symbol} {room.name} :"
    budget = MAX_BODY - len(head.encode())
    line: list[str] = []
    size = 0
    for entry in entries:
        n = len(entry.encode()) + 1
        if line and size + n > budget:
            door.reply(RPL_NAMREPLY, symbol, room.name, " ".join(line))
            line, size = [], 0
        line.append(entry)
        size += n
    if line:
        door.reply(RPL_NAMREPLY, symbol, room.name, " ".join(line))
    if end != "":
        door.reply(RPL_ENDOFNAMES, end or room.name, "End of /NAMES list")


def cmd_names(door: IrcDoor, message: IrcMessage) -> None:
    chat = door.chat
    viewer = door.user
    assert viewer is not None
    if not message.params or not message.params[0]:
        # RFC 2812 §3.2.5: every channel the client may see, one end.
        rooms = [r for r in chat.rooms() if listed(r, viewer)]
        for shown in sorted(rooms, key=lambda r: r.key)[:NAMES_MAX]:
            send_names(door, shown, end="")
        door.reply(RPL_ENDOFNAMES, "*", "End of /NAMES list")
        return
    names = message.params[0].split(",")
    if len(names) == 1:
        room = chat.find_room(names[0])
        if room is None or not listed(room, viewer):
            # "one RPL_ENDOFNAMES numeric containing the given channel name"
            door.reply(RPL_ENDOFNAMES, names[0], "End of /NAMES list")
        else:
            send_names(door, room)
        return
    for name in names:  # several channels: their names, then one end for them all
        room = chat.find_room(name)
        if room is not None and listed(room, viewer):
            send_names(door, room, end="")
    door.reply(RPL_ENDOFNAMES, message.params[0], "End of /NAMES list")


def cmd_list(door: IrcDoor, message: IrcMessage) -> None:
    """LIST [#a,#b | conditions] with ISUPPORT ``ELIST=MNU``: ``*mask*``,
    ``!*mask*`` (names not matching), ``>n`` and ``<n`` (member counts);
    several conditions, comma-separated, must all hold."""
    chat = door.chat
    viewer = door.user
    assert viewer is not None
    wanted = message.params[0] if message.params else ""
    conditions = [c for c in wanted.split(",") if c]
    if conditions and all(c.startswith("#") and not any(w in c for w in "*?")
                          for c in conditions):
        found = (chat.find_room(n) for n in conditions)
        rooms = [r for r in found if r is not None]
    else:
        rooms = [r for r in sorted(chat.rooms(), key=lambda r: r.key)
                 if all(list_condition(c, r) for c in conditions)]
    door.reply(RPL_LISTSTART, "Channel", "Users  Name")
    for room in rooms:
        if not listed(room, viewer):
            continue
        door.reply(RPL_LIST, room.name, str(len(room.members)), room.topic)
    door.reply(RPL_LISTEND, "End of /LIST")


def list_condition(condition: str, room: Room) -> bool:
    """One ELIST condition (Modern IRC, ISUPPORT ``ELIST``): M, N and U only.

    An unknown condition (``C>``/``T>``, not advertised) holds, as if absent.
    """
    first, rest = condition[0], condition[1:]
    if first in "<>":
        try:
            count = int(rest)
        except ValueError:
            return True
        size = len(room.members)
        return size > count if first == ">" else size < count
    if first == "!":
        return not mask_match(fold(rest), room.key)
    if first in "CT" and rest[:1] in ("<", ">"):
        return True
    return mask_match(fold(condition), room.key)


# INVITE / KICK ----------------------------------------------------------

def cmd_invite(door: IrcDoor, message: IrcMessage) -> None:
    user = door.user
    assert user is not None
    if not message.params:
        # Modern IRC: "INVITE" alone lists the channels you are invited to.
        for room in sorted(door.chat.rooms(), key=lambda r: r.key):
            if user.key in room.invited:
                door.reply(RPL_INVITELIST, room.name)
        door.reply(RPL_ENDOFINVITELIST, "End of /INVITE list")
        return
    if len(message.params) < 2:
        door.reply(ERR_NEEDMOREPARAMS, "INVITE", "Not enough parameters")
        return
    nick, name = message.params[0], message.params[1]
    try:
        event = door.chat.invite(user, nick, name)
    except HubError as exc:
        door.hub_error("INVITE", exc, name)
        return
    door.reply(RPL_INVITING, event.nick, event.room)
    target = door.chat.find_user(event.nick)
    if target is not None and target.away:
        door.reply(RPL_AWAY, target.nick, target.away)


def cmd_kick(door: IrcDoor, message: IrcMessage) -> None:
    user = door.user
    assert user is not None
    channels = message.params[0].split(",")
    nicks = [n for n in message.params[1].split(",") if n]
    reason = message.params[2][:KICKLEN] if len(message.params) > 2 else ""
    if len(channels) == 1:
        pairs = [(channels[0], nick) for nick in nicks[:MAX_TARGETS]]
    elif len(channels) == len(nicks):
        pairs = list(zip(channels, nicks, strict=True))[:MAX_TARGETS]
    else:  # RFC 2812 §3.2.8: one channel, or as many channels as users
        door.reply(ERR_NEEDMOREPARAMS, "KICK", "Not enough parameters")
        return
    for name, nick in pairs:
        try:
            door.chat.kick(user, name, nick, reason)
        except HubError as exc:
            door.hub_error("KICK", exc, name)


# MODE --------------------------------------------------------------------

def cmd_mode(door: IrcDoor, message: IrcMessage) -> None:
    if message.params[0].startswith("#"):
        _channel_mode(door, message)
    else:
        _user_mode(door, message)


def _channel_mode(door: IrcDoor, message: IrcMessage) -> None:
    user = door.user
    assert user is not None
    chat = door.chat
    room = chat.find_room(message.params[0])
    if room is None:
        door.reply(ERR_NOSUCHCHANNEL, message.params[0], "No such channel")
        return
    if len(message.params) == 1:
        door.reply(RPL_CHANNELMODEIS, room.name, *room_modes(door, room, user))
        door.reply(RPL_CREATIONTIME, room.name, str(int(room.created)))
        return
    parsed = parse_modes(message.params[1], message.params[2:])
    for letter in parsed.unknown:
        door.reply(ERR_UNKNOWNMODE, letter, "is unknown mode char to me")
    if parsed.list_bans:
        for mask in chat.bans(room.name):
            door.reply(RPL_BANLIST, room.name, mask)
        door.reply(RPL_ENDOFBANLIST, room.name, "End of channel ban list")
    if (parsed.changes or parsed.bans) and not chat.may_moderate(user, room):
        if user.key in room.members:
            door.reply(ERR_CHANOPRIVSNEEDED, room.name, "You're not channel operator")
        else:
            door.reply(ERR_NOTONCHANNEL, room.name, "You're not on that channel")
        return
    if parsed.missing:
        door.reply(ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
    for add, mask in parsed.bans:
        if add and len(chat.bans(room.name)) >= BANS_PER_ROOM:
            door.reply(ERR_BANLISTFULL, room.name, "b", "Channel ban list is full")
            continue
        try:  # IRC bans keep members in; they only stop joins and speech
            door.chat.ban(user, room.name, mask, add=add, kick=False)
        except HubError as exc:
            if exc.code != "invalid_text":  # already (or not) banned: nothing to change
                door.hub_error("MODE", exc, room.name)
    if parsed.changes:
        for error in door.chat.set_modes(user, room.name, parsed.changes):
            if error.code == "invalid_password":
                door.reply(ERR_INVALIDMODEPARAM, room.name, "k", "*", str(error))
            elif error.code == "invalid_limit":
                arg = next((c.arg for c in parsed.changes if c.flag == "limit"), "*")
                door.reply(ERR_INVALIDMODEPARAM, room.name, "l", arg or "*", str(error))
            else:
                door.hub_error("MODE", error, room.name)


def room_modes(door: IrcDoor, room: Room, viewer: User) -> list[str]:
    """RPL_CHANNELMODEIS parameters: ``+klnt key 10``; the key only for members."""
    letters = "".join(
        letter
        for letter, on in (
            ("C", room.no_ctcp),
            ("i", room.invite_only),
            ("m", room.moderated),
            ("n", room.no_external),
            ("p", room.private),
            ("s", room.secret),
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


def _user_mode(door: IrcDoor, message: IrcMessage) -> None:
    user = door.user
    assert user is not None
    target = door.chat.find_user(message.params[0])
    if target is None:
        door.reply(ERR_NOSUCHNICK, message.params[0], "No such nick/channel")
        return
    if target is not user:
        door.reply(ERR_USERSDONTMATCH, "Can't change mode for other users")
        return
    if len(message.params) == 1:
        door.reply(RPL_UMODEIS, user_modes(user))
        return
    on, unknown, changed = True, False, ""
    sign = ""
    for letter in message.params[1]:
        if letter in "+-":
            on = letter == "+"
            continue
        if letter == "i" and user.invisible != on:
            door.chat.set_invisible(user, on)
        elif letter == "o" and not on and user.is_oper:
            door.chat.unoper(user)  # anyone may drop operator status; only OPER gives it
        elif letter == "B" and user.bot != on:
            user.bot = on  # IRCv3 bot-mode
        elif letter == "w" and user.wallops != on:
            user.wallops = on  # RFC 2812 §3.1.5: receive WALLOPS
        elif letter in USER_MODES:
            continue
        else:
            unknown = True
            continue
        want = "+" if on else "-"
        changed += (want if want != sign else "") + letter
        sign = want
    if changed:
        door.send_from(door.source_of(user.nick), "MODE", user.nick, changed)
    if unknown:
        door.reply(ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")


def user_modes(user: User) -> str:
    return ("+" + ("B" if user.bot else "") + ("i" if user.invisible else "")
            + ("o" if user.is_oper else "") + ("w" if user.wallops else ""))


# PRIVMSG / NOTICE / TAGMSG ------------------------------------------------

def cmd_privmsg(door: IrcDoor, message: IrcMessage) -> None:
    _send_text(door, message, notice=False)


def privmsg_channel(door: IrcDoor, target: str, text: str, size: int) -> None:
    """``PRIVMSG #channel :text`` from the protocol's fast path (``ChannelText``).

    :func:`_send_text`'s steps for one channel, no tags and no CTCP (the
    protocol leaves those lines to :func:`cmd_privmsg`), with the same
    refusals: the relayed line's size (417), then the hub's (401, 404, ...).
    ``size`` is the received line's length, ``PRIVMSG <target> :<text>``:
    the relayed line is that with ``:<source> `` before it and CR LF after.
    """
    user = door.user
    assert user is not None
    # The relayed line is ":<source> " + the line received + CR LF. Its
    # source, nick!user@host, is at most 4 bytes a character (UTF-8) of
    # two nicks (no user name: the nick), the user name and the address
    # (or "localhost"), so most lines are known to fit without making it.
    nick = user.nick
    room = MAX_BODY + 2 - 4 - size
    if 4 * (2 * len(nick) + len(user.username) + len(user.address) + 12) > room:
        # Near the limit: the source as the general path reckons it (source_of)
        # is this when the hub knows them, shorter (a bare nick) if not, so a
        # line this passes, that passes too; one it does not, that decides.
        source = irc_source(nick, user.username, user.address)
        if len(source.encode()) > room:
            _send_text(door, IrcMessage("PRIVMSG", (target, text)), notice=False)
            return
    try:
        door.chat.say(user, target, text, via=door)
    except HubError as exc:
        _message_error(door, "PRIVMSG", target, exc)


def cmd_notice(door: IrcDoor, message: IrcMessage) -> None:
    # "servers ... must not send any error back to the client on receipt
    # of a NOTICE command" (Modern IRC): every refusal below is silent.
    _send_text(door, message, notice=True)


def _send_text(door: IrcDoor, message: IrcMessage, *, notice: bool) -> None:
    user = door.user
    assert user is not None
    command = message.command
    params = message.params
    if not params or not params[0]:
        if not notice:
            door.reply(ERR_NORECIPIENT, f"No recipient given ({command})")
        return
    if len(params) < 2 or not params[1]:
        if not notice:
            door.reply(ERR_NOTEXTTOSEND, "No text to send")
        return
    text, action = parse_action(params[1])
    meta = tuple((k, v) for k, v in message.tags.items() if k.startswith("+"))
    source = door.source_of(user.nick)
    for i, target in enumerate(t for t in params[0].split(",") if t):
        if i >= MAX_TARGETS:
            if not notice:
                door.reply(ERR_TOOMANYTARGETS, target, "Too many targets")
            break
        body = params[1]
        if relayed_size(source, command, target, body) > MAX_BODY + 2:
            if not notice:
                # What the recipients would get (our prefix added) passes 512
                # bytes: refuse rather than split or cut it (Modern IRC lets a
                # server do either; ERR_INPUTTOOLONG's own definition).
                door.reply(ERR_INPUTTOOLONG, "Input line was too long")
                continue
            # A NOTICE gets no error, ever (RFC 2812 §3.3.2): cut it to fit.
            budget = MAX_BODY + 2 - relayed_size(source, command, target, "")
            body = split_utf8(body, budget)[0] if budget >= 4 else ""
            text, action = parse_action(body)
            if not text:
                continue
        try:
            if target.startswith("#"):
                door.chat.say(user, target, text, action=action, notice=notice, meta=meta,
                              via=door)
                continue
            if fold(target) == "nickserv":  # never to a user who took that nick
                if not notice:
                    accounts.nickserv(door, text)
                continue
            if fold(target) == "chanserv":  # nor this one
                if not notice:
                    chanserv.chanserv(door, text)
                continue
            event = door.chat.private(
                user, target, text, action=action, notice=notice, meta=meta, via=door
            )
        except HubError as exc:
            if not notice:
                _message_error(door, command, target, exc)
            continue
        other = door.chat.find_user(event.target)
        if not notice and other is not None and other.away:
            door.reply(RPL_AWAY, other.nick, other.away)


def relayed_size(source: str, command: str, target: str, body: str) -> int:
    """Bytes of ``:source COMMAND target :body\r\n``, the line recipients get
    (tags aside: they have a budget of their own)."""
    return len(f":{source} {command} {target} :{body}\r\n".encode())


def _message_error(door: IrcDoor, command: str, target: str, exc: HubError) -> None:
    if exc.code in ("no_such_room", "invalid_room", "no_such_nick"):
        door.reply(ERR_NOSUCHNICK, target, "No such nick/channel")
    elif exc.code in ("not_in_room", "cannot_send"):
        door.reply(ERR_CANNOTSENDTOCHAN, target, f"Cannot send to channel: {exc}")
    else:
        door.hub_error(command, exc, target)


def cmd_tagmsg(door: IrcDoor, message: IrcMessage) -> None:
    user = door.user
    assert user is not None
    meta = tuple((k, v) for k, v in message.tags.items() if k.startswith("+"))
    for i, target in enumerate(t for t in message.params[0].split(",") if t):
        if i >= MAX_TARGETS:
            door.reply(ERR_TOOMANYTARGETS, target, "Too many targets")
            break
        try:
            door.chat.signal(user, target, meta, via=door)
        except HubError as exc:
            _message_error(door, "TAGMSG", target, exc)

# History -------------------------------------------------------------------

def replay_history(door: IrcDoor, room: Room) -> None:
    """What the client missed of a room, after its JOIN, unless it pages itself.

    As Ergo does, a client that negotiated ``draft/chathistory`` gets no
    automatic replay: it asks with CHATHISTORY. Others get at most
    ``--history`` messages: those since this client (same nick, user name
    and address) last left the room, or the latest if it never did, so a
    reconnect does not show again what was already seen (docs/irc.md).
    With server-time the messages carry their original times; without it
    their text starts with ``[YYYY-MM-DD HH:MM:SS]`` (UTC) so they cannot
    pass for new ones.
    """
    limit = door.chat.settings.history
    if limit <= 0 or "draft/chathistory" in door.caps or door.user is None:
        return
    messages = door.chat.replay(door.user, room.name, limit)
    if messages:
        send_history(door, room.name, messages, stamp=not door.profile & SERVER_TIME)


def send_history(door: IrcDoor, target: str, messages: list[Message], *,
                 stamp: bool = False) -> None:
    """Messages from the store, in a ``chathistory`` batch if the client has batches."""
    ref = door.next_batch() if "batch" in door.caps else None
    if ref is not None:
        door.emit(door.line("BATCH", "+" + ref, "chathistory", target))
    for item in messages:
        tags = event_tags(item.ts, door.profile, msgid=item.id)
        if ref is not None:
            tags["batch"] = ref
        text = item.text
        if stamp:
            when = datetime.fromtimestamp(item.ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
            text = f"[{when}] {text}"
        command = "NOTICE" if item.notice else "PRIVMSG"
        source = irc_source(item.nick, item.username, item.address)
        door.emit(render_text(command, source, item.room, text, action=item.action,
                              tags=tags))
    if ref is not None:
        door.emit(door.line("BATCH", "-" + ref))
