"""Accounts of a chat cluster, in one Redis hash (``<prefix>:accounts``).

With ``--bus`` the accounts live in Redis, not in each node's SQLite: the
hash maps a folded account name to one JSON record (the registered name,
the scrypt hash, the SCRAM-SHA-256 credentials, when it was made) — the
same fields as ``store/accounts.py``, and still never a password.

Why a hash and not account events replicated over the stream: a
registration is acknowledged only once Redis has answered ``HSETNX``, so
no node can tell a client "registered" for an account the cluster does not
have (the stream's writer sends in the background: a node killed right
after acknowledging would lose the event, and a node started after the
stream's cap dropped it would never learn it). ``HSETNX`` also makes two
registrations of one name on two nodes at the same instant have exactly
one winner, as nicks do. Every node reads the same record, so a password
changed or an account dropped on one node holds on every node at once.
Durability is Redis's own (docs/scale-out.md: keep ``appendonly yes``).

Every call is one synchronous round trip with a 0.5 s socket timeout, as
the nick claims in ``store/presence.py``; Redis unreachable raises
HubError ``bus_down``, which the chat service turns into a clear refusal.
"""

from __future__ import annotations

import json
from typing import Any

from sockhub.hub import HubError
from sockhub.hub.names import fold
from sockhub.protocols.scram import ScramCredentials
from sockhub.store.accounts import AccountRecord
from sockhub.store.bus_redis import RedisHashStore, RedisTarget

#: What a client is told when an account operation needs Redis and it is away.
ACCOUNTS_DOWN = "the chat cluster's account store (Redis) is unreachable: try again shortly"

# KEYS: the hash. ARGV: folded name, new record. Only an existing account changes.
_REPLACE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


def _encode(record: AccountRecord) -> str:
    scram = record.scram
    return json.dumps({"name": record.name, "password": record.password,
                       "salt": scram.salt.hex(), "iter": scram.iterations,
                       "stored": scram.stored_key.hex(), "server": scram.server_key.hex(),
                       "created": record.created}, separators=(",", ":"))


def _decode(raw: bytes | str) -> AccountRecord:
    data: dict[str, Any] = json.loads(raw)
    scram = ScramCredentials(bytes.fromhex(data["salt"]), int(data["iter"]),
                             bytes.fromhex(data["stored"]), bytes.fromhex(data["server"]))
    return AccountRecord(str(data["name"]), str(data["password"]), scram,
                         float(data["created"]))


class RedisAccountStore(RedisHashStore):
    """The accounts of a cluster: :class:`~sockhub.store.accounts.AccountStore`'s methods."""

    down = ACCOUNTS_DOWN

    def __init__(self, target: RedisTarget, *, prefix: str) -> None:
        super().__init__(target, f"{prefix}:accounts")

    def get(self, name: str) -> AccountRecord | None:
        raw = self._call("hget", self.key, fold(name))
        if raw is None:
            return None
        try:
            return _decode(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise HubError("bus_down", f"account {name}: unreadable record in Redis") from exc

    def add(self, name: str, password: str, scram: ScramCredentials, now: float) -> bool:
        """Store a new account; False if the name is taken (folded), here or on any node."""
        record = AccountRecord(name, password, scram, now)
        return bool(self._call("hsetnx", self.key, fold(name), _encode(record)))

    def set_password(self, name: str, password: str, scram: ScramCredentials) -> bool:
        old = self.get(name)
        if old is None:
            return False
        record = AccountRecord(old.name, password, scram, old.created)
        return bool(self._call("eval", _REPLACE, 1, self.key, fold(name), _encode(record)))

    def remove(self, name: str) -> bool:
        return bool(self._call("hdel", self.key, fold(name)))

    def count(self) -> int:
        return int(self._call("hlen", self.key))
