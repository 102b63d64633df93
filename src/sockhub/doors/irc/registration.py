"""IRC registration and connection commands: CAP PASS NICK USER PING PONG QUIT OPER.

Registration (RFC 2812 §3.1; Modern IRC, "Connection Registration"): the
client sends ``CAP LS 302`` (optional), ``PASS`` (if the server has a
password), ``NICK`` and ``USER``, and ``CAP END`` if it opened capability
negotiation. Once the protocol's
:class:`~sockhub.protocols.irc.protocol.Registration` says it is complete,
the door checks the password, takes the nick in the hub (which may have
been taken meanwhile: 433 and the client may try again), and sends
``001``-``005``, the LUSERS numerics, and the MOTD (or ``422``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sockhub._version import __version__
from sockhub.codec.irc import (
    ERR_ALREADYREGISTERED,
    ERR_INVALIDCAPCMD,
    ERR_NEEDMOREPARAMS,
    ERR_NONICKNAMEGIVEN,
    ERR_NOORIGIN,
    ERR_PASSWDMISMATCH,
    RPL_CREATED,
    RPL_MYINFO,
    RPL_WELCOME,
    RPL_YOUREOPER,
    RPL_YOURHOST,
    IrcMessage,
    serialize,
)
from sockhub.doors.api import OPER_ATTEMPTS
from sockhub.doors.irc import accounts
from sockhub.doors.irc.queries import send_isupport, send_lusers, send_motd
from sockhub.doors.irc.sessions import attached
from sockhub.hub import HubError
from sockhub.hub.sessions import members_of
from sockhub.protocols.irc.protocol import IrcState
from sockhub.protocols.irc.vocabulary import (
    CHANNEL_MODES,
    SOFTWARE,
    USER_MODES,
    cap_ls_lines,
    clean_username,
    parse_cap_request,
    quit_reason,
    sts_value,
    valid_realname,
)

if TYPE_CHECKING:
    from sockhub.doors.irc.door import IrcDoor

log = logging.getLogger("sockhub.irc")



# Registration ------------------------------------------------------------

def cmd_cap(door: IrcDoor, message: IrcMessage) -> None:
    sub = message.params[0].upper()
    args = message.params[1:]
    registering = door.irc.state is IrcState.REGISTERING
    if sub == "LS":
        if registering:
            door.irc.reg.negotiating = True
        version = int(args[0]) if args and args[0].isdigit() else 301
        if registering:  # after it, the registration is over (protocol.REGISTRATION_OVER)
            door.irc.reg.cap_version = max(door.irc.reg.cap_version, version)
        if version >= 302:
            door.set_caps(door.caps | {"cap-notify"})  # implied by 302 (capability negotiation)
        sts = () if door.websocket else sts_value(door.chat.irc_sts,
                                                   secure=door.info.transport == "tls")
        lines = cap_ls_lines(version, values=accounts.cap_values(door), extra=sts)
        for i, text in enumerate(lines):
            more = ("*",) if i < len(lines) - 1 else ()
            door.emit(door.line("CAP", door.nick, "LS", *more, text))
    elif sub == "LIST":
        door.emit(door.line("CAP", door.nick, "LIST", " ".join(sorted(door.caps))))
    elif sub == "REQ":
        if registering:
            door.irc.reg.negotiating = True
        text = args[0] if args else ""
        changes = parse_cap_request(text)
        if changes is None:
            door.emit(door.line("CAP", door.nick, "NAK", text))
            return
        caps = set(door.caps)
        for name, enable in changes:
            (caps.add if enable else caps.discard)(name)
        door.set_caps(caps)
        door.emit(door.line("CAP", door.nick, "ACK", text))
    elif sub == "END":
        if registering:
            door.irc.reg.negotiating = False
            _try_register(door)
    else:
        door.reply(ERR_INVALIDCAPCMD, sub, "Invalid CAP command")


def cmd_pass(door: IrcDoor, message: IrcMessage) -> None:
    if door.irc.state is IrcState.REGISTERED:
        door.reply(ERR_ALREADYREGISTERED, "You may not reregister")
        return
    door.irc.reg.password = message.params[0]  # the last one counts (Modern IRC, PASS)


def cmd_nick(door: IrcDoor, message: IrcMessage) -> None:
    if not message.params or not message.params[0]:
        door.reply(ERR_NONICKNAMEGIVEN, "No nickname given")
        return
    nick = message.params[0]
    if door.user is not None:
        try:  # the hub tells everyone sharing a channel, and this client
            door.chat.rename(door.user, nick)
        except HubError as exc:
            door.hub_error("NICK", exc)
        return
    problem = door.chat.nick_available(nick)
    if problem is not None and problem.code == "nick_in_use" and _may_share(door, nick):
        problem = None  # SASL may still log in to its owner: checked at registration
    if problem is not None:
        accounts.account_state(door).tried_nick = nick  # REGISTER * may not take it from its holder
        door.hub_error("NICK", problem)
        return
    door.irc.reg.nick = nick
    _try_register(door)


def _may_share(door: IrcDoor, nick: str) -> bool:
    """Is ``nick`` held by a logged-in user whom this connection may yet join?

    Clients send NICK before SASL ends, so with multiclient on, a nick held
    by its logged-in owner waits for registration, where the account decides
    (``ChatApi.register(account=...)``), as Ergo does.
    """
    if door.chat.settings.multiclient != "on":
        return False
    holder = door.chat.find_user(nick)
    return holder is not None and holder.account is not None


def cmd_user(door: IrcDoor, message: IrcMessage) -> None:
    if door.irc.state is IrcState.REGISTERED:
        door.reply(ERR_ALREADYREGISTERED, "You may not reregister")
        return
    username, realname = message.params[0], message.params[3]
    if not username or not realname:
        # Modern IRC: an empty user name "SHOULD" be refused with 461;
        # irctest holds an empty real name to the same rule.
        door.reply(ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
        return
    door.irc.reg.username = clean_username(username) or "user"
    door.irc.reg.realname = realname
    _try_register(door)


def cmd_setname(door: IrcDoor, message: IrcMessage) -> None:
    """IRCv3 setname: the hub tells the user and their neighbours, and the
    door shows ``SETNAME`` to those with the capability (the originator's copy
    confirms the change); without it the change is made silently, as the spec
    asks of historic clients."""
    user = door.user
    assert user is not None
    realname = message.params[0]
    if not valid_realname(realname):
        door.emit(door.line("FAIL", "SETNAME", "INVALID_REALNAME", "Realname is not valid"))
        return
    door.chat.set_realname(user, realname)


def _try_register(door: IrcDoor) -> None:
    reg = door.irc.reg
    if door.irc.state is not IrcState.REGISTERING or not reg.complete:
        return
    assert reg.nick is not None and reg.username is not None
    resume = door.hold()  # a hashed PASS is checked off the loop; this client waits for it
    door.chat.check_connection_password_later(
        reg.password, then=lambda ok: resume(lambda: _password_checked(door, ok)))


def _password_checked(door: IrcDoor, ok: bool) -> None:
    reg = door.irc.reg
    if door.irc.state is not IrcState.REGISTERING or reg.nick is None or reg.username is None:
        return  # gone meanwhile
    if not ok:
        # Modern IRC, PASS: ERR_PASSWDMISMATCH, then ERROR and a close.
        door.reply(ERR_PASSWDMISMATCH, "Password incorrect")
        door.drop("Bad password")
        return
    try:
        user = door.chat.register(
            reg.nick, door, address=door.host, username=reg.username,
            realname=reg.realname or reg.nick, secure=door.info.transport == "tls",
            # SASL's: may join that account's user (multiclient)
            account=door.acct.account if door.acct is not None else None,
        )
    except HubError as exc:  # someone registered the nick since NICK: try another
        reg.nick = None
        door.hub_error("NICK", exc)
        return
    door.registered(user)
    log.info("irc: %s registered from %s", user.nick, door.info.peer)
    _welcome(door)
    accounts.after_registration(door, user)
    if len(members_of(user.member)) > 1:  # joined a user already here (multiclient)
        attached(door, user)


def _welcome(door: IrcDoor) -> None:
    user = door.user
    assert user is not None
    network = door.chat.settings.line_name
    version = f"{SOFTWARE}-{__version__}"
    created = datetime.fromtimestamp(door.chat.started, UTC)
    door.reply(RPL_WELCOME, f"Welcome to the {network} Network, {door.source_of(user.nick)}")
    door.reply(RPL_YOURHOST, f"Your host is {door.server_name}, running version {version}")
    door.reply(RPL_CREATED, f"This server was created {created:%Y-%m-%d %H:%M:%S} UTC")
    door.reply(RPL_MYINFO, door.server_name, version, USER_MODES, CHANNEL_MODES, "bklov")
    send_isupport(door)
    send_lusers(door)
    send_motd(door)

# Connection ------------------------------------------------------------------

def cmd_ping(door: IrcDoor, message: IrcMessage) -> None:
    # Modern IRC, PONG: "Servers MUST send a <server> parameter".
    door.emit(door.line("PONG", door.server_name, message.params[0]))


def cmd_pong(door: IrcDoor, message: IrcMessage) -> None:
    if not message.params:
        door.reply(ERR_NOORIGIN, "No origin specified")
    # Any line proves the client alive; receive_data noted the time.


def cmd_quit(door: IrcDoor, message: IrcMessage) -> None:
    reason = message.params[0] if message.params else ""
    user = door.user
    if user is not None:
        if user.account is not None and door.chat.settings.multiclient == "on":
            # Logged in, it may be one of several connections of its person: it
            # is shown its own QUIT before the ERROR, as Ergo does (the only sign
            # that it left, when the person stays and no one else is told).
            door.send_from(door.source_of(user.nick), "QUIT", quit_reason(reason))
        door.chat.quit(user, reason, voluntary=True, via=door)
        door.user = None
    door.emit(serialize("ERROR", (f"Closing Link: {door.host} ({quit_reason(reason)})",)))
    door.irc.close()
    door.close()


def cmd_oper(door: IrcDoor, message: IrcMessage) -> None:
    user = door.user
    assert user is not None
    name, password = message.params[0], message.params[1]
    resume = door.hold()  # the scrypt runs off the loop; this client waits for it

    def checked(ok: bool) -> None:
        if ok:
            door.reply(RPL_YOUREOPER, "You are now an IRC operator")
            door.send_from(door.source_of(user.nick), "MODE", user.nick, "+o")
            return
        state = accounts.account_state(door)
        state.oper_failures += 1
        door.reply(ERR_PASSWDMISMATCH, "Password incorrect")
        if state.oper_failures >= OPER_ATTEMPTS:
            door.drop("Too many failed OPER attempts")

    door.chat.oper_later(user, name, password, then=lambda ok: resume(lambda: checked(ok)))
