"""``GET /metrics`` figures after real traffic over loopback sockets.

The counts are process-wide, and other tests of this process add to them:
each test reads the exposition before and after and checks the difference.
"""

from __future__ import annotations

import asyncio

import prometheus_client
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from helpers import Broadcaster
from net import STEP, chat_client, open_client, read_until_eof, server_side
from sockhub import metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape() -> Samples:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in after, f"{name}{labels} missing from the exposition"
    return after[key] - before.get(key, 0.0)


class IrcClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def send(self, line: str) -> None:
        self.writer.write(line.encode() + b"\r\n")

    async def expect(self, needle: str) -> str:
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), STEP)
            assert raw, f"EOF waiting for {needle!r}"
            line = raw.decode().rstrip("\r\n")
            if line.startswith("PING"):
                self.send("PONG" + line[4:])
            if needle in line:
                return line


@pytest.fixture
async def hub(serve, tmp_path):
    settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0}
    line, irc = await serve("chat", options=settings)
    return line, irc


async def test_traffic_through_line_and_irc_doors_is_counted(hub):
    line_server, irc_server = hub
    before = scrape()
    alice = await chat_client(line_server.ports[0], "alice")
    bob = await chat_client(line_server.ports[0], "bob")
    carol = IrcClient(*await open_client(irc_server.ports[0]))
    carol.send("NICK carol")
    carol.send("USER c 0 * :Carol")
    await carol.expect(" 001 ")
    carol.send("JOIN #lobby")
    await carol.expect(" 366 ")
    await alice.expect("carol joined")

    during = scrape()
    assert delta(during, before, "sockhub_connections_open", listener="chat") == 2
    assert delta(during, before, "sockhub_connections_open", listener="irc") == 1
    assert delta(during, before, "sockhub_connections_accepted_total", listener="chat") == 2
    assert delta(during, before, "sockhub_connections_accepted_total", listener="irc") == 1

    await alice.send("hello from the line door")  # to alice, bob (line) and carol (irc)
    await carol.expect("PRIVMSG #lobby :hello from the line door")
    await bob.expect("<alice> hello from the line door")
    carol.send("PRIVMSG #lobby :hello from irc")  # to alice and bob; no echo-message
    await alice.expect("<carol> hello from irc")
    await bob.expect("<carol> hello from irc")
    await alice.send("/msg carol psst")  # to carol, and back to alice
    await carol.expect("PRIVMSG carol :psst")
    await alice.expect("[pm to carol]")

    after = scrape()
    assert delta(after, before, "sockhub_chat_messages_in_total", door="line") == 2
    assert delta(after, before, "sockhub_chat_messages_in_total", door="irc") == 1
    assert delta(after, before, "sockhub_chat_messages_in_total", door="web") == 0
    assert delta(after, before, "sockhub_chat_messages_out_total", door="line") == 2 + 2 + 1
    assert delta(after, before, "sockhub_chat_messages_out_total", door="irc") == 1 + 1
    assert delta(after, before, "sockhub_chat_history_rows_stored_total") == 2
    assert delta(after, before, "sockhub_chat_history_commits_total") == 2  # a turn each
    assert after[("sockhub_chat_history_rows", frozenset())] == 2  # a fresh data dir
    assert delta(after, before, "sockhub_chat_fanout_seconds_count") == 2
    assert delta(after, before, "sockhub_chat_fanout_seconds_bucket", le="+Inf") == 2
    assert 0 < delta(after, before, "sockhub_chat_fanout_seconds_sum") < 2 * STEP
    assert delta(after, before, "sockhub_slow_consumers_dropped_total", listener="chat") == 0

    alice.close()
    bob.close()
    carol.writer.close()
    for server in (line_server, irc_server):
        await server.shutdown()
    gone = scrape()
    assert delta(gone, before, "sockhub_connections_open", listener="chat") == 0
    assert delta(gone, before, "sockhub_connections_open", listener="irc") == 0


async def test_history_rows_counts_what_the_store_held_at_start(serve, tmp_path):
    settings = {"data_dir": str(tmp_path), "flood_rate": None}
    server = await serve("chat", options=settings)
    alice = await chat_client(server.ports[0], "alice")
    for i in range(3):
        await alice.send(f"message {i}")
        await alice.expect(f"<alice> message {i}")
    alice.close()
    await server.shutdown()
    server.runtime.close()
    again = await serve("chat", options=settings)
    assert scrape()[("sockhub_chat_history_rows", frozenset())] == 3
    assert again.ports


