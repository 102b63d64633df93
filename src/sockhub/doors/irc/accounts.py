"""IRC accounts: SASL (AUTHENTICATE), REGISTER, and NickServ for clients without SASL.

Three ways in, one account book behind ``ChatApi`` (docs/accounts.md):

* **SASL** (IRCv3 ``sasl`` 3.1/3.2; numerics 900-908): ``AUTHENTICATE
  PLAIN`` (RFC 4616: ``authzid NUL authcid NUL password``) or
  ``AUTHENTICATE SCRAM-SHA-256`` (RFC 5802/7677, ``protocols/scram.py``).
  Payloads are base64 in chunks of 400 bytes; a chunk of exactly 400 says
  more follows, ``+`` is an empty chunk, ``*`` aborts (906). Before
  registration the account is kept and applied when the client registers;
  afterwards (3.2) it applies at once.
* **REGISTER** (IRCv3 ``draft/account-registration``):
  ``REGISTER <account|*> <email|*> <password>``, before or after connecting.
* **NickServ** (as Ergo and Atheme answer it): ``/msg NickServ REGISTER
  password``, ``IDENTIFY [account] password``, ``LOGOUT``, ``PASSWD old
  new``, ``DROP password``, ``GHOST nick``, ``REGAIN nick``, ``HELP``; also
  as the ``NS`` command.

A wrong password is told after the delay the chat service gives (per
address, ``services/accounts.py``), on the door's clock; until then a
further attempt from this connection is ignored (SASL) or refused
(NickServ), so each guess costs the time it is meant to.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING

from sockhub.codec.irc import IrcMessage, serialize
from sockhub.doors.api import LoginResult
from sockhub.doors.owned import NickGuard, regain, watch_nick
from sockhub.hub import HubError, User
from sockhub.hub.names import fold
from sockhub.protocols.base import Timer
from sockhub.protocols.irc.vocabulary import CAP_VALUES
from sockhub.protocols.scram import MECHANISM as SCRAM
from sockhub.protocols.scram import ScramFailure, ScramServer

if TYPE_CHECKING:
    from sockhub.doors.irc.door import IrcDoor

RPL_LOGGEDIN = "900"
RPL_LOGGEDOUT = "901"
RPL_SASLSUCCESS = "903"
ERR_SASLFAIL = "904"
ERR_SASLTOOLONG = "905"
ERR_SASLABORTED = "906"
ERR_SASLALREADY = "907"
RPL_SASLMECHS = "908"
RPL_WHOISACCOUNT = "330"

MECHANISMS = ("PLAIN", SCRAM)
#: sasl 3.1: payloads travel in 400-byte chunks.
CHUNK = 400
#: The longest payload taken whole, base64 (a PLAIN with a 1000-character password
#: fits); past it the exchange fails (904), as irctest's testPlainInfiniteMessages asks.
MAX_PAYLOAD = 4096

NICKSERV = "NickServ"
NICKSERV_SOURCE = "NickServ!NickServ@services."


class AccountState:
    """One connection's SASL exchange, pending login, owned-nick watch and failed OPERs."""

    __slots__ = ("account", "buffer", "generation", "guard", "mechanism", "oper_failures",
                 "pending", "scram", "timer", "tried_nick")

    def __init__(self) -> None:
        self.mechanism: str | None = None
        self.buffer = b""
        self.scram: ScramServer | None = None
        self.account: str | None = None  # logged in by SASL before registration
        self.generation = ""  # of that account (store/accounts.py), checked when applied
        self.pending = False  # a password being checked off the loop
        self.timer: Timer | None = None  # a wrong password waiting to be told
        self.guard: NickGuard | None = None
        self.tried_nick: str | None = None  # a NICK refused before registration
        self.oper_failures = 0  # wrong OPER passwords (registration.cmd_oper)

    def cancel(self) -> None:
        for timer in (self.timer, self.guard):
            if timer is not None:
                timer.cancel()
        self.timer = None
        self.pending = False  # a check under way is not heard


def account_state(door: IrcDoor) -> AccountState:
    """The connection's :class:`AccountState`, made on first use (SASL, NickServ, a
    refused NICK, an owned nick): a client that uses none of them never has one
    (104 B of every idle client, issue 16). Paths that only look read ``door.acct``,
    None until then."""
    state = door.acct
    if state is None:
        state = door.acct = AccountState()
    return state


