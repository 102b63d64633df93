"""Process-wide metrics, exposed in the Prometheus text format (``GET /metrics``).

The hot paths only add to plain integers: a listener's connection counts, a
door's messages, the chat fan-out histogram's buckets. Nothing there takes a
lock or calls into prometheus-client; a chat delivery costs a few
microseconds and a counter must not add a measurable share of that
(BENCHMARKS.md, "Metrics"). prometheus-client renders the figures only when
they are scraped, through one collector that reads the integers, into a
registry of this process's own (not the library's global default one, which
other libraries in the same process may fill).

Counts are per process: with ``--workers N`` each worker has its own, and a
scrape is answered by whichever worker accepted the connection.

This module reads no clock and opens no socket, so doors may import it
(pyproject.toml, the layer contracts); whoever measures a duration passes it
in seconds. prometheus-client is imported on the first scrape only.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

#: Why a connection was refused before admission: a closed set of label
#: values, never the text the client was told.
REFUSAL_REASONS = ("server_full", "per_ip")

#: The chat doors, by the name their messages are counted under.
DOORS = ("line", "irc", "web")

#: Upper bounds (seconds) of the fan-out latency buckets: a message to a
#: room of ten is tens of microseconds, to a room of thousands milliseconds.
FANOUT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                  0.1, 0.25, 0.5, 1.0)


class ListenerCounts:
    """One listener's connections (all the engine's servers of that name add up here)."""

    __slots__ = ("accepted", "open", "refused", "slow_dropped")

    def __init__(self) -> None:
        self.open = 0
        self.accepted = 0
        self.refused = dict.fromkeys(REFUSAL_REASONS, 0)
        #: Dropped because unsent output passed ``write_buffer_max``.
        self.slow_dropped = 0


class DoorCounts:
    """One chat door's messages: room and private messages, in from and out to its users."""

    __slots__ = ("messages_in", "messages_out")

    def __init__(self) -> None:
        self.messages_in = 0
        self.messages_out = 0


