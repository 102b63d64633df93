"""The hub alone: no sockets, no loop, just calls and the events members get."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockhub.hub import Hub, HubError, Joined, Message, NickChanged, Parted, Private, Quit
from sockhub.hub.events import (
    AwayChanged,
    BanChanged,
    HubEvent,
    Kicked,
    ModeChange,
    TopicChanged,
)
from sockhub.hub.names import (
    CONTROLS,
    CTCP_DELIMITER,
    IRC_FORMATTING,
    clean_text,
    fold,
    nick_problem,
    room_problem,
)


class Inbox:
    def __init__(self) -> None:
        self.events: list[HubEvent] = []

    def deliver(self, event: HubEvent) -> None:
        self.events.append(event)

    def take(self) -> list[HubEvent]:
        events, self.events = self.events, []
        return events


def make_user(hub: Hub, nick: str, address: str = "10.0.0.1"):
    inbox = Inbox()
    user = hub.register(nick, inbox, address=address)
    return user, inbox


def apply(hub: Hub, event) -> None:
    hub.apply(event)


@pytest.fixture
def hub() -> Hub:
    return Hub(protected_rooms=["#lobby"])


def test_join_creates_the_room_and_tells_members(hub):
    alice, a = make_user(hub, "alice")
    bob, b = make_user(hub, "bob")
    apply(hub, hub.join(alice, "#dev", 1.0))
    apply(hub, hub.join(bob, "#Dev", 2.0))
    room = hub.find_room("#DEV")
    assert room is not None and room.name == "#dev"
    assert set(room.members) == {"alice", "bob"}
    assert a.take() == [Joined("#dev", "alice", 1.0), Joined("#dev", "bob", 2.0)]
    assert b.take() == [Joined("#dev", "bob", 2.0)]
    assert room.operators == {"alice"}  # the creator runs an unprotected room


def test_protected_rooms_have_no_creator_operator(hub):
    alice, _ = make_user(hub, "alice")
    apply(hub, hub.join(alice, "#lobby", 1.0))
    room = hub.find_room("#lobby")
    assert room.protected and not room.operators
    with pytest.raises(HubError) as exc:
        hub.set_topic(alice, "#lobby", "mine", 2.0)
    assert exc.value.code == "not_operator"
    alice.is_oper = True
    apply(hub, hub.set_topic(alice, "#lobby", "welcome", 3.0))
    assert room.topic == "welcome" and room.topic_by == "alice"


def test_messages_reach_every_member_once_and_no_one_else(hub):
    users = [make_user(hub, f"u{i}") for i in range(5)]
    outsider, out = make_user(hub, "outsider")
    for user, _ in users:
        apply(hub, hub.join(user, "#r", 1.0))
    for _, inbox in users:
        inbox.take()
    message = hub.say(users[0][0], "#r", "hello", 2.0)
    apply(hub, message)
    for _, inbox in users:
        assert inbox.take() == [Message("#r", "u0", "hello", 2.0, username="u0",
                                        address="10.0.0.1")]
    assert out.take() == []
    with pytest.raises(HubError) as exc:
        hub.say(outsider, "#r", "let me in", 3.0)
    assert exc.value.code == "not_in_room"


def test_private_message_goes_to_target_and_echoes_to_sender_only(hub):
    alice, a = make_user(hub, "alice")
    _, b = make_user(hub, "bob")
    _, c = make_user(hub, "carol")
    event = hub.private(alice, "BOB", "psst", 1.0)
    apply(hub, event)
    assert event == Private("alice", "bob", "psst", 1.0)
    assert a.take() == [event] and b.take() == [event] and c.take() == []
    with pytest.raises(HubError) as exc:
        hub.private(alice, "nobody", "hi", 1.0)
    assert exc.value.code == "no_such_nick"


def test_nick_collisions_are_case_insensitive(hub):
    make_user(hub, "Alice")
    with pytest.raises(HubError) as exc:
        make_user(hub, "aLiCe")
    assert exc.value.code == "nick_in_use"
    bob, _ = make_user(hub, "bob")
    with pytest.raises(HubError):
        hub.rename(bob, "ALICE", 1.0)


def test_rename_updates_rooms_and_tells_neighbours_once(hub):
    alice, a = make_user(hub, "alice")
    bob, b = make_user(hub, "bob")
    for room in ("#one", "#two"):
        apply(hub, hub.join(alice, room, 1.0))
        apply(hub, hub.join(bob, room, 1.0))
    a.take(), b.take()
    apply(hub, hub.rename(alice, "alicia", 2.0))
    assert a.take() == [NickChanged("alice", "alicia", 2.0)]
    assert b.take() == [NickChanged("alice", "alicia", 2.0)]  # once, though two rooms
    assert hub.find_user("alicia") is alice and hub.find_user("alice") is None
    assert "alicia" in hub.find_room("#one").members
    assert "alicia" in hub.find_room("#one").operators  # operator status follows the nick
    assert hub.rename(alice, "alicia", 3.0) is None  # no change, no event
    apply(hub, hub.rename(alice, "Alicia", 3.0))  # a change of case is a change
    assert alice.nick == "Alicia"


def test_part_and_quit(hub):
    alice, a = make_user(hub, "alice")
    bob, b = make_user(hub, "bob")
    apply(hub, hub.join(alice, "#r", 1.0))
    apply(hub, hub.join(bob, "#r", 1.0))
    a.take(), b.take()
    apply(hub, hub.part(bob, "#r", "bye", 2.0))
    assert a.take() == [Parted("#r", "bob", "bye", 2.0)]
    assert b.take() == [Parted("#r", "bob", "bye", 2.0)]  # the parter sees it too
    apply(hub, hub.join(bob, "#r", 3.0))
    a.take()
    apply(hub, hub.quit(bob, "connection lost", 4.0))
    assert a.take() == [Quit("bob", "connection lost", 4.0)]
    assert hub.find_user("bob") is None
    assert set(hub.find_room("#r").members) == {"alice"}
    apply(hub, hub.quit(alice, "", 5.0))
    assert hub.find_room("#r") is None  # empty rooms go away


def test_kick_needs_an_operator_and_removes_the_victim(hub):
    alice, _ = make_user(hub, "alice")
    bob, b = make_user(hub, "bob")
    apply(hub, hub.join(alice, "#r", 1.0))
    apply(hub, hub.join(bob, "#r", 1.0))
    with pytest.raises(HubError) as exc:
        hub.kick(bob, "#r", "alice", "", 2.0)
    assert exc.value.code == "not_operator"
    apply(hub, hub.kick(alice, "#r", "BOB", "spam", 2.0))
    assert b.take()[-1] == Kicked("#r", "bob", "alice", "spam", 2.0)
    assert "bob" not in hub.find_room("#r").members and not bob.rooms
    with pytest.raises(HubError) as exc:
        hub.kick(alice, "#r", "bob", "", 3.0)
    assert exc.value.code == "not_in_room"


@pytest.mark.parametrize(
    ("mask", "nick", "address", "banned"),
    [
        ("bob", "Bob", "10.0.0.2", True),
        ("b*", "bert", "10.0.0.2", True),
        ("10.0.0.*", "carl", "10.0.0.9", True),
        ("*!*@10.0.0.9", "carl", "10.0.0.9", True),
        ("bob!*@*", "carl", "10.0.0.9", False),
        ("bob", "bobby", "10.0.0.2", False),
    ],
)
def test_ban_masks(hub, mask, nick, address, banned):
    op, _ = make_user(hub, "op")
    apply(hub, hub.join(op, "#r", 1.0))
    event = hub.ban(op, "#r", mask, 2.0)
    apply(hub, event)
    assert isinstance(event, BanChanged) and event.added
    user, _ = make_user(hub, nick, address=address)
    if banned:
        with pytest.raises(HubError) as exc:
            hub.join(user, "#r", 3.0)
        assert exc.value.code == "banned"
    else:
        apply(hub, hub.join(user, "#r", 3.0))


def test_bans_outlive_the_room_and_can_be_lifted(hub):
    op, _ = make_user(hub, "op")
    apply(hub, hub.join(op, "#r", 1.0))
    apply(hub, hub.ban(op, "#r", "bob", 2.0))
    with pytest.raises(HubError):
        hub.ban(op, "#r", "BOB", 2.0)  # already banned
    apply(hub, hub.quit(op, "", 3.0))
    assert hub.find_room("#r") is None
    bob, _ = make_user(hub, "bob")
    with pytest.raises(HubError):
        hub.join(bob, "#r", 4.0)
    oper, _ = make_user(hub, "oper")
    oper.is_oper = True
    apply(hub, hub.ban(oper, "#r", "bob", 5.0, add=False))
    apply(hub, hub.join(bob, "#r", 6.0))


def test_new_rooms_are_topic_locked_until_an_operator_unlocks_them(hub):
    alice, a = make_user(hub, "alice")
    bob, _ = make_user(hub, "bob")
    apply(hub, hub.join(alice, "#r", 1.0))
    apply(hub, hub.join(bob, "#r", 1.0))
    with pytest.raises(HubError) as exc:  # +nt, as IRC servers make new channels
        hub.set_topic(bob, "#r", "bob's topic", 2.0)
    assert exc.value.code == "not_operator"
    event, _ = hub.set_modes(alice, "#r", [ModeChange("topic_lock", False)], 2.0)
    apply(hub, event)
    apply(hub, hub.set_topic(bob, "#r", "bob's topic", 2.0))
    assert a.take()[-1] == TopicChanged("#r", "bob", "bob's topic", 2.0, "bob", "10.0.0.1")
    with pytest.raises(HubError):
        hub.set_topic(bob, "#r", "x" * 1000, 3.0)


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "invalid_text"), ("x" * 4001, "invalid_text"), ("   ", "invalid_text"),
     (" \t ", "invalid_text")],
)
def test_bad_message_text(hub, text, code):
    alice, _ = make_user(hub, "alice")
    apply(hub, hub.join(alice, "#r", 1.0))
    with pytest.raises(HubError) as exc:
        hub.say(alice, "#r", text, 2.0)
    assert exc.value.code == code


@pytest.mark.parametrize(
    "nick", ["alice", "Bob", "[away]", "a-b_c", "x" * 30, "`tick", "{brace}", "z9"]
)
def test_valid_nicks(nick):
    assert nick_problem(nick) is None


@pytest.mark.parametrize(
    "nick", ["", "9lives", "-dash", "has space", "x" * 31, "émile", "a,b", "#room", "a:b", "a!b",
             "NickServ", "nickserv"]
)
def test_invalid_nicks(nick):
    assert nick_problem(nick)


@pytest.mark.parametrize("room", ["#a", "#lobby", "#dev-ops.2", "#Under_score"])
def test_valid_rooms(room):
    assert room_problem(room) is None


@pytest.mark.parametrize("room", ["lobby", "#", "#has space", "#" + "x" * 50, "#a,b", "&local"])
def test_invalid_rooms(room):
    assert room_problem(room)


def test_fold_is_ascii_only():
    assert fold("AbC[]") == "abc[]"
    assert fold("É") == "É"


# Control characters (issue 8: terminal injection) -------------------------------


@given(st.text(alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(CONTROLS))))
def test_clean_text_leaves_only_irc_formatting_and_ctcp(text):
    kept = set(IRC_FORMATTING + CTCP_DELIMITER)
    assert all(c in kept for c in clean_text(text) if c in CONTROLS)


def test_clean_text_examples():
    assert clean_text("plain é") == "plain é"
    assert clean_text("\x1b[2J\x00\x7f\x9b\t") == "^[[2J^@^?M-^[ "
    formatted = "\x0304red\x03 \x02bold\x02 \x01ACTION x\x01"
    assert clean_text(formatted) == formatted  # IRC clients expect these


def test_every_text_from_users_is_cleaned(hub):
    esc = "\x1b[2J"
    alice, _ = make_user(hub, "alice")
    bob, _ = make_user(hub, "bob")
    apply(hub, hub.join(alice, "#r", 1.0))
    apply(hub, hub.join(bob, "#r", 1.0))
    assert hub.say(alice, "#r", esc, 2.0).text == "^[[2J"
    assert hub.private(alice, "bob", esc, 2.0).text == "^[[2J"
    tagged = (("+draft/react", esc),)
    assert hub.say(alice, "#r", "hi", 2.0, meta=tagged).meta == (("+draft/react", "^[[2J"),)
    assert hub.private(alice, "bob", "hi", 2.0, meta=tagged).meta[0][1] == "^[[2J"
    assert hub.signal(alice, "#r", tagged, 2.0).meta[0][1] == "^[[2J"
    assert hub.signal(alice, "bob", tagged, 2.0).meta[0][1] == "^[[2J"
    assert hub.set_topic(alice, "#r", esc, 2.0).topic == "^[[2J"
    assert hub.part(alice, "#r", esc, 2.0).reason == "^[[2J"
    assert hub.kick(alice, "#r", "bob", esc, 2.0).reason == "^[[2J"
    assert hub.quit(alice, esc, 2.0).reason == "^[[2J"
    assert hub.set_away(alice, esc, 2.0) == AwayChanged("alice", "^[[2J", 2.0)
    assert hub.register("carol", Inbox(), realname=esc).realname == "^[[2J"
    with pytest.raises(HubError):
        hub.ban(alice, "#r", "bad\x1bmask", 2.0)


def test_protected_rooms_given_anew_apply_to_rooms_that_exist(hub):
    alice, _ = make_user(hub, "alice")
    bob, _ = make_user(hub, "bob")
    apply(hub, hub.join(alice, "#open", 1.0))
    apply(hub, hub.join(bob, "#open", 1.0))
    apply(hub, hub.set_modes(alice, "#open", [ModeChange("topic_lock", False)], 1.5)[0])
    room = hub.find_room("#open")
    assert not room.protected and hub.set_topic(bob, "#open", "bob's", 2.0).topic == "bob's"
    hub.protected = {"#open"}  # a reload lists it
    assert room.protected
    with pytest.raises(HubError):
        hub.set_topic(bob, "#open", "still bob's?", 3.0)
    hub.protected = set()  # no longer protected: it keeps the lock every new room has
    assert room.protected and hub.may_moderate(alice, room)
