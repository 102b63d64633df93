"""The IRC door's command table: each command's handler, least parameters and flood cost.

One row per command (ergo's ``irc/commands.go``); the protocol
(``protocols/irc/protocol.py``) checks registration state and arity
against it before the door calls the handler, so no handler re-checks.
"Where is JOIN handled" is answered here: ``channels.cmd_join``.
"""

from __future__ import annotations

from sockhub.doors.irc import (
    accounts,
    channels,
    chanserv,
    monitor,
    queries,
    readmarker,
    registration,
)
from sockhub.protocols.irc.protocol import CommandSpec

COMMANDS: dict[str, CommandSpec] = {
    # Registration and connection (RFC 2812 §3.1, §3.7; IRCv3 CAP)
    "CAP": CommandSpec(registration.cmd_cap, 1, pre_reg=True),
    "PASS": CommandSpec(registration.cmd_pass, 1, pre_reg=True),
    # 431 ERR_NONICKNAMEGIVEN, not 461
    "NICK": CommandSpec(registration.cmd_nick, 0, pre_reg=True),
    "USER": CommandSpec(registration.cmd_user, 4, pre_reg=True),
    "PING": CommandSpec(registration.cmd_ping, 1, pre_reg=True),
    # 409 ERR_NOORIGIN; answering our PING costs nothing
    "PONG": CommandSpec(registration.cmd_pong, 0, pre_reg=True, cost=0.0),
    "QUIT": CommandSpec(registration.cmd_quit, 0, pre_reg=True),
    "OPER": CommandSpec(registration.cmd_oper, 2),
    "SETNAME": CommandSpec(registration.cmd_setname, 1),  # IRCv3 setname
    # Accounts (IRCv3 sasl, draft/account-registration; NickServ as Ergo answers it)
    "AUTHENTICATE": CommandSpec(accounts.cmd_authenticate, 1, pre_reg=True),
    "REGISTER": CommandSpec(accounts.cmd_register, 3, pre_reg=True),
    "NS": CommandSpec(accounts.cmd_nickserv, 0),
    "NICKSERV": CommandSpec(accounts.cmd_nickserv, 0),
    # Registered rooms (ChanServ as Ergo answers it; docs/accounts.md)
    "CS": CommandSpec(chanserv.cmd_chanserv, 0),
    "CHANSERV": CommandSpec(chanserv.cmd_chanserv, 0),
    # Channels (§3.2)
    "JOIN": CommandSpec(channels.cmd_join, 1),
    "PART": CommandSpec(channels.cmd_part, 1),
    "TOPIC": CommandSpec(channels.cmd_topic, 1),
    "NAMES": CommandSpec(channels.cmd_names, 0),
    "LIST": CommandSpec(channels.cmd_list, 0),
    "INVITE": CommandSpec(channels.cmd_invite, 0),  # alone: the invite list
    "KICK": CommandSpec(channels.cmd_kick, 2),
    "MODE": CommandSpec(channels.cmd_mode, 1),
    # Messages (§3.3; IRCv3 message-tags); 411 ERR_NORECIPIENT / 412 ERR_NOTEXTTOSEND
    # PRIVMSG #channel :text, no tags: the protocol's fast path (issue 16)
    "PRIVMSG": CommandSpec(channels.cmd_privmsg, 0, fast=channels.privmsg_channel),
    "NOTICE": CommandSpec(channels.cmd_notice, 0),
    "TAGMSG": CommandSpec(channels.cmd_tagmsg, 1),
    # Queries (§3.4, §3.6, §4)
    "WHO": CommandSpec(queries.cmd_who, 1),
    "WHOIS": CommandSpec(queries.cmd_whois, 0),  # 431 ERR_NONICKNAMEGIVEN
    "WHOWAS": CommandSpec(queries.cmd_whowas, 0),  # 431 ERR_NONICKNAMEGIVEN
    "KILL": CommandSpec(queries.cmd_kill, 1),
    "WALLOPS": CommandSpec(queries.cmd_wallops, 1),  # RFC 2812 §4.7
    "AWAY": CommandSpec(queries.cmd_away, 0),
    "ISON": CommandSpec(queries.cmd_ison, 1),
    "USERHOST": CommandSpec(queries.cmd_userhost, 1),
    "LUSERS": CommandSpec(queries.cmd_lusers, 0),
    "MOTD": CommandSpec(queries.cmd_motd, 0),
    "VERSION": CommandSpec(queries.cmd_version, 0),
    "TIME": CommandSpec(queries.cmd_time, 0),
    "INFO": CommandSpec(queries.cmd_info, 0),
    "HELP": CommandSpec(queries.cmd_help, 0),
    "HELPOP": CommandSpec(queries.cmd_help, 0),  # the name some servers give HELP
    "LINKS": CommandSpec(queries.cmd_links, 0),
    "CHATHISTORY": CommandSpec(queries.cmd_chathistory, 0),  # FAIL CHATHISTORY NEED_MORE_PARAMS
    "MARKREAD": CommandSpec(readmarker.cmd_markread, 0),  # FAIL MARKREAD NEED_MORE_PARAMS
    "MONITOR": CommandSpec(monitor.cmd_monitor, 1),  # IRCv3 monitor, extended-monitor
}
