"""Message's own __init__ (issue 16: set through its slots) keeps the frozen contract."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from sockhub.hub.events import Message


def test_defaults_equality_hash_and_match_args():
    plain = Message("#r", "ann", "hi", 1.0)
    assert (plain.action, plain.id, plain.history, plain.notice, plain.meta, plain.username,
            plain.address, plain.origin) == (False, None, False, False, (), "", "", 0)
    full = Message("#r", "ann", "hi", 1.0, True, 5, True, True, (("+k", "v"),), "u", "a", 9)
    assert full == Message(room="#r", nick="ann", text="hi", ts=1.0, action=True, id=5,
                           history=True, notice=True, meta=(("+k", "v"),), username="u",
                           address="a", origin=9)
    assert full != plain and hash(full) != hash(plain)
    assert len({full, dataclasses.replace(full)}) == 1
    match full:
        case Message("#r", "ann", text):
            assert text == "hi"
        case _:
            pytest.fail("no match")


def test_still_frozen_replaceable_and_picklable():
    message = Message("#r", "ann", "hi", 1.0, username="u")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.text = "changed"  # type: ignore[misc]
    assert dataclasses.replace(message, id=3) == Message("#r", "ann", "hi", 1.0, id=3,
                                                         username="u")
    assert pickle.loads(pickle.dumps(message)) == message
    assert repr(message).startswith("Message(room='#r', nick='ann', text='hi', ts=1.0")
    with pytest.raises(TypeError):
        Message("#r", "ann")  # type: ignore[call-arg]