def _mask(door: IrcDoor) -> str:
    user = door.user
    if user is not None:
        return door.source_of(user.nick)
    nick = door.irc.reg.nick or "*"
    return f"{nick}!{door.irc.reg.username or nick}@{door.host}"


def _logged_in(door: IrcDoor, account: str) -> None:
    door.reply(RPL_LOGGEDIN, _mask(door), account, f"You are now logged in as {account}")


def _login(door: IrcDoor, account: str, generation: str = "") -> None:
    """The account is right: apply it now, or at registration. Raises HubError
    (``account_changed``) if it was dropped or registered again since it was checked."""
    state = account_state(door)
    if door.user is not None:
        door.chat.log_in(door.user, account, generation=generation)
        if state.guard is not None:
            state.guard.check(door.user)
    else:
        if generation and door.chat.account_generation(account) != generation:
            raise HubError("account_changed", f"account {account} changed meanwhile")
        state.account, state.generation = account, generation
    _logged_in(door, account)


def after_registration(door: IrcDoor, user: User) -> None:
    """Registration completed: apply a SASL login, and watch the nick."""
    state = door.acct
    if state is not None:  # else no SASL, no refused NICK: nothing to apply
        if state.account is not None:
            try:  # dropped or registered again since SASL: not this account any more
                door.chat.log_in(user, state.account, generation=state.generation)
            except HubError as exc:
                door.emit(door.line("NOTICE", user.nick, str(exc)))
                door.reply(RPL_LOGGEDOUT, door.source_of(user.nick), "You are now logged out")
            state.account = None
        if state.mechanism is not None:  # sasl 3.1: registered mid-exchange aborts it
            _end(door)
            door.reply(ERR_SASLABORTED, "SASL authentication aborted")
    nick_changed(door, user)


def settling(door: IrcDoor) -> bool:
    """Is a SASL answer still being checked, or a wrong one still to be told?

    Before registration the door reads no further line until it is: a
    client may send ``CAP END`` (and a PING) right after its last
    ``AUTHENTICATE`` (irctest's bouncer tests do), and lines are processed
    in the order sent, so the login comes first (the check runs off the
    loop) rather than registering without the account (and, with
    multiclient, being refused the nick its other connection holds).
    """
    state = door.acct
    return door.user is None and state is not None and (
        state.pending or state.timer is not None)


def _settled(door: IrcDoor) -> None:
    """The verdict was told: the lines held meanwhile (``settling``) are read."""
    if not settling(door):
        door.resume_input()


def connection_lost(door: IrcDoor) -> None:
    """The client hung up: stop the timers, forget an exchange."""
    _end(door)
    if door.acct is not None:
        door.acct.cancel()


def nick_changed(door: IrcDoor, user: User) -> None:
    """``user`` holds a new nick (or registered, or logged out): watch it if it is owned."""
    state = door.acct
    guard = watch_nick(None if state is None else state.guard, door.chat, user,
                       lambda: _nick_guard(door))
    if guard is not None:  # made now, or watching already
        account_state(door).guard = guard


def _nick_guard(door: IrcDoor) -> NickGuard:
    """The connection's NickGuard, made when its nick is first someone else's (owned.py)."""
    state = account_state(door)
    return NickGuard(door.chat, door.clock, lambda text: _nickserv_says(door, text),
                     "/msg NickServ IDENTIFY password", busy=lambda: state.pending)


# SASL ------------------------------------------------------------------------------


