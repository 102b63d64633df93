"""Quiet rooms (``quiet_above``): arrivals and departures of a big room reach its operators only.

So that N clients arriving in one room cost O(N) deliveries, not O(N²), as
IRC servers' auditorium modes (``+u``) do for very large channels.
"""

from __future__ import annotations

from helpers import NoScan
from sockhub.hub import Hub, User
from sockhub.hub.events import HubEvent, Joined, Kicked, Message, Parted, Quit


class Inbox:
    def __init__(self) -> None:
        self.events: list[HubEvent] = []

    def deliver(self, event: HubEvent) -> None:
        self.events.append(event)


def arrive(hub: Hub, nick: str, room: str = "#big") -> tuple[User, Inbox]:
    inbox = Inbox()
    user = hub.register(nick, inbox, address="10.0.0.1")
    hub.apply(hub.join(user, room, 1.0))
    return user, inbox


def kinds(inbox: Inbox) -> list[type]:
    return [type(e) for e in inbox.events]


def test_past_the_size_only_the_member_and_the_operators_hear_arrivals_and_departures():
    hub = Hub(quiet_above=3)
    _, op_inbox = arrive(hub, "op")  # the creator runs the room
    _, bob_inbox = arrive(hub, "bob")
    arrive(hub, "carol")  # 3 members: not past the size, announced to all
    assert [e.nick for e in bob_inbox.events if isinstance(e, Joined)] == ["bob", "carol"]
    dave, dave_inbox = arrive(hub, "dave")  # 4 > 3: quiet
    assert hub.is_quiet(hub.rooms["#big"])
    assert [e.nick for e in bob_inbox.events if isinstance(e, Joined)] == ["bob", "carol"]
    assert [e.nick for e in op_inbox.events if isinstance(e, Joined)][-1] == "dave"
    assert kinds(dave_inbox) == [Joined]  # the joiner's own arrival
    hub.apply(hub.say(dave, "#big", "hello all", 2.0))
    assert isinstance(bob_inbox.events[-1], Message)  # messages still reach everyone
    bob_inbox.events.clear()
    hub.apply(hub.part(dave, "#big", "bye", 3.0))
    assert isinstance(dave_inbox.events[-1], Parted)
    assert isinstance(op_inbox.events[-1], Parted)
    assert bob_inbox.events == []


def test_a_quit_from_a_quiet_room_reaches_operators_and_small_rooms_only():
    hub = Hub(quiet_above=2)
    _, op_inbox = arrive(hub, "op")
    _, bob_inbox = arrive(hub, "bob")
    _, pal_inbox = arrive(hub, "pal", "#small")
    leaver, _ = arrive(hub, "leaver")  # #big is quiet now
    hub.apply(hub.join(leaver, "#small", 1.0))
    for inbox in (op_inbox, bob_inbox, pal_inbox):
        inbox.events.clear()
    hub.apply(hub.quit(leaver, "gone", 2.0))
    assert kinds(op_inbox) == [Quit]
    assert kinds(pal_inbox) == [Quit]  # shares a small room with the leaver
    assert bob_inbox.events == []


def test_kicks_are_told_to_everyone_even_in_a_quiet_room():
    hub = Hub(quiet_above=2)
    op, _ = arrive(hub, "op")
    _, bob_inbox = arrive(hub, "bob")
    arrive(hub, "victim")
    hub.apply(hub.kick(op, "#big", "victim", "out", 1.0))
    assert isinstance(bob_inbox.events[-1], Kicked)


def test_arrivals_cost_linear_deliveries_and_none_is_the_old_behaviour():
    def deliveries(quiet_above: int | None, n: int) -> int:
        hub = Hub(quiet_above=quiet_above)
        inboxes = [arrive(hub, f"u{i}")[1] for i in range(n)]
        return sum(len(inbox.events) for inbox in inboxes)

    assert deliveries(None, 400) == 400 * 401 // 2  # everyone hears every later arrival
    quiet = deliveries(10, 400)
    # The first 10 announced to all, then each arrival to itself and the one operator.
    assert quiet == 10 * 11 // 2 + 390 * 2
    assert deliveries(10, 800) - quiet == 400 * 2  # linear: twice the clients, twice the cost


def test_joining_a_quiet_room_looks_at_its_operators_not_its_members():
    hub = Hub(quiet_above=10)
    for i in range(30):
        arrive(hub, f"u{i}")
    room = hub.find_room("#big")
    assert room is not None and hub.is_quiet(room)
    room.members = NoScan(room.members)
    _, inbox = arrive(hub, "late")  # O(operators): it would raise on a scan
    assert kinds(inbox) == [Joined]
    assert [u.nick for u in room.operators_present()] == ["u0"]


def test_lusers_counts_leave_with_the_user_and_skip_one_already_gone():
    hub = Hub()
    alice, _ = arrive(hub, "alice")
    bob, _ = arrive(hub, "bob")
    hub.set_invisible(alice, True)
    hub.set_oper(alice, True)
    assert hub.user_counts() == (2, 1, 1)
    hub.apply(hub.quit(alice, "bye", 2.0))
    assert hub.user_counts() == (1, 0, 0)
    hub.set_oper(alice, True)  # an OPER checked off the loop, answered after she left
    assert hub.user_counts() == (1, 0, 0)
    hub.state.forget(bob)  # a shutdown takes users out without a Quit
    assert hub.user_counts() == (0, 0, 0)
