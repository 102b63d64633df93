"""The Redis bus: every node's hub sees the cluster's events, in one order.

One capped Redis Stream per cluster (``<prefix>:events``, ``XADD MAXLEN ~``)
carries every event of every room; docs/scale-out.md says why one stream and
not one per room, and what is guaranteed:

* Order: the stream's order is the cluster's order. Room messages are not
  applied where they were said: they go to the stream first and every node,
  the sender's included, stores and delivers them as it reads them, so all
  nodes store the same messages with the same ids in the same order. Other
  events (joins, parts, renames...) are applied at once where they happen,
  as with the in-process bus, and by the other nodes when they read them.
* Delivery: a node reads with ``XREAD`` from the last entry id it saw, so a
  node whose connection blips resumes where it stopped and misses nothing
  the cap still holds. A batch whose reply was lost is sent again
  (at-least-once); every entry carries its node and that node's sequence
  number, and readers skip what they have seen (exactly-once to clients).
* Message ids: one Lua script appends a batch, taking each room message's id
  from a cluster counter (``INCR``), seeded at start with this node's
  largest stored id so ids never go back.

Sending and reading are tasks on the event loop; :meth:`RedisBus.publish`
only queues. While Redis is unreachable :attr:`RedisBus.ready` is False (the
chat service then refuses new messages) and the reader reconnects with
back-off, doubling from 50 ms to 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis
import redis.exceptions

from sockhub import metrics
from sockhub.hub import HubError
from sockhub.hub.events import HubEvent, Message, Private
from sockhub.store.bus_codec import decode, encode

log = logging.getLogger("sockhub.bus")

#: Entries one XREAD or one publish batch takes at most.
BATCH = 1000
#: Reconnect back-off: first wait, longest wait (seconds).
BACKOFF = (0.05, 2.0)
#: What redis-py raises when the server is gone or does not answer.
DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
#: The most a client's close may take at stop (:func:`close_client`).
CLOSE_WAIT = 1.0

# KEYS: stream, message id counter. ARGV: cap, node, then (seq, kind, body) triples.
# A room message ('m') or a kept private one ('p') takes its id from the
# counter in the same atomic step.
_APPEND = """
local n = 0
for i = 3, #ARGV, 3 do
  if ARGV[i+1] == 'm' or ARGV[i+1] == 'p' then
    local id = redis.call('INCR', KEYS[2])
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
               'n', ARGV[2], 's', ARGV[i], 'k', ARGV[i+1], 'e', ARGV[i+2], 'm', id)
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
               'n', ARGV[2], 's', ARGV[i], 'k', ARGV[i+1], 'e', ARGV[i+2])
  end
  n = n + 1
end
return n
"""
# KEYS: the message id counter. ARGV: this node's largest stored id.
_SEED = """
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


