"""Multiclient in the hub alone (hub/sessions.py), and a fan-out that survives a raising member."""

from __future__ import annotations

import logging

from sockhub.hub import Hub, Joined, Message, Quit
from sockhub.hub.events import HubEvent
from sockhub.hub.sessions import Sessions, acted_elsewhere, members_of
from sockhub.store.bus import LocalBus


class Inbox:
    def __init__(self) -> None:
        self.events: list[HubEvent] = []

    def deliver(self, event: HubEvent) -> None:
        self.events.append(event)


class Broken:
    def deliver(self, event: HubEvent) -> None:
        raise RuntimeError("a door bug")


def test_one_user_two_sessions_one_presence():
    hub = Hub()
    phone, laptop, bob_inbox = Inbox(), Inbox(), Inbox()
    alice = hub.register("alice", phone)
    bob = hub.register("bob", bob_inbox)
    hub.apply(hub.join(bob, "#room", 1.0))
    hub.apply(hub.join(alice, "#room", 2.0, origin=id(phone)))
    hub.attach(alice, laptop)
    assert members_of(alice.member) == (phone, laptop)
    assert list(hub.find_room("#room").members) == ["bob", "alice"]  # one entry
    said = hub.say(alice, "#room", "hi", 3.0, origin=id(laptop))
    hub.apply(said)
    assert said in phone.events and said in laptop.events and said in bob_inbox.events
    assert acted_elsewhere(said, phone) and not acted_elsewhere(said, laptop)
    # The first connection leaves: alice stays, with the plain member again.
    assert hub.detach(alice, phone) is True
    assert alice.member is laptop
    assert hub.detach(alice, laptop) is False  # the last: the caller quits the user
    hub.apply(hub.quit(alice, "bye", 4.0))
    assert [type(e) for e in bob_inbox.events].count(Quit) == 1


def test_a_raising_member_does_not_stop_the_fan_out(caplog):
    hub = Hub()
    inboxes = [Inbox() for _ in range(3)]
    users = [hub.register(f"u{i}", inbox) for i, inbox in enumerate(inboxes)]
    broken = hub.register("broken", Broken())
    for user in (users[0], broken, users[1], users[2]):  # the broken one in the middle
        hub.apply(hub.join(user, "#room", 1.0))
    with caplog.at_level(logging.ERROR, logger="sockhub.hub"):
        message = hub.say(users[0], "#room", "still delivered", 2.0)
        hub.apply(message)
        hub.apply(hub.private(users[1], "broken", "to the broken one", 3.0))
    assert all(message in inbox.events for inbox in inboxes)
    assert "delivery of Message to Broken failed" in caplog.text
    # A session of several that raises: the others still get it.
    good = Inbox()
    group = Sessions([Broken(), good])
    group.deliver(Joined("#x", "u0", 1.0))
    assert len(good.events) == 1


def test_local_bus_keeps_publishing_past_a_raising_subscriber(caplog):
    bus = LocalBus()
    got: list[HubEvent] = []

    def broken(event: HubEvent) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    bus.subscribe(got.append)
    event = Message("#room", "u0", "hi", 1.0)
    with caplog.at_level(logging.ERROR, logger="sockhub.bus"):
        bus.publish(event)
    assert got == [event]
    assert "a subscriber failed on Message" in caplog.text
