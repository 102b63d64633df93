"""Hub.say's quick acceptance (issue 16) decides as the full checks do.

``Hub.say`` accepts a member of an unmoderated room without bans, with text
that needs no cleaning, without going through ``_speaking_room`` and
``_checked_text``; every other case takes the full way. These pin the
outcome of each case on both sides of that line, and that the message it
builds is the one the full way built.
"""

from __future__ import annotations

import pytest

from sockhub.hub import Hub, HubError, Message
from sockhub.hub.events import HubEvent, ModeChange, ModeChanged
from sockhub.hub.hub import MESSAGE_MAX


class Inbox:
    def __init__(self) -> None:
        self.events: list[HubEvent] = []

    def deliver(self, event: HubEvent) -> None:
        self.events.append(event)


@pytest.fixture
def hub() -> Hub:
    hub = Hub()
    for nick in ("Op", "bob", "out"):
        hub.register(nick, Inbox(), address="10.0.0.9", username=nick.lower())
    for nick in ("Op", "bob"):
        hub.apply(hub.join(hub.users[nick.lower()], "#Room", 1.0))
    return hub


def code(call) -> str:
    with pytest.raises(HubError) as exc:
        call()
    return exc.value.code


def test_a_member_s_plain_message_is_the_full_message(hub):
    bob = hub.users["bob"]
    said = hub.say(bob, "#ROOM", "hello", 2.0, notice=True, meta=(("+x", "y\x1b"),),
                   origin=7)
    assert said == Message("#Room", "bob", "hello", 2.0, False, notice=True,
                           meta=(("+x", "y^["),), username="bob", address="10.0.0.9",
                           origin=7)
    assert said.id is None and not said.history and not said.action


@pytest.mark.parametrize(("text", "expected"), [
    ("esc \x1b[2J here", "esc ^[[2J here"),  # not printable: cleaned on the full way
    ("tab\there", "tab here"),
    ("x" * MESSAGE_MAX, "x" * MESSAGE_MAX),
    (" leading and trailing ", " leading and trailing "),
])
def test_texts_are_cleaned_or_kept_as_before(hub, text, expected):
    assert hub.say(hub.users["bob"], "#room", text, 2.0).text == expected


@pytest.mark.parametrize("text", ["", " ", " \t ", "x" * (MESSAGE_MAX + 1), "\u3000"])
def test_empty_blank_and_long_texts_are_refused(hub, text):
    assert code(lambda: hub.say(hub.users["bob"], "#room", text, 2.0)) == "invalid_text"


def test_who_may_speak_where(hub):
    op, bob, out = hub.users["op"], hub.users["bob"], hub.users["out"]
    assert code(lambda: hub.say(bob, "#nowhere", "hi", 2.0)) == "no_such_room"
    assert code(lambda: hub.say(out, "#room", "hi", 2.0)) == "not_in_room"  # +n
    hub.apply(ModeChanged("#Room", "Op", (ModeChange("moderated", True),), 2.0))
    assert code(lambda: hub.say(bob, "#room", "hi", 2.0)) == "cannot_send"
    assert hub.say(op, "#room", "ops talk", 2.0).nick == "Op"
    hub.apply(ModeChanged("#Room", "Op", (ModeChange("voice", True, "bob"),), 3.0))
    assert hub.say(bob, "#room", "voiced", 3.0).text == "voiced"
    hub.apply(ModeChanged("#Room", "Op", (ModeChange("moderated", False),
                                          ModeChange("voice", False, "bob")), 4.0))
    hub.apply(hub.ban(op, "#room", "someone-else", 5.0))  # bans, none of them bob's
    assert hub.say(bob, "#room", "still here", 5.0).text == "still here"
    hub.apply(hub.ban(op, "#room", "*!bob@*", 6.0))
    assert code(lambda: hub.say(bob, "#room", "hi", 6.0)) == "cannot_send"
    hub.apply(hub.ban(op, "#room", "*!bob@*", 7.0, add=False))
    assert hub.say(bob, "#room", "unbanned", 7.0).text == "unbanned"


def test_a_room_without_ctcp_still_refuses_a_request(hub):
    op, bob = hub.users["op"], hub.users["bob"]
    hub.apply(ModeChanged("#Room", "Op", (ModeChange("no_ctcp", True),), 2.0))
    assert code(lambda: hub.say(bob, "#room", "\x01VERSION\x01", 2.0)) == "cannot_send"
    assert hub.say(bob, "#room", "\x01ACTION waves\x01", 2.0, action=True).action
    assert hub.say(op, "#room", "plain", 2.0).text == "plain"
