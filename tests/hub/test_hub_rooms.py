"""Room settings, away, invites and signals in the hub alone: wire-agnostic, no sockets."""

from __future__ import annotations

import pytest

from sockhub.hub import Hub, HubError
from sockhub.hub.events import (
    AwayChanged,
    HubEvent,
    Invited,
    ModeChange,
    ModeChanged,
    NickChanged,
    Signal,
)
from sockhub.protocols.chat_line import describe_change, render


class Inbox:
    def __init__(self) -> None:
        self.events: list[HubEvent] = []

    def deliver(self, event: HubEvent) -> None:
        self.events.append(event)

    def take(self) -> list[HubEvent]:
        events, self.events = self.events, []
        return events


@pytest.fixture
def hub() -> Hub:
    return Hub(protected_rooms=["#lobby"], rooms_per_user=3)


def user(hub: Hub, nick: str):
    inbox = Inbox()
    return hub.register(nick, inbox, address="10.0.0.1"), inbox


def code(call) -> str:
    with pytest.raises(HubError) as exc:
        call()
    return exc.value.code


def test_modes_change_settings_in_order_and_drop_no_ops(hub):
    op, op_box = user(hub, "op")
    bob, bob_box = user(hub, "bob")
    hub.apply(hub.join(op, "#r", 1.0))
    hub.apply(hub.join(bob, "#r", 2.0))
    op_box.take()
    changes = [ModeChange("moderated", True), ModeChange("moderated", True),
               ModeChange("voice", True, "BOB"), ModeChange("password", True, "pw"),
               ModeChange("limit", True, "5"), ModeChange("no_external", True)]
    event, errors = hub.set_modes(op, "#r", changes, 3.0)
    assert errors == []
    assert event == ModeChanged("#r", "op", (
        ModeChange("moderated", True), ModeChange("voice", True, "bob"),
        ModeChange("password", True, "pw"), ModeChange("limit", True, "5")), 3.0)
    hub.apply(event)
    room = hub.find_room("#r")
    assert room.moderated and room.voiced == {"bob"} and room.password == "pw"
    assert room.limit == 5
    assert bob_box.take()[-1] == event and op_box.take() == [event]
    event, errors = hub.set_modes(op, "#r", [ModeChange("operator", True, "nobody"),
                                             ModeChange("password", True, "has space"),
                                             ModeChange("limit", True, "0"),
                                             ModeChange("voice", True, "op")], 4.0)
    assert [(e.code, e.target) for e in errors] == [
        ("no_such_nick", "nobody"), ("invalid_password", "password"), ("invalid_limit", "limit")]
    assert event is not None and event.changes == (ModeChange("voice", True, "op"),)
    assert code(lambda: hub.set_modes(bob, "#r", [], 5.0)) == "not_operator"
    assert code(lambda: hub.set_modes(op, "#none", [], 5.0)) == "no_such_room"


def test_join_checks_in_order(hub):
    op, _ = user(hub, "op")
    guest, _ = user(hub, "guest")
    hub.apply(hub.join(op, "#r", 1.0))
    event, _ = hub.set_modes(op, "#r", [ModeChange("invite_only", True),
                                        ModeChange("password", True, "pw"),
                                        ModeChange("limit", True, "1")], 2.0)
    hub.apply(event)
    assert code(lambda: hub.join(guest, "#r", 3.0)) == "invite_only"
    hub.apply(ModeChanged("#r", "op", (ModeChange("invite_only", False),), 3.0))
    assert code(lambda: hub.join(guest, "#r", 3.0)) == "bad_password"
    assert code(lambda: hub.join(guest, "#r", 3.0, password="pw")) == "full"
    hub.apply(hub.ban(op, "#r", "guest", 4.0))
    assert code(lambda: hub.join(guest, "#r", 4.0, password="pw")) == "banned"
    hub.apply(hub.invite(op, "guest", "#r", 5.0))  # an invitation gets past all of them
    hub.apply(hub.join(guest, "#r", 5.0))
    assert "guest" in hub.find_room("#r").members
    for name in ("#a", "#b"):
        hub.apply(hub.join(guest, name, 6.0))
    assert code(lambda: hub.join(guest, "#c", 7.0)) == "too_many_rooms"


