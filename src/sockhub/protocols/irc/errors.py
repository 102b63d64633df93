"""The hub's refusals in IRC's words: each :class:`~sockhub.hub.HubError` code to its numeric.

The numerics are the ones RFC 2812 §5.2 and the Modern IRC document name for
each situation; anything the table does not know becomes ``400
ERR_UNKNOWNERROR`` with the hub's own text.
"""

from __future__ import annotations

from sockhub.codec.irc import (
    ERR_BADCHANMASK,
    ERR_BADCHANNELKEY,
    ERR_BANNEDFROMCHAN,
    ERR_CANNOTSENDTOCHAN,
    ERR_CHANNELISFULL,
    ERR_CHANOPRIVSNEEDED,
    ERR_ERRONEUSNICKNAME,
    ERR_INVITEONLYCHAN,
    ERR_NICKNAMEINUSE,
    ERR_NOSUCHCHANNEL,
    ERR_NOSUCHNICK,
    ERR_NOTEXTTOSEND,
    ERR_NOTONCHANNEL,
    ERR_TOOMANYCHANNELS,
    ERR_UNKNOWNERROR,
    ERR_USERNOTINCHANNEL,
    ERR_USERONCHANNEL,
)
from sockhub.hub import HubError
from sockhub.hub.names import room_problem
from sockhub.protocols.irc.protocol import Refused

#: Codes whose numeric names the channel the command was about.
_ABOUT_CHANNEL = {
    "no_such_room": (ERR_NOSUCHCHANNEL, "No such channel"),
    "invalid_room": (ERR_NOSUCHCHANNEL, "No such channel"),
    "not_operator": (ERR_CHANOPRIVSNEEDED, "You're not channel operator"),
    "banned": (ERR_BANNEDFROMCHAN, "Cannot join channel (+b)"),
    "invite_only": (ERR_INVITEONLYCHAN, "Cannot join channel (+i)"),
    "bad_password": (ERR_BADCHANNELKEY, "Cannot join channel (+k)"),
    "full": (ERR_CHANNELISFULL, "Cannot join channel (+l)"),
    "too_many_rooms": (ERR_TOOMANYCHANNELS, "You have joined too many channels"),
}
#: Codes whose numeric names the nick the command was about.
_ABOUT_NICK = {
    "no_such_nick": (ERR_NOSUCHNICK, "No such nick/channel"),
    "invalid_nick": (ERR_ERRONEUSNICKNAME, "Erroneous nickname"),
    "nick_in_use": (ERR_NICKNAMEINUSE, "Nickname is already in use"),
}


def hub_error_reply(command: str, exc: HubError, channel: str = "*") -> Refused:
    """The numeric that answers ``exc``, raised by the hub while doing ``command``.

    ``channel`` is the channel the command was about, for numerics that name one.
    """
    code, target = exc.code, exc.target or "*"
    if code == "invalid_room" and channel.startswith("#"):
        # Modern IRC: ERR_BADCHANMASK "indicates the supplied channel name is
        # not a valid"; the text says why (CHANNELLEN, a forbidden character).
        # A name without a CHANTYPES prefix is no channel at all: 403 below.
        why = room_problem(channel) or str(exc)
        return Refused(ERR_BADCHANMASK, (channel, f"Bad channel name: {why}"))
    if code in _ABOUT_NICK:
        numeric, text = _ABOUT_NICK[code]
        return Refused(numeric, (target, text))
    if code in _ABOUT_CHANNEL:
        numeric, text = _ABOUT_CHANNEL[code]
        return Refused(numeric, (channel, text))
    if code == "not_in_room" and exc.target:
        return Refused(ERR_USERNOTINCHANNEL, (target, channel, "They aren't on that channel"))
    if code == "not_in_room":
        return Refused(ERR_NOTONCHANNEL, (channel, "You're not on that channel"))
    if code == "already_in_room":
        return Refused(ERR_USERONCHANNEL, (target, channel, "is already on channel"))
    if code == "cannot_send":
        return Refused(ERR_CANNOTSENDTOCHAN, (channel, f"Cannot send to channel: {exc}"))
    if code == "invalid_text" and str(exc) == "nothing to send":
        return Refused(ERR_NOTEXTTOSEND, ("No text to send",))
    return Refused(ERR_UNKNOWNERROR, (command, str(exc)))