def cmd_authenticate(door: IrcDoor, message: IrcMessage) -> None:
    state = account_state(door)
    arg = message.params[0]
    if state.timer is not None or state.pending:
        return  # a wrong answer is still to be told, or being checked: nothing until then
    if arg == "*":
        if state.mechanism is not None:
            _end(door)
            door.reply(ERR_SASLABORTED, "SASL authentication aborted")
        else:
            door.reply(ERR_SASLFAIL, "SASL authentication failed")
        return
    if state.mechanism is None:
        if (door.user is not None and door.user.account) or state.account is not None:
            door.reply(ERR_SASLALREADY, "You have already authenticated using SASL")
            return
        mechanism = arg.upper()
        if mechanism not in MECHANISMS:
            door.reply(RPL_SASLMECHS, ",".join(MECHANISMS), "are available SASL mechanisms")
            door.reply(ERR_SASLFAIL, "SASL authentication failed")
            return
        state.mechanism, state.buffer = mechanism, b""
        door.emit(serialize("AUTHENTICATE", ("+",)))  # no source, as Ergo sends it
        return
    if len(arg) > CHUNK:
        _end(door)
        door.reply(ERR_SASLTOOLONG, "SASL message too long")
        return
    if arg != "+":
        state.buffer += arg.encode("ascii", "replace")
        if len(state.buffer) > MAX_PAYLOAD:
            _end(door)
            door.reply(ERR_SASLFAIL, "SASL authentication failed")
            return
        if len(arg) == CHUNK:
            return  # more to come
    try:
        payload = base64.b64decode(state.buffer, validate=True)
    except (binascii.Error, ValueError):
        _end(door)  # no password was tried: no delay
        door.reply(ERR_SASLFAIL, "SASL authentication failed")
        return
    state.buffer = b""
    if state.mechanism == "PLAIN":
        _plain(door, payload)
    else:
        _scram(door, payload)


def _end(door: IrcDoor) -> None:
    """The exchange is over: forget it (it holds no limiter slot between messages)."""
    state = door.acct
    if state is not None:
        state.mechanism, state.scram, state.buffer = None, None, b""


def _plain(door: IrcDoor, payload: bytes) -> None:
    parts = payload.split(b"\0")
    if len(parts) != 3:
        _end(door)
        door.reply(ERR_SASLFAIL, "SASL authentication failed")
        return
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        _end(door)
        door.reply(ERR_SASLFAIL, "SASL authentication failed")
        return
    if authzid and authzid.casefold() != authcid.casefold():
        _end(door)  # no one may act as another account here
        door.reply(ERR_SASLFAIL, "SASL authentication failed")
        return
    state = account_state(door)
    state.mechanism, state.pending = None, True

    def checked(result: LoginResult) -> None:
        if not state.pending:
            return  # hung up meanwhile
        state.pending = False
        if result.account is not None:
            _sasl_success(door, result.account, result.generation)
        elif result.refusal is not None:
            door.emit(door.line("NOTICE", door.nick, result.refusal))
            door.reply(ERR_SASLFAIL, "SASL authentication failed")
        else:
            _later(door, result.delay,
                   lambda: door.reply(ERR_SASLFAIL, "SASL authentication failed"))
        _settled(door)
        door.wake()

    door.chat.account_identify_later(authcid, password, address=door.info.peer, then=checked)


def _scram(door: IrcDoor, payload: bytes) -> None:
    state = account_state(door)
    scram = state.scram
    if scram is None:
        state.scram = scram = door.chat.scram_server()
        try:
            answer = scram.first(payload)
        except ScramFailure:  # malformed: no password was tried
            _end(door)
            door.reply(ERR_SASLFAIL, "SASL authentication failed")
            return
        # The registration whose keys this exchange uses: checked at success.
        state.generation = door.chat.account_generation(scram.account or "")
    elif scram.step == 1:
        # The proof is the guess: it alone takes a limiter slot, for as long as
        # it is checked (or, wrong, told), so no exchange left half-way, stalled
        # or hung up, holds one and keeps the owner out.
        refusal = door.chat.account_admit(door.info.peer)
        if refusal is not None:
            _end(door)
            door.emit(door.line("NOTICE", door.nick, refusal))
            door.reply(ERR_SASLFAIL, "SASL authentication failed")
            return
        try:
            answer = scram.final(payload)
        except ScramFailure:
            _fail(door, scram.account or "")
            return
        door.chat.account_release(door.info.peer)
    else:  # the client's empty answer to the server-final-message
        account = door.chat.account_owner(scram.account or "")
        generation = state.generation
        _end(door)
        if account is None or door.chat.account_generation(account) != generation:
            door.reply(ERR_SASLFAIL, "SASL authentication failed")  # dropped meanwhile
            return
        _sasl_success(door, account, generation)
        return
    door.emit(serialize("AUTHENTICATE", (base64.b64encode(answer).decode("ascii"),)))