def test_speaking_rules(hub):
    op, _ = user(hub, "op")
    bob, _ = user(hub, "bob")
    out, _ = user(hub, "out")
    hub.apply(hub.join(op, "#r", 1.0))
    hub.apply(hub.join(bob, "#r", 1.0))
    assert code(lambda: hub.say(out, "#r", "hi", 2.0)) == "not_in_room"  # +n by default
    hub.apply(ModeChanged("#r", "op", (ModeChange("no_external", False),
                                       ModeChange("moderated", True)), 2.0))
    assert code(lambda: hub.say(out, "#r", "hi", 2.0)) == "cannot_send"
    assert code(lambda: hub.say(bob, "#r", "hi", 2.0)) == "cannot_send"
    assert hub.say(op, "#r", "ops talk", 2.0).text == "ops talk"
    hub.apply(ModeChanged("#r", "op", (ModeChange("moderated", False),), 3.0))
    assert hub.say(out, "#r", "outside", 3.0).nick == "out"
    hub.apply(hub.ban(op, "#r", "bob", 4.0))
    assert code(lambda: hub.say(bob, "#r", "hi", 4.0)) == "cannot_send"
    assert hub.signal(op, "#r", (("+typing", "active"),), 5.0) == Signal(
        "op", "#r", None, (("+typing", "active"),), 5.0)


def test_away_invites_and_renames_keep_statuses(hub):
    op, op_box = user(hub, "op")
    bob, _ = user(hub, "bob")
    hub.apply(hub.join(op, "#r", 1.0))
    hub.apply(hub.join(bob, "#r", 1.0))
    op_box.take()
    hub.apply(hub.set_away(bob, "x" * 500, 2.0))
    assert bob.away == "x" * 200
    assert isinstance(op_box.take()[0], AwayChanged)
    hub.apply(hub.set_away(bob, "", 3.0))
    assert bob.away is None
    hub.apply(ModeChanged("#r", "op", (ModeChange("voice", True, "bob"),), 4.0))
    hub.apply(NickChanged("bob", "robert", 5.0))
    assert hub.find_room("#r").voiced == {"robert"}
    carol, carol_box = user(hub, "carol")
    assert code(lambda: hub.invite(carol, "op", "#r", 6.0)) == "not_in_room"
    assert code(lambda: hub.invite(op, "robert", "#r", 6.0)) == "already_in_room"
    invited = hub.invite(op, "carol", "#r", 6.0)
    hub.apply(invited)
    assert carol_box.take() == [Invited("#r", "carol", "op", 6.0)]
    assert hub.find_room("#r").invited == {"carol"}


def test_line_rendering_of_the_new_events():
    assert render(ModeChanged("#r", "op", (ModeChange("moderated", True),
                                           ModeChange("voice", True, "bob"),
                                           ModeChange("password", True, "secret")), 0.0), "") == (
        "00:00:00 #r * op made the room moderated; gave a voice to bob; set a password")
    assert describe_change(ModeChange("limit", True, "5")) == "limited the room to 5 members"
    assert render(AwayChanged("bob", "lunch", 0.0), "") == "00:00:00 * bob is away: lunch"
    assert render(AwayChanged("bob", None, 0.0), "") == "00:00:00 * bob is back"
    assert render(Invited("#r", "me", "op", 0.0), "me") == (
        "00:00:00 * op invites you to #r (/join #r)")


def test_masks_are_irc_wildcards_not_shell_globs():
    from sockhub.hub.names import mask_match

    assert mask_match("foo[m]!*@*", "foo[m]!u@h")  # brackets are nick characters
    assert not mask_match("foo[m]!*@*", "foom!u@h")
    assert mask_match("a?c", "abc") and not mask_match("a?c", "ac")
    assert mask_match("a\\*c", "a*c") and not mask_match("a\\*c", "abc")
    assert mask_match("*", "") and mask_match("10.0.*", "10.0.0.1")