class Histogram:
    """Cumulative-on-scrape buckets: one ``bisect`` and two additions per observation."""

    __slots__ = ("bounds", "buckets", "count", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def observe_since(self, end: float, starts: list[float]) -> None:
        """Observe ``end - start`` for each of ``starts``, which must be ascending.

        The chat service's commit observes every message of its batch (issue
        16): for a batch longer than the bucket list, a bisect of ``starts``
        per bound counts a bucket's share at once (``end - start <= bound``
        when ``start >= end - bound``), instead of a bisect per message.
        """
        n = len(starts)
        if n <= len(self.bounds):
            for start in starts:
                self.observe(end - start)
            return
        buckets, at_most = self.buckets, 0
        for index, bound in enumerate(self.bounds):
            within = n - bisect_left(starts, end - bound)  # observations <= bound
            buckets[index] += within - at_most
            at_most = within
        buckets[-1] += n - at_most
        self.count += n
        self.sum += end * n - sum(starts)

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets: ``(le, observations <= le)``, ending with ``+Inf``."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.buckets, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class ChatCounts:
    """The chat service's own figures."""

    __slots__ = ("bus_lag", "bus_ready", "bus_reconnects", "fanout", "history_commits",
                 "history_rows", "history_stored")

    def __init__(self) -> None:
        #: Rows in the history table (set when the store opens, then counted up).
        self.history_rows = 0
        #: Rows this process stored since it started.
        self.history_stored = 0
        #: Transactions that stored them (group commits): rows over commits is
        #: the mean batch, which sets what a message's share of a commit costs.
        self.history_commits = 0
        #: From the hub accepting a room message to every delivery queued (store included).
        self.fanout = Histogram(FANOUT_BUCKETS)
        #: The Redis bus (docs/scale-out.md): from an event entering the
        #: stream to this node reading it; times Redis was lost; up now.
        self.bus_lag = Histogram(FANOUT_BUCKETS)
        self.bus_reconnects = 0
        self.bus_ready = True

    def stored_batch(self, rows: int) -> None:
        """A transaction stored ``rows`` room messages (one group commit)."""
        self.history_rows += rows
        self.history_stored += rows
        self.history_commits += 1


_listeners: dict[str, ListenerCounts] = {}
_doors: dict[str, DoorCounts] = {name: DoorCounts() for name in DOORS}
chat = ChatCounts()


def listener(name: str) -> ListenerCounts:
    """The counts of the listener called ``name`` (as in its ``listening on`` line)."""
    counts = _listeners.get(name)
    if counts is None:
        counts = _listeners[name] = ListenerCounts()
    return counts


def door(name: str) -> DoorCounts:
    """The message counts of one chat door (``line``, ``irc``, ``web``)."""
    counts = _doors.get(name)
    if counts is None:
        counts = _doors[name] = DoorCounts()
    return counts


class _Collector:
    """Renders the integers above as Prometheus metric families, at scrape time."""

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        listeners = sorted(_listeners.items())
        open_ = GaugeMetricFamily("sockhub_connections_open",
                                  "Connections open, per listener", labels=["listener"])
        accepted = CounterMetricFamily("sockhub_connections_accepted",
                                       "Connections admitted, per listener", labels=["listener"])
        refused = CounterMetricFamily(
            "sockhub_connections_refused",
            "Connections refused before admission, per listener and reason",
            labels=["listener", "reason"])
        slow = CounterMetricFamily(
            "sockhub_slow_consumers_dropped",
            "Clients dropped because their unsent output passed write_buffer_max, per listener",
            labels=["listener"])
        for name, counts in listeners:
            open_.add_metric([name], counts.open)
            accepted.add_metric([name], counts.accepted)
            for reason, n in counts.refused.items():
                refused.add_metric([name, reason], n)
            slow.add_metric([name], counts.slow_dropped)
        yield from (open_, accepted, refused, slow)

        messages_in = CounterMetricFamily(
            "sockhub_chat_messages_in",
            "Room and private messages the hub accepted from this door's users", labels=["door"])
        messages_out = CounterMetricFamily(
            "sockhub_chat_messages_out",
            "Room and private messages delivered to this door's users", labels=["door"])
        for name, door_counts in sorted(_doors.items()):
            messages_in.add_metric([name], door_counts.messages_in)
            messages_out.add_metric([name], door_counts.messages_out)
        yield from (messages_in, messages_out)

        yield GaugeMetricFamily("sockhub_chat_history_rows",
                                "Messages in the chat history store", value=chat.history_rows)
        yield CounterMetricFamily("sockhub_chat_history_rows_stored",
                                  "Messages this process stored in the chat history",
                                  value=chat.history_stored)
        yield CounterMetricFamily("sockhub_chat_history_commits",
                                  "Transactions that stored room messages (group commits)",
                                  value=chat.history_commits)
        fanout = chat.fanout
        yield HistogramMetricFamily(
            "sockhub_chat_fanout_seconds",
            "From the hub accepting a room message to every delivery queued (storing included)",
            buckets=fanout.cumulative(), sum_value=fanout.sum)
        lag = chat.bus_lag
        yield HistogramMetricFamily(
            "sockhub_chat_bus_lag_seconds",
            "From an event entering the Redis stream to this node reading it (--bus only)",
            buckets=lag.cumulative(), sum_value=lag.sum)
        yield CounterMetricFamily("sockhub_chat_bus_reconnects",
                                  "Times this node lost Redis and had to reconnect",
                                  value=chat.bus_reconnects)
        yield GaugeMetricFamily("sockhub_chat_bus_ready",
                                "1 while the bus is up (always 1 in-process)",
                                value=int(chat.bus_ready))

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked collector: names are not reserved at register time


_registry: CollectorRegistry | None = None


def registry() -> CollectorRegistry:
    """This process's registry: sockhub's figures and the process collector's (CPU, memory)."""
    global _registry
    if _registry is None:
        from prometheus_client import (
            CollectorRegistry,
            GCCollector,
            PlatformCollector,
            ProcessCollector,
        )

        made = CollectorRegistry(auto_describe=False)
        made.register(_Collector())
        ProcessCollector(registry=made)
        PlatformCollector(registry=made)
        GCCollector(registry=made)
        _registry = made
    return _registry


def exposition() -> tuple[bytes, str]:
    """``GET /metrics``: the body in the Prometheus text format, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry()), CONTENT_TYPE_LATEST
