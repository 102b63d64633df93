"""The JSON chat protocol, version 1 (docs/web-protocol.md), between a WebSocket and ChatApi.

:class:`JsonChat` is one browser user: it takes the text of each frame,
checks it field by field, makes the ChatApi call and answers with JSON
objects; as the user's hub ``Member`` it turns hub events into the same
objects. It knows no socket, no HTTP and no WebSocket framing: what it
says leaves through its :class:`JsonPeer` (the web door, or a test), as
text. Every string in the output is plain data; the page inserts it as
text, never as HTML, and the hub has already cleaned control characters.

An event renders the same for every viewer, so the last rendering is
shared by every browser it is delivered to (as the line and IRC doors
share theirs), and the door can frame it once.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any, ClassVar
from typing import Protocol as TypingProtocol

from sockhub import metrics
from sockhub.doors.api import ChatApi
from sockhub.doors.flood import FloodGuard, Verdict
from sockhub.doors.owned import NickGuard, watch_nick
from sockhub.hub import HubError, Member, Message, User
from sockhub.hub.events import (
    HubEvent,
    Joined,
    Kicked,
    MessageRun,
    NickChanged,
    Parted,
    Private,
    Quit,
    TopicChanged,
    hostmask,
)
from sockhub.hub.hub import MESSAGE_MAX
from sockhub.hub.names import fold
from sockhub.hub.sessions import acted_elsewhere, deliver_each
from sockhub.logs import RateLimitedLog
from sockhub.protocols.base import Clock

log = logging.getLogger("sockhub.web")
_floods = RateLimitedLog(log)
#: Messages delivered to web-door users, for ``GET /metrics``.
_counts = metrics.door("web")

#: The door's one cache, shared by every browser: the last hub event rendered,
#: its text ("" when it shows nothing) and whether it is a room message (whose
#: other recipients get that text and nothing else: JsonChat.deliver's fast
#: path). Module globals, as the IRC door's cache: the cheaper read.
_rendered_event: object = None
_rendered_text = ""
_rendered_message = False
#: The same for the last run of room messages (deliver_run): each message's text.
_run: object = None
_run_texts: tuple[str, ...] = ()

VERSION = 1
#: The largest frame a client may send, in bytes (larger: close 1009).
FRAME_MAX = 16 * 1024
#: The most messages one ``history`` request returns.
HISTORY_LIMIT = 200
#: The longest ``id`` string a client may tag a message with.
ID_MAX = 64
#: The largest message id (SQLite's INTEGER is 64-bit signed).
MESSAGE_ID_MAX = 2**63 - 1

#: WebSocket close codes (RFC 6455 §7.4.1).
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011

JsonObject = dict[str, Any]


class JsonPeer(TypingProtocol):
    """Where a :class:`JsonChat` sends its frames: the web door, or a test."""

    def send_text(self, text: str) -> None:
        """Queue one text frame (an answer to what the peer just passed on)."""

    def push_text(self, text: str) -> None:
        """Queue one text frame of a hub event, from outside any call from the peer.

        The peer sees it written (it wakes its engine); the same str is
        pushed to every browser of a fan-out, so the peer may frame it once.
        """

    def push_texts(self, texts: tuple[str, ...]) -> None:
        """Queue one text frame per text, in order, as :meth:`push_text` would each.

        A run of room messages: the same tuple is pushed to every browser of
        the room, so the peer may frame it once.
        """

    def close_ws(self, code: int, reason: str) -> None:
        """Send a close frame and close."""

    def wake(self) -> None:
        """Output was queued outside a call from the peer (a hub event)."""


class FieldError(Exception):
    """A message's field is missing, mistyped or out of range: ``bad_field``."""