def _fail(door: IrcDoor, name: str) -> None:
    """A wrong SCRAM proof (its slot taken by ``account_admit``): told after the delay."""
    _end(door)
    delay = door.chat.account_failed(name, door.info.peer)
    _later(door, delay, lambda: door.reply(ERR_SASLFAIL, "SASL authentication failed"))


def _sasl_success(door: IrcDoor, account: str, generation: str = "") -> None:
    try:
        _login(door, account, generation)
    except HubError as exc:  # dropped or registered again while it was checked
        door.emit(door.line("NOTICE", door.nick, str(exc)))
        door.reply(ERR_SASLFAIL, "SASL authentication failed")
        return
    door.reply(RPL_SASLSUCCESS, "SASL authentication successful")


def _later(door: IrcDoor, delay: float, tell: Callable[[], None]) -> None:
    state = account_state(door)

    def told() -> None:
        state.timer = None
        tell()
        _settled(door)
        door.wake()

    state.timer = door.clock.call_later(delay, told)


# REGISTER (draft/account-registration) ---------------------------------------------


def cap_values(door: IrcDoor) -> dict[str, str]:
    """``CAP LS 302`` values: no ``before-connect`` when only connected clients register."""
    if door.chat.settings.accounts_after_connect:
        return {**CAP_VALUES, "draft/account-registration": ""}
    return CAP_VALUES


def cmd_register(door: IrcDoor, message: IrcMessage) -> None:
    params = message.params
    name, password = params[0], params[2]
    if name == "*":
        name = door.user.nick if door.user is not None else (
            door.irc.reg.nick or (door.acct.tried_nick if door.acct is not None else None)
            or "")
        if not name:
            door.emit(door.line("FAIL", "REGISTER", "NEED_NICK", "*",
                                "Send NICK before REGISTER"))
            return
    if door.user is None and door.chat.settings.accounts_after_connect:
        door.emit(door.line("FAIL", "REGISTER", "COMPLETE_CONNECTION_REQUIRED", name,
                            "Finish connecting before you register"))
        return
    if (door.user is not None and door.user.account) or (
            door.acct is not None and door.acct.account is not None):
        door.emit(door.line("FAIL", "REGISTER", "ALREADY_AUTHENTICATED", name,
                            "You are already logged in"))
        return
    holder = door.chat.find_user(name)
    if holder is not None and holder is not door.user:  # no land grabs from a nick's holder
        door.emit(door.line("FAIL", "REGISTER", "ACCOUNT_EXISTS", name,
                            "That nick is in use"))
        return
    nick = door.user.nick if door.user is not None else door.irc.reg.nick
    if nick is None or fold(name) != fold(nick):  # no custom-account-name: nicks are owned
        door.emit(door.line("FAIL", "REGISTER", "ACCOUNT_NAME_MUST_BE_NICK", name,
                            "The account name must be your nick"))
        return
    resume = door.hold()  # hashed off the loop; this client's next commands wait
    user = door.user

    def registered(result: str | HubError) -> None:
        if isinstance(result, HubError):
            code = _REGISTER_FAILS.get(result.code, "TEMPORARILY_UNAVAILABLE")
            door.emit(door.line("FAIL", "REGISTER", code, name, str(result)))
            return
        door.emit(door.line("REGISTER", "SUCCESS", result, "Account created"))
        if door.user is user:
            _login(door, result)

    door.chat.account_register_later(user, name, password, address=door.info.peer,
                                     then=lambda result: resume(lambda: registered(result)))


_REGISTER_FAILS = {
    "account_exists": "ACCOUNT_EXISTS",
    "account_invalid": "BAD_ACCOUNT_NAME",
    "account_weak": "WEAK_PASSWORD",
    "account_disabled": "TEMPORARILY_UNAVAILABLE",
    "account_limit": "TEMPORARILY_UNAVAILABLE",
}


# NickServ -----------------------------------------------------------------------------


def _nickserv_says(door: IrcDoor, text: str) -> None:
    door.send_from(NICKSERV_SOURCE, "NOTICE", door.nick, text)
    door.wake()


def cmd_nickserv(door: IrcDoor, message: IrcMessage) -> None:
    """``NS``/``NICKSERV`` commands: the words after the command, as NickServ reads them."""
    nickserv(door, " ".join(message.params))