class BusUnavailable(Exception):
    """Redis cannot be reached (at start: the server exits 1 with this message)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry as a node reads it.

    ``kind``: ``m`` a room message (``event`` carries its cluster id),
    ``p`` a private message kept for accounts (``event`` a Private whose
    ``msgid`` is its cluster id; ``user`` the readers, sender's user name
    and address), ``e`` any other hub event; ``u``, ``q``, ``s``, ``o``,
    ``r`` and ``k`` carry data (``user``): a user arriving, a new node
    asking for state, one user's (or the rooms') state, a user's
    server-operator status, a room's registration, a read marker moved.
    """

    node: str
    kind: str
    event: HubEvent | None
    user: dict[str, Any] | None


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: a ``redis://`` or ``rediss://`` URL and a password (from a file).

    ``ca_file``: with ``rediss://``, the CA the server's certificate must be
    signed by (PEM); None: the system's CA store. The host name is checked
    either way (redis-py's ``ssl_cert_reqs="required"``).
    """

    url: str
    password: str | None = None
    ca_file: str | None = None

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"password": self.password, "socket_connect_timeout": 1.0,
                                  "socket_timeout": 5.0, "retry_on_timeout": False}
        if self.url.startswith("rediss://"):
            kwargs |= {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
            if self.ca_file is not None:
                kwargs["ssl_ca_certs"] = self.ca_file
        return kwargs

    def sync_client(self, timeout: float = 0.5) -> redis.Redis:
        kwargs = self.client_kwargs() | {"socket_timeout": timeout,
                                         "socket_connect_timeout": timeout}
        return redis.Redis.from_url(self.url, **kwargs)

    def async_client(self) -> aredis.Redis:
        return aredis.Redis.from_url(self.url, **self.client_kwargs())


class RedisHashStore:
    """A store of the cluster's in one Redis hash, read and written synchronously.

    Each call is one round trip with a 0.5 s socket timeout (as the nick
    claims in ``store/presence.py``); Redis unreachable or refusing raises
    HubError ``bus_down`` with ``down``, which the chat service tells the
    client as it is (never a hang, never a wrong answer).
    """

    down = "the chat cluster's Redis is unreachable: try again shortly"

    def __init__(self, target: RedisTarget, key: str) -> None:
        self.key = key
        self._sync = target.sync_client(timeout=0.5)

    def close(self) -> None:
        self._sync.close()

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._sync, method)(*args)
        except (*DOWN, redis.exceptions.RedisError) as exc:
            raise HubError("bus_down", self.down) from exc


class RedisBus:
    """Publishes this node's events to the cluster stream and reads everyone's.

    Args:
        target: where Redis is.
        node: this node's id, unique per process run.
        prefix: the cluster's key prefix.
        stream_max: the stream's approximate cap (``MAXLEN ~``).
        handler: called on the loop with each batch of entries read, in
            stream order, this node's own room messages included.
        on_ready: called when the bus goes down (False) or back up (True).
    """

    def __init__(self, target: RedisTarget, *, node: str, prefix: str, stream_max: int,
                 handler: Callable[[list[Entry]], None],
                 on_ready: Callable[[bool], None] | None = None) -> None:
        self.target, self.node, self.prefix = target, node, prefix
        self.stream, self.counter = f"{prefix}:events", f"{prefix}:msgid"
        self.stream_max = stream_max
        self.handler, self.on_ready = handler, on_ready
        self.ready = False
        self.last_id = "$"
        self._seq = 0
        self._seen: dict[str, int] = {}  # node → the highest sequence number read from it
        self._outbox: list[tuple[str, str, str]] = []  # (seq, kind, body)
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: aredis.Redis | None = None
        self._closed = False

    # Start and stop -----------------------------------------------------------

    def connect(self, largest_id: int) -> None:
        """Check Redis answers, seed the id counter and note where reading starts.

        Synchronous, at start, before any listener opens. Raises
        :class:`BusUnavailable` with a message for people.
        """
        client = self.target.sync_client(timeout=2.0)
        try:
            client.ping()
            client.eval(_SEED, 1, self.counter, largest_id)
            last: Any = client.xrevrange(self.stream, count=1)
            self.last_id = bytes(last[0][0]).decode() if last else "0-0"
        except redis.exceptions.AuthenticationError as exc:
            raise BusUnavailable(f"Redis at {_safe(self.target.url)} refused the password: "
                                 f"{exc}") from exc
        except (*DOWN, redis.exceptions.RedisError) as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise BusUnavailable(
                    f"Redis at {_safe(self.target.url)}: its TLS certificate is not signed by "
                    f"a trusted CA (--bus-ca-file names the CA): {exc}") from exc
            raise BusUnavailable(f"cannot reach Redis at {_safe(self.target.url)}: {exc}") from exc
        finally:
            client.close()
        self._set_ready(True)

    def hello(self, answered: Callable[[], bool], timeout: float) -> None:
        """Ask the running nodes for their state; read until ``answered()`` or ``timeout``.

        Synchronous, at start, after :meth:`connect`: the doors open on a
        hub that already knows who is where.
        """
        self.publish_data("q", {})
        client = self.target.sync_client(timeout=timeout + 1.0)
        deadline = time.monotonic() + timeout
        try:
            self._send_now(client)
            while not answered():
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("bus: not every node answered within %.1f s; starting with "
                                "what came", timeout)
                    break
                reply: Any = client.xread({self.stream: self.last_id}, count=BATCH,
                                          block=max(1, int(left * 1000)))
                if reply:
                    self._take(reply[0][1])
        except (*DOWN, redis.exceptions.RedisError) as exc:
            raise BusUnavailable(f"Redis at {_safe(self.target.url)} failed at start: "
                                 f"{exc}") from exc
        finally:
            client.close()

    def _send_now(self, client: redis.Redis) -> None:
        args: list[Any] = [self.stream_max, self.node]
        for item in self._outbox:
            args.extend(item)
        client.eval(_APPEND, 2, self.stream, self.counter, *args)
        self._outbox.clear()

    def start(self) -> None:
        """Start the reader and the writer (the event loop must be running)."""
        self._client = self.target.async_client()
        # EVALSHA, loading the script again after NOSCRIPT (a restarted Redis).
        self._append = self._client.register_script(_APPEND)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._reader(), name="bus-reader"),
                       loop.create_task(self._writer(), name="bus-writer")]
        for task in self._tasks:
            task.add_done_callback(_report_end)

    def close(self) -> None:
        """Stop; what is still queued (the quits of a clean stop) is sent first, briefly."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._outbox and self.ready:
            sync = self.target.sync_client(timeout=0.5)
            try:
                self._send_now(sync)
            except (*DOWN, redis.exceptions.RedisError) as exc:
                log.warning("bus: %d events not sent at stop: %s", len(self._outbox), exc)
            finally:
                sync.close()
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(close_client(client))

    async def flush(self, timeout: float = 1.0) -> None:
        """Wait (up to ``timeout``) until what is queued has been sent."""
        deadline = time.monotonic() + timeout
        while self._outbox and self.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    # Publishing -------------------------------------------------------------------

    def publish(self, event: HubEvent) -> None:
        """Queue ``event`` for the stream; sent within this loop turn or on reconnect."""
        self._queue("m" if type(event) is Message else "e", encode(event))

    def publish_data(self, kind: str, data: dict[str, Any]) -> None:
        """Send the other nodes something that is not a hub event.

        Kinds: ``u`` a user arrived here; ``q`` a node started and asks the
        others for their state; ``s`` one user's state (or the rooms' and
        bans'), for the node that asked; ``o`` a user became (or stopped
        being) a server operator; ``r`` a room's registration changed;
        ``k`` an account's read marker moved; ``p`` a private message kept
        for accounts (``{"e": the encoded Private, "r": readers, "u": user
        name, "a": address}``), which takes a cluster id as room messages do.
        """
        self._queue(kind, json.dumps(data, separators=(",", ":")))

    def _queue(self, kind: str, body: str) -> None:
        self._seq += 1
        self._outbox.append((str(self._seq), kind, body))
        self._wake.set()

    async def _writer(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                if not self.ready:
                    await self._up.wait()
                batch = self._outbox[:BATCH]
                args: list[Any] = [self.stream_max, self.node]
                for item in batch:
                    args.extend(item)
                try:
                    assert self._client is not None
                    await self._append(keys=[self.stream, self.counter], args=args)
                except DOWN as exc:  # sent again once Redis is back (readers dedupe)
                    self._lost(exc)
                    continue
                except redis.exceptions.RedisError:
                    log.exception("bus: Redis refused %d events; dropped", len(batch))
                except Exception:  # a bug: logged, and the writer goes on with the rest
                    log.exception("bus: sending %d events failed; dropped", len(batch))
                del self._outbox[:len(batch)]

    # Reading ---------------------------------------------------------------------

    async def _reader(self) -> None:
        delay = BACKOFF[0]
        while not self._closed:
            try:
                assert self._client is not None
                if not self.ready:
                    await self._client.ping()
                    self._set_ready(True)
                    delay = BACKOFF[0]
                reply: Any = await self._client.xread({self.stream: self.last_id}, count=BATCH,
                                                 block=1000)
            except DOWN as exc:
                self._lost(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF[1])
                continue
            except Exception:  # e.g. a ResponseError: logged, never a silently dead reader
                log.exception("bus: reading the stream failed; retrying in %.2f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF[1])
                continue
            if reply:
                try:
                    self._take(reply[0][1])
                except Exception:  # skip the batch (last_id moved on), keep reading
                    log.exception("bus: a batch read from the stream could not be taken")

    def _take(self, raw: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        entries: list[Entry] = []
        seen = self._seen
        now_ms = time.time() * 1000
        for entry_id, fields in raw:
            self.last_id = entry_id.decode()
            try:
                node = fields[b"n"].decode()
                seq = int(fields[b"s"])
                if seq <= seen.get(node, 0):
                    continue  # sent twice (a reply lost on the way back): once is enough
                seen[node] = seq
                kind = fields[b"k"].decode()
                if kind in ("u", "q", "s", "o", "r", "k"):
                    data = json.loads(fields[b"e"])
                    if not isinstance(data, dict):
                        raise ValueError("data that is not an object")
                    entries.append(Entry(node, kind, None, data))
                    continue
                if kind == "p":
                    data = json.loads(fields[b"e"])
                    private = decode(data["e"])
                    if not isinstance(private, Private) or not isinstance(data.get("r"), list):
                        raise ValueError("a kept private message that is not one")
                    kept = dataclasses.replace(private, msgid=str(int(fields[b"m"])))
                    entries.append(Entry(node, kind, kept, data))
                    continue
                event = decode(fields[b"e"])
                if kind == "m" and isinstance(event, Message):
                    event = _with_id(event, int(fields[b"m"]))
                entries.append(Entry(node, kind, event, None))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("bus: skipped a malformed entry %s: %s", self.last_id, exc)
        if raw:
            lag = max(0.0, (now_ms - int(raw[-1][0].split(b"-")[0])) / 1000)
            metrics.chat.bus_lag.observe(lag)
        if entries:
            try:
                self.handler(entries)
            except Exception:
                log.exception("bus: handling %d entries failed", len(entries))

    # Up and down ------------------------------------------------------------------

    def _lost(self, exc: BaseException) -> None:
        if self.ready:
            log.warning("bus: lost Redis at %s (%s); new messages are refused until it "
                        "is back", _safe(self.target.url), exc)
            metrics.chat.bus_reconnects += 1
            self._set_ready(False)

    def _set_ready(self, ready: bool) -> None:
        was, self.ready = self.ready, ready
        metrics.chat.bus_ready = ready
        if ready:
            self._up.set()
            self._wake.set()
        else:
            self._up.clear()
        if was != ready:
            if ready and self._tasks:
                log.info("bus: Redis is back; catching up from %s", self.last_id)
            if self.on_ready is not None:
                self.on_ready(ready)


def _with_id(message: Message, message_id: int) -> Message:
    """``message`` with its cluster id; every other field kept (username, address...)."""
    return dataclasses.replace(message, id=message_id)


def _report_end(task: asyncio.Task[None]) -> None:
    """Log a bus task that ended other than by :meth:`RedisBus.close` (never silently)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("bus: task %s stopped", task.get_name(), exc_info=task.exception())


def _safe(url: str) -> str:
    """``url`` without any password it may carry (never logged)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


async def close_client(client: aredis.Redis) -> None:
    """Close an async client, in at most :data:`CLOSE_WAIT` seconds.

    redis-py's close waits for each connection's ``wait_closed``, which can
    wait for ever (redis/redis-py#3941); at shutdown the event loop waits for
    every task, so one such wait held a stopping node past its deadline.
    """
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.aclose(), CLOSE_WAIT)
