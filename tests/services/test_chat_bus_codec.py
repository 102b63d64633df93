"""Hub events on the Redis bus (issue 15): every event type survives the trip.

The cluster tests (test_chat_redis.py) send a few event types between real
nodes; these check all of them, field by field, without a Redis: an event
type added to the hub (AccountChanged came with issue 14) that the codec
could not carry was skipped by every other node as "malformed".
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import get_args

import pytest
import redis.exceptions

from sockhub.hub.events import (
    AccountChanged,
    AwayChanged,
    BanChanged,
    HubEvent,
    Invited,
    Joined,
    Kicked,
    Message,
    ModeChange,
    ModeChanged,
    NickChanged,
    Parted,
    Private,
    Quit,
    RealnameChanged,
    Signal,
    TopicChanged,
    Wallops,
)
from sockhub.store.bus_codec import decode, encode
from sockhub.store.bus_redis import Entry, RedisBus, RedisTarget

META = (("+typing", "active"), ("label", "x1"))

#: One event of every type, each field set away from its default.
SAMPLES: list[HubEvent] = [
    Message("#lobby", "alice", "hi ☺", 1.5, action=True, id=7, history=True, notice=True,
            meta=META, username="al", address="192.0.2.1"),
    Private("alice", "bob", "psst", 2.5, action=True, notice=True, meta=META, msgid="ab-1"),
    Signal("alice", "#lobby", None, META, 3.5, msgid="ab-2"),
    Signal("alice", None, "bob", META, 3.5, msgid="ab-3"),
    Joined("#lobby", "alice", 4.5),
    Parted("#lobby", "alice", "bye", 5.5),
    Quit("alice", "gone", 6.5, voluntary=True),
    NickChanged("alice", "alicia", 7.5),
    TopicChanged("#lobby", "alice", "news", 8.5, username="al", address="192.0.2.1"),
    Kicked("#lobby", "bob", "alice", "out", 9.5),
    BanChanged("#lobby", "*!*@192.0.2.9", "alice", True, 10.5),
    ModeChanged("#lobby", "alice", (ModeChange("moderated", True),
                                    ModeChange("limit", True, "20"),
                                    ModeChange("operator", False, "bob")), 11.5),
    AwayChanged("alice", "lunch", 12.5),
    AwayChanged("alice", None, 12.6),
    AccountChanged("alice", "alice-account", 13.5),
    AccountChanged("alice", None, 13.6),
    RealnameChanged("alice", "Alice Liddell", 14.5),
    Wallops("admin", "rebooting soon", 15.5),
    Invited("#lobby", "bob", "alice", 14.5),
]


def test_the_samples_cover_every_hub_event_type():
    assert {type(e) for e in SAMPLES} == set(get_args(HubEvent))


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_hub_event_round_trips(event):
    back = decode(encode(event))
    assert back == event
    assert type(back) is type(event)
    for f in dataclasses.fields(event):  # tuples stay tuples (events are hashable)
        assert type(getattr(back, f.name)) is type(getattr(event, f.name)), f.name
    hash(back)


@pytest.mark.parametrize("text", [b"[]", b"{}", b'{"t": "Nope"}', b"not json",
                                  b'{"t": "Joined", "room": "#a"}',
                                  b'{"t": "Joined", "room": "#a", "nick": "x", "ts": 1, "z": 2}'])
def test_what_is_no_event_is_a_value_error(text):
    with pytest.raises(ValueError):
        decode(text)


def _bus(taken: list[Entry]) -> RedisBus:
    # Never connected: _take is what the reader does with an XREAD reply.
    return RedisBus(RedisTarget("redis://127.0.0.1:1"), node="here", prefix="t",
                    stream_max=100, handler=taken.extend)


def test_a_read_room_message_gets_its_cluster_id_and_keeps_every_other_field():
    taken: list[Entry] = []
    sent = SAMPLES[0]
    assert isinstance(sent, Message)
    raw = {b"n": b"there", b"s": b"1", b"k": b"m", b"e": encode(sent).encode(), b"m": b"42"}
    _bus(taken)._take([(b"1-0", raw)])
    assert [e.event for e in taken] == [dataclasses.replace(sent, id=42)]


def test_a_read_batch_carries_every_event_type_and_skips_only_the_malformed(caplog):
    taken: list[Entry] = []
    bodies = [encode(event).encode() for event in SAMPLES]
    bodies.insert(3, b'{"t":"Nope"}')
    raw = [(f"1-{i}".encode(), {b"n": b"there", b"s": str(i + 1).encode(), b"k": b"e",
                                b"e": body})
           for i, body in enumerate(bodies)]
    _bus(taken)._take(raw)
    assert [e.event for e in taken] == SAMPLES
    assert "skipped a malformed entry 1-3" in caplog.text


class _FlakyStream:
    """An XREAD that fails with an unexpected error once, then gives one entry."""

    def __init__(self, bus: RedisBus, entry: tuple[bytes, dict[bytes, bytes]]) -> None:
        self.bus, self.entry, self.calls = bus, entry, 0

    async def xread(self, streams: dict[str, str], count: int, block: int) -> object:
        self.calls += 1
        if self.calls == 1:
            raise redis.exceptions.ResponseError("WRONGTYPE Operation against a key")
        self.bus._closed = True  # one good read is enough
        return [[b"t:events", [self.entry]]]


async def test_an_unexpected_read_error_is_logged_and_the_reader_goes_on(caplog):
    taken: list[Entry] = []
    bus = _bus(taken)
    bus.ready = True
    event = Joined("#lobby", "alice", 1.0)
    bus._client = _FlakyStream(bus, (b"5-0", {b"n": b"there", b"s": b"1", b"k": b"e",
                                              b"e": encode(event).encode()}))
    await asyncio.wait_for(bus._reader(), 5)
    assert [e.event for e in taken] == [event]
    assert "bus: reading the stream failed" in caplog.text
    assert "WRONGTYPE" in caplog.text
