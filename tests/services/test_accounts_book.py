"""The account book (services/accounts.py) with time passed in: limits per address,
never per account; the store's table and its migration."""

from __future__ import annotations

import sqlite3

import pytest

from sockhub.hub import HubError
from sockhub.services.accounts import Accounts
from sockhub.services.login import AuthLimiter
from sockhub.store.accounts import AccountStore
from sockhub.store.history import ChatStore

ME, THEM = "10.0.0.1:5000", "10.0.0.2:6000"


@pytest.fixture
def book(tmp_path):
    ChatStore(tmp_path / "chat.sqlite3").close()
    store = AccountStore(tmp_path / "chat.sqlite3")
    limiter = AuthLimiter(delay=1.0, delay_max=4.0, window=60.0, max_pending=64,
                          max_pending_per_ip=2)
    yield Accounts(store, mode="open", per_hour=2, limiter=limiter)
    store.close()


def test_wrong_passwords_slow_the_guesser_not_the_owner(book):
    book.register("alice", "hunter22", address=ME, by_oper=False, now=0.0)
    first = book.identify("alice", "guess1xx", address=THEM, now=0.0)
    assert first.account is None and first.delay == 1.0
    second = book.identify("alice", "guess2xx", address=THEM, now=0.1)
    assert second.delay == 2.0
    # Two wrong answers not yet told: the guesser's address is out of slots...
    third = book.identify("alice", "hunter22", address=THEM, now=0.2)
    assert third.account is None and third.refusal is not None
    # ...while the owner, elsewhere, gets in at once, and again and again.
    for now in (0.3, 0.4, 0.5):
        assert book.identify("ALICE", "hunter22", address=ME, now=now).account == "alice"
    # Once the delays are over the guesser's slots come back; the delay keeps doubling.
    assert book.identify("alice", "guess3xx", address=THEM, now=3.0).delay == 4.0
    assert book.identify("alice", "guess4xx", address=THEM, now=8.0).delay == 4.0  # capped
    # An unknown account costs the same check and says the same thing.
    unknown = book.identify("nobody", "hunter22", address=ME, now=9.0)
    assert unknown.account is None and unknown.delay == 1.0


def test_registrations_per_address_per_hour(book):
    book.register("u1", "hunter22", address=ME, by_oper=False, now=0.0)
    book.register("u2", "hunter22", address="10.0.0.1:7000", by_oper=False, now=10.0)
    with pytest.raises(HubError, match="too many accounts"):
        book.register("u3", "hunter22", address=ME, by_oper=False, now=20.0)
    book.register("u3", "hunter22", address=THEM, by_oper=False, now=20.0)  # another address
    book.register("u4", "hunter22", address=ME, by_oper=True, now=20.0)  # operators: no limit
    book.register("u5", "hunter22", address=ME, by_oper=False, now=3600.0)  # an hour later


def test_modes_and_checks(book):
    book.configure(mode="off", per_hour=2, password_min=8)
    with pytest.raises(HubError, match="turned off"):
        book.register("alice", "hunter22", address=ME, by_oper=False, now=0.0)
    book.configure(mode="operators-only", per_hour=2, password_min=8)
    with pytest.raises(HubError, match="only operators"):
        book.register("alice", "hunter22", address=ME, by_oper=False, now=0.0)
    assert book.register("alice", "hunter22", address=ME, by_oper=True, now=0.0) == "alice"
    with pytest.raises(HubError, match="already exists"):
        book.register("ALICE", "hunter22", address=ME, by_oper=True, now=0.0)
    with pytest.raises(HubError, match="invalid account name"):
        book.register("#room", "hunter22", address=ME, by_oper=True, now=0.0)
    with pytest.raises(HubError, match="spaces"):
        book.register("bob", "two words", address=ME, by_oper=True, now=0.0)
    book.set_password("alice", "newpassword")
    assert book.identify("alice", "newpassword", address=ME, now=1.0).account == "alice"
    book.drop("alice")
    assert book.name_of("alice") is None and book.scram("alice") is None
    with pytest.raises(HubError, match="no account"):
        book.drop("alice")


def test_the_table_is_added_to_an_old_store_and_holds_no_password(tmp_path):
    path = tmp_path / "chat.sqlite3"
    old = sqlite3.connect(path)  # a chat store from before accounts
    old.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, text TEXT)")
    old.execute("INSERT INTO messages (text) VALUES ('kept')")
    old.commit()
    old.close()
    store = AccountStore(path)
    book = Accounts(store, mode="open", per_hour=5,
                    limiter=AuthLimiter(delay=1, delay_max=1, window=1, max_pending=1,
                                        max_pending_per_ip=1))
    book.register("alice", "hunter22", address=ME, by_oper=False, now=0.0)
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT text FROM messages").fetchall() == [("kept",)]
    row = db.execute("SELECT * FROM accounts").fetchone()
    assert row[1] == "alice" and row[2].startswith("scrypt$")
    assert not any(b"hunter22" in (v if isinstance(v, bytes) else str(v).encode())
                   for v in row)
    db.close()
