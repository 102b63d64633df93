"""ChanServ: registered rooms for IRC clients (docs/accounts.md), as Ergo answers it.

``/msg ChanServ REGISTER #room``, ``DROP``, ``INFO``, ``AMODE #room +o|-o
account``, ``OP #room [nick]``, ``TRANSFER #room account``, ``HELP``; also
as the ``CS``/``CHANSERV`` commands. Like NickServ (``accounts.py``), ChanServ
is the server itself: no user may take the nick, and its answers are
NOTICEs from ``ChanServ!ChanServ@services.``. The rules (who may register,
who gets ``+o``) are the chat service's (``services/rooms.py``), the same
at every door.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sockhub.codec.irc import IrcMessage
from sockhub.hub import HubError

if TYPE_CHECKING:
    from sockhub.doors.irc.door import IrcDoor

CHANSERV = "ChanServ"
CHANSERV_SOURCE = "ChanServ!ChanServ@services."


def _says(door: IrcDoor, text: str) -> None:
    door.send_from(CHANSERV_SOURCE, "NOTICE", door.nick, text)


def cmd_chanserv(door: IrcDoor, message: IrcMessage) -> None:
    """``CS``/``CHANSERV`` commands: the words after the command, as ChanServ reads them."""
    chanserv(door, " ".join(message.params))


def chanserv(door: IrcDoor, text: str) -> None:
    """A message to ChanServ: answered here, never delivered to a user of that name."""
    words = text.split()
    verb = words[0].upper() if words else "HELP"
    args = words[1:]
    user = door.user
    assert user is not None
    chat = door.chat
    try:
        if verb == "REGISTER" and len(args) == 1:
            registration = chat.room_register(user, args[0])
            _says(door, f"{registration.name} is registered to your account "
                        f"{registration.founder}")
        elif verb == "DROP" and len(args) == 1:
            registration = chat.room_drop(user, args[0])
            _says(door, f"{registration.name} is no longer registered")
        elif verb == "INFO" and len(args) == 1:
            registration = chat.room_info(args[0])
            when = datetime.fromtimestamp(registration.registered, UTC)
            _says(door, f"{registration.name}: founder {registration.founder}, registered "
                        f"{when:%Y-%m-%d %H:%M:%S} UTC")
            operators = ", ".join(registration.operators.values()) or "none"
            _says(door, f"{registration.name}: operator accounts: {operators}")
        elif verb == "AMODE" and len(args) == 1:
            registration = chat.room_info(args[0])
            for account in registration.operators.values():
                _says(door, f"{registration.name}: +o {account}")
            _says(door, f"{registration.name}: end of the operator accounts "
                        f"({len(registration.operators)})")
        elif verb == "AMODE" and len(args) == 3 and args[1] in ("+o", "-o"):
            add = args[1] == "+o"
            account = chat.room_operator(user, args[0], args[2], add=add)
            _says(door, f"{account} is {'now' if add else 'no longer'} an operator of "
                        f"{chat.room_info(args[0]).name}")
        elif verb == "AMODE" and len(args) == 3:
            _says(door, "AMODE keeps only operators by account: +o or -o")
        elif verb == "OP" and len(args) in (1, 2):
            target = chat.room_op(user, args[0], args[1] if len(args) == 2 else None)
            _says(door, f"{target.nick} is an operator of {chat.room_info(args[0]).name}")
        elif verb == "TRANSFER" and len(args) == 2:
            account = chat.room_transfer(user, args[0], args[1])
            _says(door, f"{chat.room_info(args[0]).name} now belongs to {account}")
        else:
            for line in CHANSERV_HELP:
                _says(door, line)
    except HubError as exc:
        _says(door, str(exc))
    door.wake()


CHANSERV_HELP = (
    "ChanServ commands (docs/accounts.md):",
    "REGISTER <#room>              register a room you operate to your account",
    "INFO <#room>                  who founded a room, and its operator accounts",
    "AMODE <#room> [+o|-o account] list, add or remove operator accounts (founder)",
    "OP <#room> [nick]             give operator status (operator accounts)",
    "TRANSFER <#room> <account>    give the room to another account (founder)",
    "DROP <#room>                  unregister a room (founder)",
)
