"""The chat service's side of a Redis bus: what this node does with the cluster's events.

:class:`Cluster` joins the pieces of ``store/``: the stream
(:mod:`sockhub.store.bus_redis`) and the nicks and heartbeats
(:mod:`sockhub.store.presence`). Users of other nodes live in this node's
hub with a :class:`RemoteMember`, whose deliveries are nothing: their own
node delivers to them. docs/scale-out.md has the guarantees.

Accounts live in one Redis hash (:mod:`sockhub.store.bus_accounts`), read
by every node: :func:`cluster_accounts` gives the chat service that store.
Registered rooms live in another (:mod:`sockhub.store.bus_rooms`); each
node keeps a copy, and a change is announced on the stream (``r``).
Read markers live in a third (:mod:`sockhub.store.bus_markers`); a marker
moved is announced (``k``) so the account's connections elsewhere follow.
Private messages kept for accounts travel as room messages do (``p``): the
stream gives the id, and every node stores them, then delivers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sockhub import metrics
from sockhub.errors import ConfigError, StartError
from sockhub.hub import HubError, Message, Room, User
from sockhub.hub.events import BanChanged, HubEvent, Private, Quit
from sockhub.hub.model import Registration, RoomState
from sockhub.hub.names import fold
from sockhub.store.bus_accounts import RedisAccountStore
from sockhub.store.bus_codec import encode as encode_event
from sockhub.store.bus_markers import RedisMarkerStore
from sockhub.store.bus_redis import BusUnavailable, Entry, RedisBus, RedisTarget
from sockhub.store.bus_rooms import RedisRoomStore, decode, encode
from sockhub.store.presence import Presence, PresenceDown

if TYPE_CHECKING:
    from sockhub.services.chat import ChatService
    from sockhub.services.chat_settings import ChatSettings

log = logging.getLogger("sockhub.cluster")

#: How long a starting node waits for the running ones to tell it their state.
HELLO_TIMEOUT = 3.0
#: The error a user gets for anything that needs the bus while it is down.
BUS_DOWN = "the chat cluster's bus (Redis) is unreachable: not sent, try again shortly"


class RemoteMember:
    """A user connected to another node: that node delivers to them, so here nothing does."""

    __slots__ = ("node",)

    def __init__(self, node: str) -> None:
        self.node = node

    def deliver(self, event: HubEvent) -> None:
        pass


class BusStartError(StartError):
    """Redis could not be reached at start: ``sockhub serve`` exits 1 with this message."""


def _user_info(user: User) -> dict[str, Any]:
    return {"nick": user.nick, "address": user.address, "username": user.username,
            "realname": user.realname, "secure": user.secure, "signon": user.signon}


def read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError) as exc:
        raise ConfigError(f"chat: cannot read a password from {path}") from exc


def cluster_accounts(settings: ChatSettings) -> RedisAccountStore:
    """The accounts of the cluster ``settings.bus`` names (docs/scale-out.md, "Accounts")."""
    assert settings.bus is not None
    return RedisAccountStore(redis_target(settings), prefix=settings.bus_prefix)


def redis_target(settings: ChatSettings) -> RedisTarget:
    """Where ``settings.bus`` is, with its password (from a file) and TLS CA."""
    assert settings.bus is not None
    ca = settings.bus_ca_file
    if ca is not None and not settings.bus.startswith("rediss://"):
        raise ConfigError("chat: --bus-ca-file is for a TLS bus: give --bus rediss://...")
    if ca is not None and not ca.is_file():
        raise ConfigError(f"chat: --bus-ca-file {ca}: no such file")
    return RedisTarget(settings.bus, read_password(settings.bus_password_file),
                       str(ca) if ca is not None else None)


def _state_of(room: Room) -> dict[str, Any]:
    """A room's kept settings and topic, and who is invited: for a node that starts."""
    return dataclasses.asdict(RoomState.of(room)) | {"invited": sorted(room.invited)}