def dumps(obj: JsonObject) -> str:
    """Compact JSON, non-ASCII kept as is (the frame is UTF-8 anyway); no NaN or Infinity."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


#: json's C scanner as ``json.loads`` ends up calling it (default decoder settings).
_scan: Callable[[str, int], tuple[Any, int]] = vars(json.decoder.JSONDecoder())["scan_once"]


def loads(text: str) -> Any:
    """``json.loads(text)``, one JSON value and nothing around it read by the C scanner at once.

    ``json.loads`` goes through ``decode`` and ``raw_decode`` (two whitespace
    regexes, three Python calls) for every client frame (cProfile, issue 16:
    ~10% of a message's cost in the door); anything the scanner alone does not
    take whole (whitespace around the value, extra data, an error) is
    ``json.loads``' to judge, so the value and the error are the same.
    """
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)  # raises JSONDecodeError, with json's message
    if end != len(text):
        return json.loads(text)
    return value


def _encodable(value: str) -> bool:
    """Whether ``value`` is text UTF-8 can carry: JSON's ``"\\ud800"`` (a lone surrogate) is not."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _ts(ts: float) -> float:
    return round(ts, 3)


#: JSON's string encoder as ``dumps`` uses it with ``ensure_ascii=False``: quotes,
#: backslashes and control characters escaped (RFC 8259 §7), the rest kept.
_string: Callable[[str], str] = json.encoder.encode_basestring


#: What stands between a room message's id and its text (room, nick, source), by
#: room and sender: the same for every message a sender says in a room, so
#: message_json escapes and formats it once, not per message (three of its four
#: string escapes and the hostmask; cProfile, issue 16). Cleared when full.
_middles: dict[tuple[str, str, str, str], str] = {}
MIDDLES_MAX = 4096


def message_json(message: Message) -> str:
    """``dumps({"type": "message", **message_fields(message)})``, formatted directly.

    Rendered once per room message (not per recipient), but on the path of
    every one: about a third of ``dumps``' cost, for the same text (a test
    holds the two equal for any field values). A timestamp that is not
    finite has no JSON: ``dumps`` refuses it, as before.
    """
    ts = message.ts
    if type(ts) is float and -1e12 < ts < 1e12:
        # repr(round(ts, 3)) from one format: both round the exact binary value
        # to 3 decimals (half to even), and a decimal of at most 15 significant
        # digits is the shortest repr of its double (DBL_DIG), trailing zeros
        # aside. Half the cost of round() and repr() (py-spy: _ts ~2% at N=10).
        stamp = f"{ts:.3f}".rstrip("0")
        if stamp[-1] == ".":
            stamp += "0"
    else:
        rounded = _ts(ts)
        if not math.isfinite(rounded):
            return dumps({"type": "message", **message_fields(message)})
        stamp = repr(rounded)
    ident = "null" if message.id is None else repr(message.id)
    key = (message.room, message.nick, message.username, message.address)
    middle = _middles.get(key)
    if middle is None:
        if len(_middles) >= MIDDLES_MAX:
            _middles.clear()
        middle = _middles[key] = (
            f',"room":{_string(message.room)},"nick":{_string(message.nick)},'
            f'"source":{_string(hostmask(message.nick, message.username, message.address))},'
            '"text":')
    return (f'{{"type":"message","id":{ident}{middle}{_string(message.text)},'
            f'"action":{"true" if message.action else "false"},'
            f'"notice":{"true" if message.notice else "false"},"ts":{stamp}}}')


def message_fields(message: Message) -> JsonObject:
    """A room message as the ``message`` object (and history entries) carry it."""
    return {"id": message.id, "room": message.room, "nick": message.nick,
            "source": hostmask(message.nick, message.username, message.address),
            "text": message.text, "action": message.action, "notice": message.notice,
            "ts": _ts(message.ts)}


def private_fields(message: Message) -> JsonObject:
    """A kept private message (``room`` is its target) as ``history`` with a nick carries it."""
    return {"id": message.id, "from": message.nick, "to": message.room, "text": message.text,
            "action": message.action, "notice": message.notice, "ts": _ts(message.ts)}


def event_object(event: HubEvent) -> JsonObject | None:
    """The server message for a hub event, or None for those v1 does not show.

    Modes, bans, away changes, invitations and metadata-only signals have
    no message in version 1.
    """
    kind = type(event)
    if kind is Message:
        assert isinstance(event, Message)
        return {"type": "message", **message_fields(event)}
    if kind is Private:
        assert isinstance(event, Private)
        obj: JsonObject = {"type": "private", "from": event.sender, "to": event.target,
                           "text": event.text, "action": event.action,
                           "notice": event.notice, "ts": _ts(event.ts)}
        if event.msgid.isdigit():  # kept for an account: its history id
            obj["id"] = int(event.msgid)
        return obj
    if kind is Joined:
        assert isinstance(event, Joined)
        return {"type": "joined", "room": event.room, "nick": event.nick, "ts": _ts(event.ts)}
    if kind is Parted:
        assert isinstance(event, Parted)
        return {"type": "parted", "room": event.room, "nick": event.nick,
                "reason": event.reason, "ts": _ts(event.ts)}
    if kind is Kicked:
        assert isinstance(event, Kicked)
        return {"type": "kicked", "room": event.room, "nick": event.nick, "by": event.by,
                "reason": event.reason, "ts": _ts(event.ts)}
    if kind is Quit:
        assert isinstance(event, Quit)
        return {"type": "quit", "nick": event.nick, "reason": event.reason, "ts": _ts(event.ts)}
    if kind is NickChanged:
        assert isinstance(event, NickChanged)
        return {"type": "nick", "old": event.old, "new": event.new, "ts": _ts(event.ts)}
    if kind is TopicChanged:
        assert isinstance(event, TopicChanged)
        return {"type": "topic", "room": event.room, "topic": event.topic, "by": event.nick,
                "ts": _ts(event.ts)}
    return None


# Field checks: each returns the value or raises FieldError naming the field.

def _text(msg: JsonObject, name: str, *, optional: bool = False) -> str | None:
    value = msg.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise FieldError(f"{name} must be a string")
    if not _encodable(value):
        raise FieldError(f"{name} must be Unicode text (no lone surrogates)")
    return value


def _required(msg: JsonObject, name: str) -> str:
    value = _text(msg, name)
    assert value is not None
    return value


def _flag(msg: JsonObject, name: str) -> bool:
    value = msg.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise FieldError(f"{name} must be true or false")
    return value


def _whole(msg: JsonObject, name: str, low: int, high: int | None = None) -> int | None:
    value = msg.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
        high is not None and value > high
    ):
        span = f"{low} to {high}" if high is not None else f"at least {low}"
        raise FieldError(f"{name} must be a whole number, {span}")
    return value


