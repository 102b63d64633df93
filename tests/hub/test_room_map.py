"""A user's rooms map (hub/model.py RoomMap): a dict's behaviour in the small forms.

One room is held bare and many in a dict (issue 16: a one-entry dict was 184 B
of an idle client). Each test checks the map against a plain dict given the
same operations, so nothing a caller relied on changes with the form.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockhub.hub import Hub, HubError
from sockhub.hub.events import HubEvent
from sockhub.hub.model import Room, RoomMap


class Inbox:
    def deliver(self, event: HubEvent) -> None:
        pass


def same(rooms: RoomMap, expected: dict[str, Room]) -> None:
    """``rooms`` answers every question as the dict ``expected`` does, in its order."""
    assert len(rooms) == len(expected) and bool(rooms) == bool(expected)
    assert list(rooms) == list(expected)
    assert list(rooms.keys()) == list(expected.keys())
    assert list(rooms.values()) == list(expected.values())
    assert list(rooms.items()) == list(expected.items())
    assert rooms == expected and dict(rooms) == expected
    for key, room in expected.items():
        assert key in rooms and rooms[key] is room and rooms.get(key) is room
    for missing in ("#nowhere", "", 3):
        assert missing not in rooms and rooms.get(missing) is None  # type: ignore[arg-type]
        assert rooms.get(missing, "x") == "x"  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        rooms["#nowhere"]


def test_one_room_is_held_bare_and_many_in_a_dict():
    rooms, expected = RoomMap(), {}
    same(rooms, expected)
    a, b, c = Room("#a"), Room("#B"), Room("#c")
    rooms[a.key] = a
    expected[a.key] = a
    same(rooms, expected)
    assert rooms._many is None and rooms._one is a  # one room: no dict at all
    rooms[b.key] = b  # the second room: a dict, in the order joined
    expected[b.key] = b
    same(rooms, expected)
    assert rooms._many is not None and rooms._one is None
    rooms[c.key] = c
    expected[c.key] = c
    same(rooms, expected)
    assert rooms.pop(a.key) is a and rooms.pop(a.key, None) is None
    del expected[a.key]
    same(rooms, expected)
    del rooms[c.key]  # down to one: bare again
    del expected[c.key]
    same(rooms, expected)
    assert rooms._many is None and rooms._one is b
    del rooms[b.key]
    del expected[b.key]
    same(rooms, expected)
    assert rooms._many is None and rooms._one is None
    with pytest.raises(KeyError):
        del rooms[b.key]
    rooms[a.key] = a  # and back into one
    expected[a.key] = a
    same(rooms, expected)
    assert rooms.keys().isdisjoint({"#b"}) and not rooms.keys().isdisjoint({"#a"})


def test_a_key_that_is_not_the_rooms_own_is_still_a_mapping():
    rooms, room = RoomMap(), Room("#a")
    rooms["other"] = room
    same(rooms, {"other": room})
    rooms["#a"] = room
    same(rooms, {"other": room, "#a": room})
    del rooms["other"]
    same(rooms, {"#a": room})
    assert rooms._one is room


@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["#a", "#b", "#c", "#d"]))))
def test_any_joins_and_parts_give_what_a_dict_gives(steps):
    made = {name: Room(name) for name in ("#a", "#b", "#c", "#d")}
    rooms, expected = RoomMap(), {}
    for join, name in steps:
        if join:
            rooms[name] = expected[name] = made[name]
        else:
            assert rooms.pop(name, None) is expected.pop(name, None)
        same(rooms, expected)


def test_it_is_smaller_than_the_dict_it_replaces():
    room = Room("#a")
    rooms = RoomMap()
    rooms[room.key] = room
    assert sys.getsizeof(rooms) < sys.getsizeof({room.key: room}) / 2


def test_users_join_a_second_room_part_to_none_and_rejoin():
    hub = Hub(rooms_per_user=2)
    alice = hub.register("alice", Inbox(), address="10.0.0.1")
    bob = hub.register("bob", Inbox(), address="10.0.0.2")
    for user in (alice, bob):
        hub.apply(hub.join(user, "#One", 1.0))
    one = hub.find_room("#one")
    assert list(alice.rooms.values()) == [one] and alice.rooms._many is None
    hub.apply(hub.join(alice, "#two", 2.0))
    two = hub.find_room("#two")
    assert list(alice.rooms) == ["#one", "#two"] and alice.rooms.get("#two") is two
    with pytest.raises(HubError) as exc:  # the cap counts through the map
        hub.join(alice, "#three", 2.0)
    assert exc.value.code == "too_many_rooms"
    hub.apply(hub.rename(alice, "Alice2", 3.0))  # a rename walks the rooms
    assert set(one.members) == {"alice2", "bob"} and set(two.members) == {"alice2"}
    hub.apply(hub.part(alice, "#ONE", "", 4.0))
    assert list(alice.rooms.values()) == [two] and alice.rooms._many is None
    assert "alice2" not in one.members
    hub.apply(hub.part(alice, "#two", "", 5.0))
    assert not alice.rooms and len(alice.rooms) == 0 and hub.find_room("#two") is None
    hub.apply(hub.join(alice, "#one", 6.0))
    assert list(alice.rooms.values()) == [one] and "alice2" in one.members
    hub.apply(hub.quit(alice, "", 7.0))
    assert not alice.rooms and set(one.members) == {"bob"}