class Cluster:
    """This node's membership of a chat cluster."""

    def __init__(self, service: ChatService, settings: ChatSettings) -> None:
        assert settings.bus is not None
        self.service = service
        self.node = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        target = redis_target(settings)
        self.bus = RedisBus(target, node=self.node, prefix=settings.bus_prefix,
                            stream_max=settings.bus_stream_max, handler=self._take)
        self.presence = Presence(target, node=self.node, prefix=settings.bus_prefix,
                                 ttl=settings.bus_node_ttl, on_dead=self._node_dead,
                                 known_nodes=self._known_nodes, on_orphaned=self._orphaned)
        self.rooms = RedisRoomStore(target, prefix=settings.bus_prefix)
        self.markers = RedisMarkerStore(target, prefix=settings.bus_prefix)
        #: Nodes that answered this node's start with their state.
        self._answered: set[str] = set()

    def start(self, largest_id: int) -> None:
        """Connect (synchronously, before any door opens) and start the tasks."""
        try:
            self.bus.connect(largest_id)
            # After the stream's reading point is fixed, so no change is missed.
            self.service.owned.share(self.rooms, self._announce_room)
            self.presence.beat()
            peers = self.presence.live_nodes() - {self.node}
            # The running nodes answer with their users and rooms, then "done".
            self.bus.hello(lambda: peers <= self._answered, timeout=HELLO_TIMEOUT)
        except (BusUnavailable, HubError) as exc:
            raise BusStartError(f"chat: {exc}") from exc
        self.bus.start()
        self.presence.start()
        log.info("chat: node %s on the Redis bus, reading from %s", self.node, self.bus.last_id)

    def close(self) -> None:
        self.bus.close()
        self.presence.close()
        self.rooms.close()
        self.markers.close()

    # What the service asks -----------------------------------------------------

    def check(self) -> None:
        """Refuse (HubError ``bus_down``) what would be lost while Redis is away."""
        if not self.bus.ready:
            raise HubError("bus_down", BUS_DOWN)

    def claim(self, nick: str) -> None:
        """Take ``nick`` cluster-wide, or raise HubError (``nick_in_use``, ``bus_down``)."""
        try:
            won = self.presence.claim(fold(nick))
        except PresenceDown as exc:
            raise HubError("bus_down", BUS_DOWN) from exc
        if not won:
            raise HubError("nick_in_use", f"nick {nick} is already in use", target=nick)

    def taken_elsewhere(self, nick: str) -> bool:
        holder = self.presence.holder(fold(nick))
        return holder is not None and holder != self.node

    def release(self, nick: str) -> None:
        self.presence.release(fold(nick))

    def announce(self, user: User) -> None:
        self.bus.publish_data("u", _user_info(user))

    def announce_oper(self, user: User) -> None:
        """``user`` became (or stopped being) a server operator here: every node's WHOIS says so."""
        self.bus.publish_data("o", {"nick": user.nick, "on": user.is_oper})

    def announce_marker(self, account: str, target: str, ms: int) -> None:
        """A read marker moved (already in Redis): the account's connections elsewhere follow."""
        self.bus.publish_data("k", {"account": account, "target": target, "ms": ms})

    def keep_private(self, user: User, event: Private,
                     readers: list[tuple[str, str, str]]) -> None:
        """Send a private message kept for ``readers`` to the stream, which gives its id.

        Every node (this one too) stores it with that id, then delivers it,
        as room messages go: the same msgid and history on every node.
        """
        self.bus.publish_data("p", {"e": encode_event(event), "r": readers,
                                    "u": user.username, "a": user.address})

    def _announce_room(self, key: str, version: int, registration: Registration | None) -> None:
        """A room's registration changed here (already in Redis): the others take it."""
        self.bus.publish_data("r", {"room": key, "v": version, "reg": (
            None if registration is None else json.loads(encode(registration)))})

    # What the cluster tells this node --------------------------------------------

    def _take(self, entries: list[Entry]) -> None:
        """Store the batch's room messages in one transaction, then apply everything in order."""
        service, me = self.service, self.node
        messages = [e.event for e in entries if e.kind == "m" and isinstance(e.event, Message)]
        for entry in entries:
            if entry.kind == "p":
                self._store_private(entry)
        if messages:
            start = time.perf_counter()
            try:
                service.store.append_many(messages)
            except Exception:
                log.exception("chat: could not store %d messages from the bus", len(messages))
            else:  # counted once stored (rows another worker stored already count too)
                metrics.chat.stored_batch(len(messages))
            service._fanout.observe(time.perf_counter() - start)
        # Through the service's local bus, as local events go: its departure
        # bookkeeping (seen marks for replays) runs before the hub applies them.
        # Room messages that follow each other go as one batch: the hub fans a
        # run in one room out as one piece per recipient (hub/state.py).
        apply, apply_all = service.bus.publish, service.bus.publish_all
        said: list[Message] = []
        for entry in entries:
            event = entry.event
            if entry.kind == "m" and isinstance(event, Message):
                said.append(event)
                continue
            if said:
                apply_all(said)
                said = []
            if entry.kind in ("m", "p") and event is not None:
                apply(event)
            elif entry.node == me:
                continue  # applied here when it happened
            elif entry.kind == "u" and entry.user is not None:
                self._arrived(entry.node, entry.user)
            elif entry.kind == "q":
                self._send_state(entry.node)
            elif entry.kind == "o" and entry.user is not None:
                self._opered(str(entry.user.get("nick", "")), bool(entry.user.get("on", True)))
            elif entry.kind == "r" and entry.user is not None:
                self._took_room(entry.user)
            elif entry.kind == "k" and entry.user is not None:
                data = entry.user
                try:
                    service.marker_moved(str(data["account"]), str(data["target"]),
                                         int(data["ms"]))
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("chat: a read marker from the bus was not taken: %s", exc)
            elif entry.kind == "s" and entry.user is not None:
                if entry.user.get("for") != me:
                    continue
                if entry.user.get("done"):
                    self._answered.add(entry.node)
                elif "bans" in entry.user:
                    self._take_rooms(entry.user)
                else:
                    try:
                        self._take_state(entry.node, entry.user)
                    except (KeyError, TypeError, ValueError, AttributeError) as exc:
                        log.warning("chat: a user's state from node %s was not taken: %s",
                                    entry.node, exc)
            elif event is not None:
                if isinstance(event, BanChanged):
                    self._store_ban(event)
                apply(event)
        if said:
            apply_all(said)

    def _store_private(self, entry: Entry) -> None:
        """Keep a private message from the stream, with its cluster id, once however often read."""
        event, data = entry.event, entry.user or {}
        assert isinstance(event, Private)
        message = Message(event.target, event.sender, event.text, event.ts, event.action,
                          notice=event.notice, username=str(data.get("u", "")),
                          address=str(data.get("a", "")), id=int(event.msgid))
        try:
            readers = [(str(o), str(p), str(n)) for o, p, n in data["r"]]
            self.service.store.append_private(message, readers)
        except Exception:  # the message itself still goes, as without a bus
            log.exception("chat: a private message from the bus was not stored")
            return
        metrics.chat.history_rows += 1

    def _arrived(self, node: str, info: dict[str, Any]) -> None:
        stale = self.service.hub.find_user(str(info.get("nick", "")))
        if (stale is not None and isinstance(stale.member, RemoteMember)
                and stale.member.node != node):
            # Redis gave the nick to ``node``, so the other holder is gone
            # (a dead node this node has not noticed yet).
            self.service.bus.publish(Quit(stale.nick, "node lost", time.time()))
        try:
            self.service.hub.register(
                str(info["nick"]), RemoteMember(node), address=str(info.get("address", "")),
                username=str(info.get("username", "")), realname=str(info.get("realname", "")),
                secure=bool(info.get("secure")), now=float(info.get("signon", time.time())))
            self.service.watchlist.arrived(str(info["nick"]))
        except (HubError, KeyError, ValueError) as exc:
            log.warning("chat: user %r of node %s not added here: %s", info.get("nick"), node, exc)

    def _send_state(self, asker: str) -> None:
        """A node started: tell it the rooms, bans and who is here (operators included)."""
        hub = self.service.hub
        self.bus.publish_data("s", {
            "for": asker, "rooms": [_state_of(room) for room in hub.rooms.values()],
            "saved": [dataclasses.asdict(state) for state in hub.saved.values()],
            "bans": hub.bans})
        for user in list(hub.users.values()):
            if isinstance(user.member, RemoteMember):
                continue
            rooms = [{"name": room.name, "created": room.created, "topic": room.topic,
                      "topic_by": room.topic_by, "topic_ts": room.topic_ts,
                      "moderated": room.moderated, "no_external": room.no_external,
                      "invite_only": room.invite_only, "password": room.password,
                      "limit": room.limit, "op": user.key in room.operators,
                      "voice": user.key in room.voiced}
                     for room in user.rooms.values()]
            self.bus.publish_data("s", {"for": asker, "user": _user_info(user),
                                        "away": user.away, "oper": user.is_oper,
                                        "account": user.account, "rooms": rooms})
        self.bus.publish_data("s", {"for": asker, "done": True})

    def _take_state(self, node: str, state: dict[str, Any]) -> None:
        """One user of a running node, as it answered our start: placed without announcing."""
        hub = self.service.hub
        info = state.get("user") or {}
        if hub.find_user(str(info.get("nick", ""))) is not None:
            return  # already known (it arrived, or acted, since we asked)
        self._arrived(node, info)
        user = hub.find_user(str(info.get("nick", "")))
        if user is None:
            return
        user.away = state.get("away")
        hub.set_oper(user, bool(state.get("oper")))
        account = state.get("account")
        user.account = str(account) if account is not None else None
        for spec in state.get("rooms", []):
            name = str(spec["name"])
            room = hub.find_room(name)
            if room is None:
                room = Room(name, protected=fold(name) in hub.protected,
                            created=float(spec.get("created", 0.0)))
                room.topic = str(spec.get("topic", ""))
                room.topic_by = str(spec.get("topic_by", ""))
                room.topic_ts = float(spec.get("topic_ts", 0.0))
                room.moderated = bool(spec.get("moderated"))
                room.no_external = bool(spec.get("no_external", True))
                room.invite_only = bool(spec.get("invite_only"))
                room.password = spec.get("password")
                room.limit = spec.get("limit")
                hub.rooms[room.key] = room
            room.members[user.key] = user
            user.rooms[room.key] = room
            if spec.get("op"):
                room.operators.add(user.key)
            if spec.get("voice"):
                room.voiced.add(user.key)

    def _take_rooms(self, state: dict[str, Any]) -> None:
        """A running node's rooms, kept room states and bans, as it answered our start.

        The running node heard every change while this one was away, so its
        word wins over what this node had stored: a room's settings and
        invitations, the states of rooms kept while empty, and every ban list
        (a ban lifted meanwhile is lifted here too). They are kept in this
        node's store as if it had been running when they were set.
        """
        hub, store = self.service.hub, self.service.store
        fields = {f.name for f in dataclasses.fields(RoomState)}
        try:
            for spec in state.get("saved", []):
                saved = RoomState(**{k: v for k, v in spec.items() if k in fields})
                if hub.saved.get(fold(saved.name)) != saved:
                    hub.saved[fold(saved.name)] = saved
                    store.save_room(saved)
            for spec in state.get("rooms", []):
                kept = RoomState(**{k: v for k, v in spec.items() if k in fields})
                room = hub.find_room(kept.name)
                if room is None:
                    room = Room(kept.name)
                    hub.rooms[room.key] = room
                kept.restore(room)
                room.protected = room.protected or room.key in hub.protected
                room.invited.update(str(key) for key in spec.get("invited", []))
            if "bans" in state:
                told = {str(key): [str(mask) for mask in masks]
                        for key, masks in dict(state["bans"]).items()}
                for key in set(hub.bans) | set(told):
                    have, want = hub.bans.get(key, []), told.get(key, [])
                    for mask in have:
                        if mask not in want:
                            store.remove_ban(key, mask)
                    for mask in want:
                        if mask not in have:
                            store.add_ban(key, mask, "", time.time())
                    if want:
                        hub.bans[key] = list(want)
                    else:
                        hub.bans.pop(key, None)
        except (TypeError, ValueError, AttributeError) as exc:
            log.warning("chat: a node's room state was not taken: %s", exc)

    def _opered(self, nick: str, on: bool) -> None:
        user = self.service.hub.find_user(nick)
        if user is not None and isinstance(user.member, RemoteMember):
            self.service.hub.set_oper(user, on)

    def _took_room(self, data: dict[str, Any]) -> None:
        """Another node changed a room's registration: this node's copy follows."""
        try:
            reg = data.get("reg")
            self.service.owned.took(str(data["room"]), int(data["v"]),
                                    None if reg is None else decode(reg))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("chat: a room registration from the bus was not taken: %s", exc)

    def _store_ban(self, event: BanChanged) -> None:
        store = self.service.store
        if event.added:
            store.add_ban(event.room, event.mask, event.by, event.ts)
        else:
            store.remove_ban(event.room, event.mask)

    def _known_nodes(self) -> set[str]:
        return {u.member.node for u in self.service.hub.users.values()
                if isinstance(u.member, RemoteMember)}

    def _node_dead(self, node: str) -> None:
        """Every survivor announces a dead node's users itself: a Quit applied here only."""
        hub, now = self.service.hub, time.time()
        for user in [u for u in hub.users.values()
                     if isinstance(u.member, RemoteMember) and u.member.node == node]:
            self.service.bus.publish(Quit(user.nick, "node lost", now))

    def _orphaned(self) -> None:
        """Our heartbeat key was gone: Redis restarted empty, or we were cut off past the TTL.

        Either way the cluster no longer knows our users' nicks: each is
        claimed again and announced again; a user whose nick another node
        took meanwhile is disconnected, told why.
        """
        service = self.service
        for user in [u for u in service.hub.users.values()
                     if not isinstance(u.member, RemoteMember)]:
            try:
                self.claim(user.nick)
            except HubError as exc:
                if exc.code == "bus_down":
                    return  # the next heartbeat tries again
                self._disconnect(user, "your nick was taken while this server was cut off "
                                 "from the cluster; please reconnect")
                continue
            self.announce(user)

    def _disconnect(self, user: User, reason: str) -> None:
        member = user.member
        drop = getattr(member, "drop", None)
        if callable(drop):
            drop(reason)
            return
        send_error = getattr(member, "send_error", None)
        if callable(send_error):
            send_error(reason)
        self.service.quit(user, reason)
        for name in ("close", "wake"):
            method = getattr(member, name, None)
            if callable(method):
                method()