def _message_id(msg: JsonObject) -> str | int | float | None:
    """The client's ``id`` for this message, repeated as ``re``; None if it gave none."""
    value = msg.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FieldError("id must be a string or a number")
    if isinstance(value, str) and len(value) > ID_MAX:
        raise FieldError(f"id must be at most {ID_MAX} characters")
    if isinstance(value, float) and not math.isfinite(value):  # no JSON for NaN, Infinity
        raise FieldError("id must be a string or a number")
    if isinstance(value, str) and not _encodable(value):
        raise FieldError("id must be Unicode text (no lone surrogates)")
    return value


class JsonChat:
    """One browser user of the chat hub, speaking JSON chat v1 (a hub ``Member``)."""

    __slots__ = ("_clock", "_push", "_re", "account", "address", "chat", "closed", "flood",
                 "guard", "peer", "secure", "user")

    #: Its messages are counted under this door in ``GET /metrics``.
    metrics_door: ClassVar[str] = "web"
    #: The page shows every message of its rooms: leaving one moves the account's
    #: read marker to the newest message (docs/accounts.md).
    marks_read: ClassVar[bool] = True

    def __init__(self, chat: ChatApi, peer: JsonPeer, *, address: str = "",
                 secure: bool = False, now: float = 0.0, account: str | None = None,
                 clock: Clock | None = None) -> None:
        self.chat = chat
        self.peer = peer
        self._push = peer.push_text  # bound once: the fan-out calls it per recipient
        self.address = address
        self.secure = secure
        #: The account of the page's login cookie (session.py), logged in at ``hello``.
        self.account = account
        self.user: User | None = None
        self._clock = clock
        #: Owned nicks (doors/owned.py): needs the door's clock for the grace period.
        self.guard: NickGuard | None = None  # made when its nick is someone's (_watch_nick)
        self.closed = False
        settings = chat.settings
        self.flood = (FloodGuard(settings.flood_rate, settings.flood_burst, now)
                      if settings.flood_rate is not None else None)
        self._re: str | int | float | None = None

    # Output -------------------------------------------------------------------

    def send(self, obj: JsonObject) -> None:
        self.peer.send_text(dumps(obj))

    def answer(self, obj: JsonObject) -> None:
        """A direct answer to the message being handled: repeats its ``id`` as ``re``."""
        if self._re is not None:
            obj["re"] = self._re
        self.send(obj)

    def error(self, code: str, message: str) -> None:
        self.answer({"type": "error", "code": code, "message": message})

    def disconnect(self, reason: str) -> None:
        """The service ended this session (an IRC operator's KILL): say why, close.

        The service has already taken the user out of the hub.
        """
        self.user = None
        self.error("killed", reason)
        self.close(CLOSE_POLICY, "killed")

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.peer.close_ws(code, reason)

    # Input --------------------------------------------------------------------

    def receive_text(self, text: str, now: float) -> None:
        """One text frame from the client."""
        if self.closed:
            return
        self._re = None
        if self.flood is not None:
            verdict = self.flood.check(now)
            if verdict != "pass":
                self._flooding(verdict, text)
                return
        try:
            msg = loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            self.error("bad_json", "a frame must be one JSON object")
            return
        if not isinstance(msg, dict):
            self.error("bad_json", "a frame must be one JSON object")
            return
        try:
            self._re = _message_id(msg)
        except FieldError as exc:
            self.error("bad_field", str(exc))
            return
        kind = msg.get("type")
        handler = self.HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self.error("unknown_type", f"no such type: {kind!r}"[:200])
            return
        try:
            if kind == "hello":
                self._hello(msg)
            elif self.user is None:
                self.error("not_registered", "send hello first")
            else:
                handler(self, msg)
        except FieldError as exc:
            self.error("bad_field", str(exc))
        except HubError as exc:
            self.error(exc.code, str(exc))
        finally:
            self._re = None

    def receive_binary(self) -> None:
        """JSON chat is text: a binary frame is not one JSON object."""
        if not self.closed:
            self.error("bad_json", "frames must be text frames holding one JSON object")

    def _flooding(self, verdict: Verdict, text: str) -> None:
        if verdict == "warn":
            # Only the first dropped message is read, to name it in the error.
            try:
                msg = json.loads(text)
                self._re = _message_id(msg) if isinstance(msg, dict) else None
            except (ValueError, RecursionError, FieldError):
                self._re = None
            self.error("flood", "you are sending too fast; message dropped, slow down")
            self._re = None
        elif verdict == "disconnect":
            _floods.log("flood: disconnected {count} more web clients",
                        "flood: disconnected web client %s", self.address)
            self.close(CLOSE_POLICY, "flood")

    def registration_expired(self) -> None:
        """No ``hello`` in ``registration_timeout`` seconds: close with 1008."""
        if self.user is None and not self.closed:
            log.info("web: %s sent no hello in time; closed", self.address or "a client")
            self.close(CLOSE_POLICY, "no hello")

    def _watch_nick(self, user: User) -> None:
        """The user holds a new nick: watch it if it is someone's (doors/owned.py)."""
        clock = self._clock
        if clock is not None:  # owned nicks need the door's clock for the grace period
            self.guard = watch_nick(self.guard, self.chat, user, lambda: NickGuard(
                self.chat, clock, self._notice, "log in on the page"))

    def _notice(self, text: str) -> None:
        """A line from the server to this user (the owned-nick warning and rename)."""
        if not self.closed:
            self.send({"type": "notice", "text": text})
            self.peer.wake()

    def lost(self, reason: str = "connection lost") -> None:
        """The connection is gone: the user leaves the chat."""
        self.closed = True
        if self.guard is not None:
            self.guard.cancel()
        if self.user is not None:
            # via: only this page leaves; the person stays while another connection
            # of theirs does (multiclient, docs/accounts.md).
            self.chat.quit(self.user, reason, via=self)
            self.user = None

    # Hub side (Member) ------------------------------------------------------

    def deliver(self, event: HubEvent) -> None:
        """Show a hub event; a failure costs this browser, never the hub's delivery to the rest."""
        if self.closed:
            return
        try:  # free in 3.11 unless raised
            if event is _rendered_event and _rendered_message:
                # The per-recipient path of a room's fan-out: the text rendered for
                # the first browser, pushed as is (a message needs nothing else).
                _counts.messages_out += 1
                self._push(_rendered_text)
                return
            self._deliver(event)
        except Exception:
            log.exception("web: failed to deliver %s to %s", type(event).__name__,
                          self.address or "a client")
            self.close(CLOSE_INTERNAL_ERROR, "internal error")

    def deliver_run(self, run: MessageRun) -> None:
        """Several room messages of one commit in one room: their JSON made once, pushed as one.

        Every browser sees a room message alike (its sender's too), so the
        texts are made once for the whole fan-out, as :meth:`deliver` makes each.
        """
        if self.closed:
            return
        global _run, _run_texts
        if run is not _run:
            try:
                texts = tuple([message_json(message) for message in run.messages])
            except Exception:  # each on its own, as one by one: deliver() says what failed
                deliver_each(self, run)
                return
            _run, _run_texts = run, texts
        try:
            _counts.messages_out += len(run.messages)
            self.peer.push_texts(_run_texts)
        except Exception:
            log.exception("web: failed to deliver %d messages to %s", len(run.messages),
                          self.address or "a client")
            self.close(CLOSE_INTERNAL_ERROR, "internal error")

    def _deliver(self, event: HubEvent) -> None:
        global _rendered_event, _rendered_text, _rendered_message
        if event is _rendered_event:
            text = _rendered_text
        else:
            message = type(event) is Message
            if message:
                assert isinstance(event, Message)
                text = message_json(event)
            else:
                obj = event_object(event)
                text = dumps(obj) if obj is not None else ""
            _rendered_event, _rendered_text, _rendered_message = event, text, message
        if text:
            self.peer.push_text(text)
            if type(event) is Message or type(event) is Private:
                _counts.messages_out += 1
        if type(event) is Joined and self.user is not None:
            assert isinstance(event, Joined)
            if fold(event.nick) == self.user.key and acted_elsewhere(event, self):
                # Another connection of this person joined: the page gets what its
                # own join would bring (as the IRC door's joined_elsewhere).
                self._elsewhere(event.room)
        if type(event) is NickChanged and self.user is not None:
            assert isinstance(event, NickChanged)
            if fold(event.new) == self.user.key:  # this user's new nick may be someone's
                self._watch_nick(self.user)

    # Handlers -----------------------------------------------------------------

    def _hello(self, msg: JsonObject) -> None:
        if self.user is not None:
            self.error("already_registered", "hello was already answered")
            return
        version = msg.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise FieldError("version must be a whole number (this server speaks 1)")
        if version != VERSION:
            self.error("version", f"this server speaks version {VERSION} only")
            self.close(CLOSE_PROTOCOL_ERROR, f"version {VERSION} only")
            return
        nick = ((_text(msg, "nick", optional=True) or "").strip() or self.account
                or self.chat.guest_nick())
        member: Member = self
        user = self.chat.register(nick, member, address=self.address, secure=self.secure,
                                  account=self.account)
        self.user = user
        # Multiclient: the account's nick was held by another of its connections,
        # and this page joined that user (already logged in, maybe in rooms).
        attached = user.member is not member
        if self.account is not None and not attached:
            self.chat.log_in(user, self.account)
        self.answer({"type": "welcome", "version": VERSION, "nick": self.user.nick,
                     "server": self.chat.settings.line_name,
                     "limits": {"text": MESSAGE_MAX, "frame": FRAME_MAX},
                     "rooms": [room.name for room in self.user.rooms.values()],
                     "account": self.account, "accounts": self.chat.settings.accounts})
        self._watch_nick(user)
        if attached:
            self._re = None  # what follows answers no message of the page's
            for room in list(user.rooms.values()):
                self.send({"type": "joined", "room": room.name, "nick": user.nick,
                           "ts": _ts(self._clock.wall() if self._clock else 0.0)})
                self._room_state(room.name, replay=True)

    def _elsewhere(self, name: str) -> None:
        """Topic, members and recent history of a room another connection joined."""
        asking, self._re = self._re, None
        try:
            self._room_state(name, replay=False)
        finally:
            self._re = asking

    def _join(self, msg: JsonObject) -> None:
        assert self.user is not None
        name = _required(msg, "room")
        password = _text(msg, "password", optional=True)
        self.chat.join(self.user, name, password=password, via=self)
        self._room_state(name, replay=True)

    def _room_state(self, name: str, *, replay: bool) -> None:
        """What a join brings the page: the topic, the members and the history.

        ``replay``: logged in, the messages after the account's read marker,
        which then moves past them; else (a join made by another connection,
        which moves the marker itself) the room's last messages.
        """
        assert self.user is not None
        room = self.chat.find_room(name)
        if room is None:  # gone at once (cannot happen with one hub; be safe)
            return
        self.send({"type": "topic", "room": room.name, "topic": room.topic,
                   "by": room.topic_by, "ts": _ts(room.topic_ts)})
        self._members(room.name, brief=self.chat.is_quiet(room))
        limit = self.chat.settings.history
        if self.user.account is not None and limit and replay:
            # Logged in: what the account has not read, wherever it read the rest
            # (IRC's MARKREAD, the line door, another page); older ones on request.
            messages = self.chat.replay(self.user, room.name, limit)
            if messages:
                try:
                    self.chat.mark_read(self.user, room.name,
                                        math.floor(messages[-1].ts * 1000), via=self)
                except HubError as exc:  # a Redis bus's markers unreachable: said, shown anyway
                    self._notice(f"read marker not moved: {exc}")
                assert messages[0].id is not None
                more = bool(self.chat.history_page(room.name, 1,
                                                   before=("id", messages[0].id)))
            else:
                more = bool(self.chat.history_page(room.name, 1))
        else:
            messages = self.chat.history_page(room.name, limit + 1) if limit else []
            more = len(messages) > limit
            if more:
                messages = messages[1:]
        self.answer({"type": "history", "room": room.name,
                     "messages": [message_fields(m) for m in messages], "more": more})

    def _part(self, msg: JsonObject) -> None:
        assert self.user is not None
        room = _required(msg, "room")
        reason = _text(msg, "reason", optional=True) or ""
        self.chat.part(self.user, room, reason, via=self)

    def _say(self, msg: JsonObject) -> None:
        assert self.user is not None
        room, text, action = msg.get("room"), msg.get("text"), msg.get("action")
        # Every frame of a busy room: ASCII strings and no action flag pass the
        # checks below as they are; anything else is checked field by field.
        if not (type(room) is str and type(text) is str and room.isascii() and text.isascii()
                and action is None):
            room, text = _required(msg, "room"), _required(msg, "text")
            action = _flag(msg, "action")
        self.chat.say(self.user, room, text, action=action is True, via=self)

    def _private(self, msg: JsonObject) -> None:
        assert self.user is not None
        target, text = _required(msg, "to"), _required(msg, "text")
        self.chat.private(self.user, target, text, action=_flag(msg, "action"), via=self)

    def _nick(self, msg: JsonObject) -> None:
        assert self.user is not None
        self.chat.rename(self.user, _required(msg, "nick"))

    def _topic(self, msg: JsonObject) -> None:
        assert self.user is not None
        self.chat.set_topic(self.user, _required(msg, "room"), _required(msg, "topic"))

    def _history(self, msg: JsonObject) -> None:
        assert self.user is not None
        before = _whole(msg, "before", 1, MESSAGE_ID_MAX)
        after = _whole(msg, "after", 0, MESSAGE_ID_MAX)
        limit = _whole(msg, "limit", 1, HISTORY_LIMIT) or 50
        peer = _text(msg, "with", optional=True)
        if peer is not None:  # the account's private conversation with a nick
            self._private_history(peer, before, after, limit)
            return
        name = _required(msg, "room")
        room = self.chat.find_room(name)
        if room is None:
            raise HubError("no_such_room", f"no such room: {name}")
        if self.user.key not in room.members:
            raise HubError("not_in_room", f"you are not in {room.name}")
        messages = self.chat.history_page(
            room.name, limit + 1,
            before=("id", before) if before is not None else None,
            after=("id", after) if after is not None else None,
            # With only "after": the ones right after it (catching up), else the newest.
            newest=after is None or before is not None,
        )
        more = len(messages) > limit
        if more:
            messages = messages[1:] if after is None or before is not None else messages[:-1]
        self.answer({"type": "history", "room": room.name,
                     "messages": [message_fields(m) for m in messages], "more": more})

    def _private_history(self, peer: str, before: int | None, after: int | None,
                         limit: int) -> None:
        assert self.user is not None
        if self.user.account is None:
            raise HubError("account_needed", "private messages are kept for accounts: log in")
        newest = after is None or before is not None
        messages = self.chat.private_history(
            self.user, peer, limit + 1, before=("id", before) if before is not None else None,
            after=("id", after) if after is not None else None, newest=newest)
        more = len(messages) > limit
        if more:
            messages = messages[1:] if newest else messages[:-1]
        self.answer({"type": "history", "with": peer,
                     "messages": [private_fields(m) for m in messages], "more": more})

    def _conversations(self, msg: JsonObject) -> None:
        """The account's private conversations, by their newest message, oldest first."""
        assert self.user is not None
        found = sorted((ts, name) for name, ts in self.chat.history_targets(self.user)
                       if not name.startswith("#"))
        self.answer({"type": "conversations",
                     "conversations": [{"with": name, "ts": _ts(ts)} for ts, name in found]})

    def _rooms(self, msg: JsonObject) -> None:
        me = self.user.key if self.user is not None else ""
        rooms = sorted((r for r in self.chat.rooms() if not r.hidden or me in r.members),
                       key=lambda r: r.key)  # secret (+s/+p) rooms: members only
        self.answer({"type": "rooms", "rooms": [
            {"name": r.name, "topic": r.topic, "members": len(r.members)} for r in rooms
        ]})

    def _members_cmd(self, msg: JsonObject) -> None:
        self._members(_required(msg, "room"))

    def _members(self, name: str, *, brief: bool = False) -> None:
        """``members`` of a room; ``brief`` (joining a quiet room): the operators and oneself."""
        room = self.chat.find_room(name)
        if room is None:
            raise HubError("no_such_room", f"no such room: {name}")
        present = room.members
        if brief:  # the operators and oneself, found in O(operators): a quiet room is big
            shown = {user.key: user for user in room.operators_present()}
            if self.user is not None and self.user.key in present:
                shown[self.user.key] = self.user
            present = shown
        members = [
            {"nick": user.nick, "op": key in room.operators, "voice": key in room.voiced,
             "away": user.away}
            for key, user in sorted(present.items())
        ]
        answer: JsonObject = {"type": "members", "room": room.name, "members": members}
        if brief:
            answer["count"] = len(room.members)
        self.answer(answer)

    def _ping(self, msg: JsonObject) -> None:
        self.answer({"type": "pong"})

    #: Every client message by its ``type``.
    HANDLERS: ClassVar[dict[str, Callable[[JsonChat, JsonObject], None]]] = {
        "hello": _hello, "join": _join, "part": _part, "say": _say, "private": _private,
        "nick": _nick, "topic": _topic, "history": _history, "rooms": _rooms,
        "members": _members_cmd, "ping": _ping, "conversations": _conversations,
    }
