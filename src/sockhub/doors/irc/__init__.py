"""The IRC door: any IRC client joins the same rooms as nc and browser users.

``door.py`` is one connection (engine side, output, delivery of hub
events); ``commands.py`` is the command table; the handlers are plain
functions of the door and the message, by concern: ``registration.py``,
``channels.py``, ``queries.py``. The protocol they speak is
``sockhub.protocols.irc``; what they may ask of the chat service is
``sockhub.doors.api.ChatApi``.
"""

from sockhub.doors.irc.door import INTERNAL_ERROR, IrcDoor, WebSocketIrcDoor, irc_refusal

__all__ = ["INTERNAL_ERROR", "IrcDoor", "WebSocketIrcDoor", "irc_refusal"]
