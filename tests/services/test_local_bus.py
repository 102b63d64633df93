"""LocalBus (issue 16): subscribers that take no room messages, and a commit's batch."""

from __future__ import annotations

import logging

from sockhub.hub.events import HubEvent, Joined, Message, Quit
from sockhub.store.bus import LocalBus


def test_a_subscriber_may_leave_out_room_messages_and_order_is_kept():
    bus = LocalBus()
    calls: list[tuple[str, HubEvent]] = []
    bus.subscribe(lambda event: calls.append(("all", event)))
    bus.subscribe(lambda event: calls.append(("other", event)), messages=False)
    bus.subscribe(lambda event: calls.append(("last", event)))
    said, joined = Message("#r", "ann", "hi", 1.0), Joined("#r", "bob", 2.0)
    bus.publish(said)
    bus.publish(joined)
    assert calls == [("all", said), ("last", said),
                     ("all", joined), ("other", joined), ("last", joined)]


def test_publish_all_is_publish_of_each_in_order():
    for takers in (1, 2):  # the chat service's single message subscriber, and more
        bus = LocalBus()
        got: list[list[HubEvent]] = [[] for _ in range(takers)]
        for box in got:
            bus.subscribe(box.append)
        skipped: list[HubEvent] = []
        bus.subscribe(skipped.append, messages=False)
        batch = [Message("#r", "ann", f"m{i}", float(i)) for i in range(5)]
        bus.publish_all(batch)
        assert got == [batch] * takers
        assert skipped == []


def test_a_raising_subscriber_costs_no_other_message_of_the_batch(caplog):
    bus = LocalBus()
    got: list[HubEvent] = []

    def picky(event: HubEvent) -> None:
        if isinstance(event, Message) and event.text == "bad":
            raise RuntimeError("subscriber bug")
        got.append(event)

    bus.subscribe(picky)
    batch = [Message("#r", "ann", text, 1.0) for text in ("a", "bad", "c")]
    with caplog.at_level(logging.ERROR, logger="sockhub.bus"):
        bus.publish_all(batch)
    assert got == [batch[0], batch[2]]
    assert "a subscriber failed on Message" in caplog.text
    bus.close()
    bus.publish(Quit("ann", "bye", 2.0))
    bus.publish_all(batch)
    assert got == [batch[0], batch[2]]


def test_the_only_message_subscriber_takes_a_commit_whole_in_its_batch_form(caplog):
    bus = LocalBus()
    batches: list[list[Message]] = []
    singles: list[HubEvent] = []
    bus.subscribe(singles.append, batch=batches.append)
    bus.subscribe(singles.append, messages=False)
    batch = [Message("#r", "ann", f"m{i}", float(i)) for i in range(3)]
    bus.publish_all(batch)
    assert batches == [batch] and singles == []
    bus.publish(batch[0])  # publish() is one event: the per-event form
    assert singles == [batch[0]]

    def broken(messages: list[Message]) -> None:
        raise RuntimeError("subscriber bug")

    failing = LocalBus()
    failing.subscribe(singles.append, batch=broken)
    with caplog.at_level(logging.ERROR, logger="sockhub.bus"):
        failing.publish_all(batch)  # logged, not passed on to the commit
    assert "a subscriber failed on a batch of messages" in caplog.text


def test_a_second_message_subscriber_turns_the_batch_form_off():
    bus = LocalBus()
    batches: list[list[Message]] = []
    first: list[HubEvent] = []
    second: list[HubEvent] = []
    bus.subscribe(first.append, batch=batches.append)
    bus.subscribe(second.append)
    batch = [Message("#r", "ann", f"m{i}", float(i)) for i in range(3)]
    bus.publish_all(batch)
    assert batches == [] and first == second == batch