def nickserv(door: IrcDoor, text: str) -> None:
    """A message to NickServ: answered here, never delivered to a user of that name."""
    words = text.split()
    verb = words[0].upper() if words else "HELP"
    args = words[1:]

    def say(text: str) -> None:
        _nickserv_says(door, text)

    user = door.user
    assert user is not None
    try:
        if verb == "REGISTER" and len(args) in (1, 2):  # REGISTER password [email]
            resume = door.hold()  # hashed off the loop; this client's next commands wait

            def registered(result: str | HubError) -> None:
                if isinstance(result, HubError):
                    say(str(result))
                elif door.user is user:
                    door.chat.log_in(user, result)
                    say(f"Account {result} registered; you are logged in")
                    _logged_in(door, result)

            door.chat.account_register_later(
                user, user.nick, args[0], address=door.info.peer,
                then=lambda result: resume(lambda: registered(result)))
        elif verb == "IDENTIFY" and len(args) in (1, 2):
            name, password = (args[0], args[1]) if len(args) == 2 else (user.nick, args[0])
            _identify(door, name, password,
                      lambda account, generation: _login(door, account, generation))
        elif verb == "LOGOUT" and not args:
            if user.account is None:
                say("You are not logged in")
                return
            door.chat.log_out(user)
            door.reply(RPL_LOGGEDOUT, door.source_of(user.nick), "You are now logged out")
            nick_changed(door, user)
        elif verb == "PASSWD" and len(args) == 2 and user.account is not None:
            account = user.account

            def change(_: str, __: str) -> None:
                # Told later, as the IDENTIFY before it is: no hold here.
                door.chat.account_set_password_later(user, args[1], then=changed)

            def changed(error: HubError | None) -> None:
                if door.user is user:
                    say(str(error) if error is not None
                        else f"The password of {account} is changed")

            _identify(door, account, args[0], change)
        elif verb == "DROP" and len(args) == 1 and user.account is not None:
            account = user.account

            def drop(_: str, __: str) -> None:
                door.chat.account_drop(user)
                say(f"Account {account} is dropped")
                door.reply(RPL_LOGGEDOUT, door.source_of(user.nick), "You are now logged out")

            _identify(door, account, args[0], drop)
        elif verb in ("GHOST", "REGAIN") and len(args) == 1:
            say(regain(door.chat, user, args[0], ghost=verb == "GHOST"))
        elif verb == "RESETPASS" and len(args) == 2:
            resume = door.hold()  # hashed off the loop; this client's next commands wait

            def reset(error: HubError | None) -> None:
                say(str(error) if error is not None else f"The password of {args[0]} is set")

            door.chat.account_reset_later(user, args[0], args[1],
                                          then=lambda error: resume(lambda: reset(error)))
        elif verb in ("PASSWD", "DROP") and user.account is None:
            say("Log in to an account first: IDENTIFY password")
        else:
            for line in NICKSERV_HELP:
                say(line)
    except HubError as exc:
        say(str(exc))


NICKSERV_HELP = (
    "NickServ commands (docs/accounts.md):",
    "REGISTER <password>          register your nick as an account",
    "IDENTIFY [account] <password> log in",
    "LOGOUT                       log out",
    "PASSWD <old> <new>           change your password",
    "DROP <password>              delete your account",
    "REGAIN <nick>                take your nick back from whoever holds it",
    "GHOST <nick>                 disconnect whoever holds your nick",
    "RESETPASS <account> <new>    set an account's password (operators)",
)


def _identify(door: IrcDoor, name: str, password: str,
              then: Callable[[str, str], None]) -> None:
    """Check a password off the loop; ``then(account, generation)`` when right."""
    state = account_state(door)
    if state.timer is not None or state.pending:
        _nickserv_says(door, "Wait for the answer to your last attempt")
        return
    state.pending = True
    user = door.user

    def checked(result: LoginResult) -> None:
        if not state.pending or door.user is not user:
            return  # hung up meanwhile
        state.pending = False
        if result.refusal is not None:
            _nickserv_says(door, result.refusal)
        elif result.account is None:
            _later(door, result.delay,
                   lambda: _nickserv_says(door, "Invalid account name or password"))
        else:
            try:
                then(result.account, result.generation)
            except HubError as exc:
                _nickserv_says(door, str(exc))
        door.wake()

    door.chat.account_identify_later(name, password, address=door.info.peer, then=checked)
