"""The chat hub's IRC door: any IRC client joins the same rooms as nc users.

Theory of operation
-------------------

:class:`IrcDoor` is one IRC connection. It is a sockhub ``Protocol``
driven by the engine like the line door, and a hub ``Member``: IRC
commands become calls of the shared :class:`~sockhub.services.chat.ChatService`,
and the hub's events come back through :meth:`deliver` as IRC lines. The
door adds nothing IRC-specific to the hub; what only IRC has (capabilities,
labels, numerics, the CAP handshake) lives here and in
``protocols/chat_irc.py``.

The class is assembled from layers, each under one concern:

* ``irc_core.IrcDoorCore``: input queue, flood control, PING keep-alive,
  output, labeled responses, event delivery;
* ``irc_channels.ChannelCommands``: JOIN, PART, TOPIC, NAMES, LIST,
  INVITE, KICK, MODE, PRIVMSG, NOTICE, TAGMSG;
* ``irc_queries.QueryCommands``: WHO, WHOIS, AWAY, ISON, USERHOST,
  LUSERS, MOTD, VERSION, TIME, INFO, HELP, CHATHISTORY;
* this module: connection registration (PASS, NICK, USER, CAP), PING,
  PONG, QUIT and OPER, and the welcome burst.

Registration (RFC 2812 §3.1; Modern IRC, "Connection Registration"): the
client sends ``CAP LS 302`` (optional), ``PASS`` (if the server has a
password), ``NICK`` and ``USER``, and ``CAP END`` if it opened capability
negotiation. Once :class:`~sockhub.protocols.chat_irc.Registration` says
it is complete, the door checks the password, takes the nick in the hub
(which may have been taken meanwhile: 433 and the client may try again),
and sends ``001``-``005``, the LUSERS numerics, and the MOTD (or ``422``).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

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
from sockhub.hub import HubError
from sockhub.protocols.chat_irc import (
    CHANNEL_MODES,
    USER_MODES,
    IrcState,
    cap_ls_lines,
    clean_username,
    parse_cap_request,
)
from sockhub.services.irc_core import SOFTWARE, irc_refusal
from sockhub.services.irc_queries import QueryCommands

__all__ = ["IrcDoor", "irc_refusal"]

log = logging.getLogger("sockhub.irc")

#: Failed OPER attempts one connection may make before it is closed.
OPER_ATTEMPTS = 3


class IrcDoor(QueryCommands):
    """One IRC client of the chat hub (see docs/irc.md)."""

    __slots__ = ()

    # Registration ------------------------------------------------------------

    def _cmd_cap(self, message: IrcMessage) -> None:
        sub = message.params[0].upper()
        args = message.params[1:]
        registering = self.state is IrcState.REGISTERING
        if sub == "LS":
            if registering:
                self.reg.negotiating = True
            version = int(args[0]) if args and args[0].isdigit() else 301
            self.reg.cap_version = max(self.reg.cap_version, version)
            if version >= 302:
                self.caps.add("cap-notify")  # implied by 302 (capability negotiation)
            lines = cap_ls_lines(version)
            for i, text in enumerate(lines):
                more = ("*",) if i < len(lines) - 1 else ()
                self._emit(self.line("CAP", self.nick, "LS", *more, text))
        elif sub == "LIST":
            self._emit(self.line("CAP", self.nick, "LIST", " ".join(sorted(self.caps))))
        elif sub == "REQ":
            if registering:
                self.reg.negotiating = True
            text = args[0] if args else ""
            changes = parse_cap_request(text)
            if changes is None:
                self._emit(self.line("CAP", self.nick, "NAK", text))
                return
            caps = set(self.caps)
            for name, enable in changes:
                (caps.add if enable else caps.discard)(name)
            self.set_caps(caps)
            self._emit(self.line("CAP", self.nick, "ACK", text))
        elif sub == "END":
            if registering:
                self.reg.negotiating = False
                self._try_register()
        else:
            self.reply(ERR_INVALIDCAPCMD, sub, "Invalid CAP command")

    def _cmd_pass(self, message: IrcMessage) -> None:
        if self.state is IrcState.REGISTERED:
            self.reply(ERR_ALREADYREGISTERED, "You may not reregister")
            return
        self.reg.password = message.params[0]  # the last one counts (Modern IRC, PASS)

    def _cmd_nick(self, message: IrcMessage) -> None:
        if not message.params or not message.params[0]:
            self.reply(ERR_NONICKNAMEGIVEN, "No nickname given")
            return
        nick = message.params[0]
        if self.user is not None:
            try:  # the hub tells everyone sharing a channel, and this client
                self.service.rename(self.user, nick)
            except HubError as exc:
                self.hub_error("NICK", exc)
            return
        problem = self.service.hub.nick_available(nick)
        if problem is not None:
            self.hub_error("NICK", problem)
            return
        self.reg.nick = nick
        self._try_register()

    def _cmd_user(self, message: IrcMessage) -> None:
        if self.state is IrcState.REGISTERED:
            self.reply(ERR_ALREADYREGISTERED, "You may not reregister")
            return
        username, realname = message.params[0], message.params[3]
        if not username or not realname:
            # Modern IRC: an empty user name "SHOULD" be refused with 461;
            # irctest holds an empty real name to the same rule.
            self.reply(ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
            return
        self.reg.username = clean_username(username) or "user"
        self.reg.realname = realname
        self._try_register()

    def _try_register(self) -> None:
        reg = self.reg
        if self.state is not IrcState.REGISTERING or not reg.complete:
            return
        assert reg.nick is not None and reg.username is not None
        if not self.service.check_connection_password(reg.password):
            # Modern IRC, PASS: ERR_PASSWDMISMATCH, then ERROR and a close.
            self.reply(ERR_PASSWDMISMATCH, "Password incorrect")
            self.drop("Bad password")
            return
        try:
            user = self.service.hub.register(
                reg.nick, self, address=self.host, username=reg.username,
                realname=reg.realname or reg.nick, secure=self.info.transport == "tls",
                now=time.time(),
            )
        except HubError as exc:  # someone registered the nick since NICK: try another
            reg.nick = None
            self.hub_error("NICK", exc)
            return
        self.user = user
        self.state = IrcState.REGISTERED
        if self._reg_timer is not None:
            self._reg_timer.cancel()
            self._reg_timer = None
        log.info("irc: %s registered from %s", user.nick, self.info.peer)
        self._welcome()

    def _welcome(self) -> None:
        user = self.user
        assert user is not None
        network = self.service.settings.line_name
        version = f"{SOFTWARE}-{__version__}"
        created = datetime.fromtimestamp(self.service.started, UTC)
        self.reply(RPL_WELCOME, f"Welcome to the {network} Network, {self.source_of(user.nick)}")
        self.reply(RPL_YOURHOST, f"Your host is {self.server_name}, running version {version}")
        self.reply(RPL_CREATED, f"This server was created {created:%Y-%m-%d %H:%M:%S} UTC")
        self.reply(RPL_MYINFO, self.server_name, version, USER_MODES, CHANNEL_MODES, "bklov")
        self.send_isupport()
        self.send_lusers()
        self.send_motd()

    # Connection ------------------------------------------------------------------

    def _cmd_ping(self, message: IrcMessage) -> None:
        # Modern IRC, PONG: "Servers MUST send a <server> parameter".
        self._emit(self.line("PONG", self.server_name, message.params[0]))

    def _cmd_pong(self, message: IrcMessage) -> None:
        if not message.params:
            self.reply(ERR_NOORIGIN, "No origin specified")
        # Any line proves the client alive; receive_data noted the time.

    def _cmd_quit(self, message: IrcMessage) -> None:
        reason = message.params[0] if message.params else ""
        if self.user is not None:
            self.service.quit(self.user, reason, voluntary=True)
            self.user = None
        self._emit(serialize("ERROR", (f"Closing Link: {self.host} (Quit: {reason})",)))
        self.state = IrcState.CLOSED
        self._pending.clear()
        self.close()

    def _cmd_oper(self, message: IrcMessage) -> None:
        user = self.user
        assert user is not None
        name, password = message.params[0], message.params[1]
        if self.service.oper(user, name, password):
            self.reply(RPL_YOUREOPER, "You are now an IRC operator")
            self.send_from(self.source_of(user.nick), "MODE", user.nick, "+o")
            return
        self.oper_failures += 1
        self.reply(ERR_PASSWDMISMATCH, "Password incorrect")
        if self.oper_failures >= OPER_ATTEMPTS:
            self.drop("Too many failed OPER attempts")
