"""Registered rooms of a chat cluster, in one Redis hash (``<prefix>:rooms``).

With ``--bus`` the registrations (founder, operator accounts; issue 14,
docs/accounts.md) live in Redis, not in each node's SQLite, for the reason
the accounts do (``store/bus_accounts.py``): **no registration acknowledged,
then lost**. A room is registered only once Redis has answered, and of two
registrations of one room on two nodes at the same instant exactly one wins
(a Lua script: set only if absent).

Every later change (an operator account added or removed, a transfer, a
drop) is a compare-and-set: the node reads the record, checks and changes it,
and a Lua script writes it only if the record is still the one it read; if
another node changed it meanwhile, the node reads again and retries. So no
change overwrites another's.

Each write takes a number from a cluster counter (``<prefix>:rooms:version``)
and stores it with the record, ``"<version> <json>"``. The writer announces
the new record with its version on the stream; every node keeps the rooms in
memory (the hub checks them at every join) and applies an announcement only
if its version is newer than what it has, so two changes whose stream
entries arrive out of order still leave the newest. A starting node reads
the whole hash (:meth:`RedisRoomStore.load`).

Every call is one synchronous round trip with a 0.5 s socket timeout;
Redis unreachable raises HubError ``bus_down``.
"""

from __future__ import annotations

import json
from typing import Any

from sockhub.hub import HubError
from sockhub.hub.model import Registration
from sockhub.hub.names import fold
from sockhub.store.bus_redis import RedisHashStore, RedisTarget

#: What a client is told when a registered-room command needs Redis and it is away.
ROOMS_DOWN = "the chat cluster's room registry (Redis) is unreachable: try again shortly"

# KEYS: the hash, the version counter. ARGV: folded room, record. Only a new room.
_ADD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
local version = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], version .. ' ' .. ARGV[2])
return version
"""

# KEYS: the hash, the version counter. ARGV: folded room, the value read, the
# new record ('' drops it). Written only if the value is still the one read.
_REPLACE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
local version = redis.call('INCR', KEYS[2])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], version .. ' ' .. ARGV[3])
end
return version
"""


def encode(registration: Registration) -> str:
    """A registration as JSON (operators in the order they were added)."""
    return json.dumps({"name": registration.name, "founder": registration.founder,
                       "registered": registration.registered,
                       "operators": list(registration.operators.values())},
                      separators=(",", ":"))


def decode(raw: str | dict[str, Any]) -> Registration:
    """A registration from :func:`encode`'s JSON (or its parsed object)."""
    data: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else raw
    registration = Registration(str(data["name"]), str(data["founder"]),
                                float(data["registered"]))
    for account in data.get("operators", []):
        registration.operators[fold(str(account))] = str(account)
    return registration


def _split(value: bytes | str) -> tuple[int, Registration]:
    text = value.decode() if isinstance(value, bytes) else value
    version, _, record = text.partition(" ")
    return int(version), decode(record)


class RedisRoomStore(RedisHashStore):
    """The registered rooms of a cluster, read and changed atomically."""

    down = ROOMS_DOWN

    def __init__(self, target: RedisTarget, *, prefix: str) -> None:
        super().__init__(target, f"{prefix}:rooms")
        self.version_key = f"{prefix}:rooms:version"

    def load(self) -> dict[str, tuple[int, Registration]]:
        """Every registered room: folded name → (version, registration)."""
        found: dict[str, tuple[int, Registration]] = {}
        for field, value in self._call("hgetall", self.key).items():
            key = field.decode() if isinstance(field, bytes) else str(field)
            try:
                found[key] = _split(value)
            except (KeyError, TypeError, ValueError):
                continue  # unreadable: as if not registered, never fatal
        return found

    def get(self, room: str) -> tuple[str | None, Registration | None]:
        """A room's stored value (to compare against on write) and its registration."""
        value = self._call("hget", self.key, fold(room))
        if value is None:
            return None, None
        raw = value.decode() if isinstance(value, bytes) else str(value)
        try:
            return raw, _split(raw)[1]
        except (KeyError, TypeError, ValueError) as exc:
            raise HubError("bus_down", f"{room}: unreadable registration in Redis") from exc

    def add(self, registration: Registration) -> int:
        """Register a new room: its version, or 0 if the room is registered already."""
        return int(self._call("eval", _ADD, 2, self.key, self.version_key,
                              fold(registration.name), encode(registration)))

    def replace(self, room: str, read: str, new: Registration | None) -> int:
        """Write ``new`` (None: drop) if the stored value is still ``read``: its version, or 0."""
        return int(self._call("eval", _REPLACE, 2, self.key, self.version_key, fold(room),
                              read, "" if new is None else encode(new)))