@pytest.mark.parametrize(("limits", "reason"), [
    ({"max_conns": 1}, "server_full"),
    ({"max_conns_per_ip": 1}, "per_ip"),
])
async def test_refusals_are_counted_by_reason(serve, tmp_path, limits, reason):
    settings = {"data_dir": str(tmp_path), "flood_rate": None}
    server = await serve("chat", options=settings, **limits)
    before = scrape()
    first = await chat_client(server.ports[0], "first")
    reader, _ = await open_client(server.ports[0])
    told = await read_until_eof(reader)
    assert told.startswith(b"error:")
    after = scrape()
    assert delta(after, before, "sockhub_connections_refused_total",
                 listener="chat", reason=reason) == 1
    other = next(r for r in metrics.REFUSAL_REASONS if r != reason)
    assert delta(after, before, "sockhub_connections_refused_total",
                 listener="chat", reason=other) == 0
    assert delta(after, before, "sockhub_connections_accepted_total", listener="chat") == 1
    first.close()


async def test_a_slow_consumer_drop_is_counted(serve):
    Broadcaster.members = []
    server = await serve(Broadcaster, write_high_water=16 * 1024, write_buffer_max=256 * 1024,
                         write_timeout=None)
    before = scrape()
    _, victim_writer = await open_client(server.ports[0])
    victim_writer.transport.pause_reading()  # never reads
    reader, writer = await open_client(server.ports[0])
    victim = server_side(server, victim_writer)
    for _ in range(200):
        writer.write(b"go")
        assert await asyncio.wait_for(reader.readexactly(2), STEP) == b"ok"
        if victim.closed.is_set():
            break
    await asyncio.wait_for(victim.closed.wait(), STEP)
    after = scrape()
    assert delta(after, before, "sockhub_slow_consumers_dropped_total", listener="Broadcaster") == 1
    assert delta(after, before, "sockhub_connections_open", listener="Broadcaster") == 1
    victim_writer.transport.abort()
    writer.close()


def test_the_registry_is_sockhubs_own_not_the_global_default():
    other = prometheus_client.Counter("another_library_events", "Counted by someone else")
    try:
        other.inc()
        assert metrics.registry() is not prometheus_client.REGISTRY
        ours = metrics.exposition()[0].decode()
        assert "another_library_events" not in ours
        assert "sockhub_chat_messages_in_total" in ours
        assert "process_cpu_seconds_total" in ours  # this process's own figures
        theirs = prometheus_client.generate_latest().decode()
        assert "sockhub_" not in theirs
    finally:
        prometheus_client.REGISTRY.unregister(other)


def test_every_metric_is_exposed_before_any_traffic():
    names = {name for name, _ in scrape()}
    for name in ("sockhub_chat_messages_in_total", "sockhub_chat_messages_out_total",
                 "sockhub_chat_history_rows", "sockhub_chat_history_rows_stored_total",
                 "sockhub_chat_history_commits_total",
                 "sockhub_chat_fanout_seconds_bucket", "sockhub_chat_fanout_seconds_count",
                 "sockhub_chat_fanout_seconds_sum"):
        assert name in names


def test_the_fanout_histogram_buckets_are_cumulative():
    histogram = metrics.Histogram((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.005, 2.0):
        histogram.observe(seconds)
    assert histogram.cumulative() == [("0.001", 2), ("0.01", 3), ("+Inf", 4)]
    assert histogram.count == 4
    assert histogram.sum == pytest.approx(2.0065)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2**12), max_size=60), st.integers(0, 2**12))
def test_observing_a_batch_at_once_counts_what_one_by_one_would(offsets, lag):
    """``observe_since`` (a bisect per bound) against ``observe`` per start.

    Every value is a multiple of 2**-12 (bounds too), so each subtraction
    is exact and both ways compare the same numbers.
    """
    bounds = tuple(k / 2**12 for k in (1, 4, 16, 64, 256, 1024, 2048, 3000))
    starts = sorted(offset / 2**12 for offset in offsets)
    end = (max(offsets, default=0) + lag) / 2**12
    one_by_one, at_once = metrics.Histogram(bounds), metrics.Histogram(bounds)
    for start in starts:
        one_by_one.observe(end - start)
    at_once.observe_since(end, starts)
    assert at_once.buckets == one_by_one.buckets
    assert at_once.count == one_by_one.count == len(starts)
    assert at_once.sum == pytest.approx(one_by_one.sum)
