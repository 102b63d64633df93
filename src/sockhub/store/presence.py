"""Cluster-wide nicks and node liveness, in Redis.

* Nicks: one hash per cluster, ``<prefix>:nicks``, folded nick → the node
  holding it. Taking a nick is one ``HSETNX``, so of two nodes racing for
  the same nick exactly one wins; releasing it deletes the field only if
  this node still holds it (a Lua compare-and-delete). Claims are
  synchronous round trips (a registration or a nick change, not a
  message), bounded by a 0.5 s socket timeout, so the doors keep their
  synchronous ``register``/``rename`` and get a plain ``nick_in_use``.
* Liveness: each node refreshes ``<prefix>:node:<id>`` with a TTL every
  third of it. Every node checks the keys of the nodes whose users it
  knows; when one has expired it announces those users as quits at once
  (no coordination: each survivor does it for its own clients) and frees
  the dead node's nicks. A user of a dead node is gone within TTL plus one
  heartbeat period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import redis.exceptions

from sockhub.store.bus_redis import DOWN, RedisTarget, close_client

log = logging.getLogger("sockhub.presence")

_RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""
_RELEASE_NODE = """
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  if all[i+1] == ARGV[1] then redis.call('HDEL', KEYS[1], all[i]); n = n + 1 end
end
return n
"""


class PresenceDown(Exception):
    """Redis did not answer a nick claim."""


class Presence:
    """This node's nicks and heartbeat.

    Args:
        target: where Redis is.
        node: this node's id.
        prefix: the cluster's key prefix.
        ttl: seconds a node's key lives without a heartbeat.
        on_dead: called with a node's id when its key has expired.
        on_orphaned: called when this node finds its own key had expired
            (it was cut off longer than ``ttl``: the others have announced
            its users as gone and freed their nicks).
    """

    def __init__(self, target: RedisTarget, *, node: str, prefix: str, ttl: float,
                 on_dead: Callable[[str], None], known_nodes: Callable[[], set[str]],
                 on_orphaned: Callable[[], None]) -> None:
        self.node, self.ttl = node, ttl
        self.nicks = f"{prefix}:nicks"
        self._prefix = prefix
        self._sync = target.sync_client(timeout=0.5)
        self._target = target
        self.on_dead, self.known_nodes, self.on_orphaned = on_dead, known_nodes, on_orphaned
        self._unreleased: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        #: Set by close(): the heartbeat stops even if the task's cancellation is
        #: lost (a Redis command under a timeout may turn it into a TimeoutError).
        self._closed = False
        #: No node is declared dead before this (time.monotonic()): see _beat_once.
        self._grace_until = 0.0

    def node_key(self, node: str) -> str:
        return f"{self._prefix}:node:{node}"

    # Nicks (synchronous) ---------------------------------------------------------

    def claim(self, key: str) -> bool:
        """Take the folded nick ``key`` for this node; False if another node has it."""
        try:
            if self._sync.hsetnx(self.nicks, key, self.node):
                self._unreleased.discard(key)
                return True
            return bool(self._sync.hget(self.nicks, key) == self.node.encode())
        except (*DOWN, redis.exceptions.RedisError) as exc:
            raise PresenceDown(str(exc)) from exc

    def holder(self, key: str) -> str | None:
        """The node holding the folded nick ``key``, or None (also when Redis is down)."""
        try:
            value = self._sync.hget(self.nicks, key)
        except (*DOWN, redis.exceptions.RedisError):
            return None
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def release(self, key: str) -> None:
        """Give the folded nick ``key`` back; retried at the next heartbeat if Redis is down."""
        try:
            self._sync.eval(_RELEASE, 1, self.nicks, key, self.node)
        except (*DOWN, redis.exceptions.RedisError):
            self._unreleased.add(key)

    # Heartbeat --------------------------------------------------------------------

    def beat(self) -> None:
        """Mark this node alive now (synchronous, at start)."""
        self._sync.set(self.node_key(self.node), "1", px=int(self.ttl * 1000))

    def live_nodes(self) -> set[str]:
        """The nodes whose heartbeat key exists now (a SCAN: at start only)."""
        head = len(self.node_key(""))
        return {bytes(key).decode()[head:]
                for key in self._sync.scan_iter(match=self.node_key("*"), count=1000)}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="presence")

    def close(self, *, release_all: bool = True) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if release_all:  # a clean stop frees this node's nicks and key at once
            try:
                self._sync.eval(_RELEASE_NODE, 1, self.nicks, self.node)
                self._sync.delete(self.node_key(self.node))
            except (*DOWN, redis.exceptions.RedisError):
                pass
        self._sync.close()

    async def _run(self) -> None:
        client = self._target.async_client()
        period = self.ttl / 3
        try:
            while not self._closed:
                await asyncio.sleep(period)
                try:
                    await self._beat_once(client)
                except (*DOWN, redis.exceptions.RedisError) as exc:
                    log.debug("presence: heartbeat failed: %s", exc)
                    self._grace_until = time.monotonic() + self.ttl
        finally:
            await close_client(client)

    async def _beat_once(self, client: redis.asyncio.Redis) -> None:
        if self._closed:  # a clean stop deleted the key: a beat now would bring it back
            return
        old = await client.set(self.node_key(self.node), "1", px=int(self.ttl * 1000), get=True)
        if self._closed:
            return
        if old is None:
            self._grace_until = time.monotonic() + self.ttl
            self.on_orphaned()
            log.warning("presence: this node's heartbeat key was gone (Redis restarted empty, "
                        "or this node was cut off longer than %.1f s): claimed its users' "
                        "nicks again", self.ttl)
        for key in list(self._unreleased):
            await client.eval(_RELEASE, 1, self.nicks, key, self.node)
            self._unreleased.discard(key)
        if time.monotonic() < self._grace_until:
            return  # after an outage every node needs one TTL to beat again
        for node in self.known_nodes() - {self.node}:
            if not await client.exists(self.node_key(node)):
                log.warning("presence: node %s stopped its heartbeat; its users are gone", node)
                self.on_dead(node)
                await client.eval(_RELEASE_NODE, 1, self.nicks, node)
