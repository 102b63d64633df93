"""Read markers of a chat cluster, in one Redis hash (``<prefix>:markers``).

With ``--bus`` an account's read markers (IRCv3 ``draft/read-marker``) are
the cluster's, not each node's: the hash maps ``account\\0target`` (both
folded) to Unix milliseconds. One Lua script moves a marker only forward
("the timestamp MUST only ever increase"), atomically, so two devices on
two nodes marking at the same instant leave the larger. The node that
moved it announces it on the stream (``k``) so the account's connections
on the other nodes are told (services/chat_cluster.py).

As ``store/bus_accounts.py``: one synchronous round trip with a 0.5 s
socket timeout; Redis unreachable raises HubError ``bus_down``, which the
chat service turns into a clear refusal, never a hang.
"""

from __future__ import annotations

from sockhub.store.bus_redis import RedisHashStore, RedisTarget

#: What a client is told when a read marker needs Redis and it is away.
MARKERS_DOWN = "the chat cluster's read markers (Redis) are unreachable: try again shortly"

# KEYS: the hash. ARGV: field, ms. The marker as stored: only ever forward.
_FORWARD = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (not cur) or tonumber(ARGV[2]) > tonumber(cur) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return tonumber(ARGV[2])
end
return tonumber(cur)
"""


class RedisMarkerStore(RedisHashStore):
    """``read_marker`` and ``mark_read`` of :class:`~sockhub.store.history.ChatStore`, in Redis."""

    down = MARKERS_DOWN

    def __init__(self, target: RedisTarget, *, prefix: str) -> None:
        super().__init__(target, f"{prefix}:markers")

    def read_marker(self, account: str, target: str) -> int | None:
        """Up to when ``account`` read ``target`` (both folded); None: never."""
        raw = self._call("hget", self.key, f"{account}\0{target}")
        return int(raw) if raw is not None else None

    def mark_read(self, account: str, target: str, ms: int) -> int:
        """Move the marker to ``ms`` unless it is past it already; the marker as stored."""
        return int(self._call("eval", _FORWARD, 1, self.key, f"{account}\0{target}", int(ms)))
