"""Accounts at the line door: /register, /identify, a password on connect, owned nicks,
wrong passwords and registration floods (docs/accounts.md)."""

from __future__ import annotations

import pytest

from net import LineClient, chat_client, open_client
from sockhub.passwords import hash_password

OPER_HASH = hash_password("s3cret", log_n=10)  # cheap cost: tests only


async def arrive(port: int, nick: str) -> LineClient:
    """Connect and take ``nick``, reading no further than "you are"."""
    client = LineClient(*await open_client(port))
    await client.expect("enter a nick")
    await client.send(nick)
    await client.expect(f"-- you are {nick}")
    return client


@pytest.fixture
async def chat(serve, tmp_path):
    async def start(**options):
        settings = {"data_dir": str(tmp_path), "flood_rate": None, "account_delay": 0.05,
                    "account_delay_max": 0.2, **options}
        return (await serve("chat", options=settings)).ports[0]

    return start


async def test_register_logout_identify_and_password_on_connect(chat):
    port = await chat()
    alice = await chat_client(port, "alice")
    await alice.send("/register hunter22")
    assert await alice.expect("registered") == \
        "-- account alice registered; you are logged in"
    await alice.send("/register hunter22")
    assert await alice.expect("error:") == "error: account alice already exists"
    await alice.send("/logout")
    await alice.expect("-- you are logged out")
    await alice.send("/identify hunter22")
    await alice.expect("-- you are logged in as alice")
    await alice.send("/quit")
    await alice.expect_eof()
    # A password on connect: /identify ACCOUNT PASSWORD instead of a nick.
    again = LineClient(*await open_client(port))
    await again.expect("enter a nick")
    await again.send("/identify ALICE hunter22")
    await again.expect("-- you are alice, logged in as alice")
    await again.expect("#lobby * alice joined")
    again.close()


async def test_wrong_password_is_told_late_and_one_at_a_time(chat):
    port = await chat()
    alice = await chat_client(port, "alice")
    await alice.send("/register hunter22")
    await alice.expect("you are logged in")
    bob = await chat_client(port, "bob")
    await bob.send("/identify alice wrongpass")
    await bob.send("/identify alice wrongpass")  # before the first is told
    assert await bob.expect("error:") == "error: wait for the answer to your last attempt"
    assert await bob.expect("error:") == "error: wrong account name or password"
    await bob.send("/identify nosuchaccount wrongpass")
    assert await bob.expect("error:") == "error: wrong account name or password"
    # The owner is never locked out: the right password works at once.
    await bob.send("/identify alice hunter22")
    await bob.expect("-- you are logged in as alice")
    for client in (alice, bob):
        client.close()


async def test_weak_passwords_and_names_are_refused(chat):
    port = await chat()
    alice = await chat_client(port, "alicealice")
    await alice.send("/register short")
    assert "at least 8" in await alice.expect("error:")
    await alice.send("/register ALICEalice")
    assert await alice.expect("error:") == "error: the password may not be the account's name"
    await alice.send("/register bad\x01password")
    assert "control characters" in await alice.expect("error:")
    await alice.send("/register other hunter22")
    assert await alice.expect("error:") == \
        "error: usage: /register PASSWORD (it registers your nick)"
    await alice.send("/password old newpassword")
    assert "log in to an account first" in await alice.expect("error:")
    alice.close()


async def test_registration_flood_is_limited_per_address(chat):
    port = await chat(accounts_per_hour=2)
    clients = [await chat_client(port, f"user{i}") for i in range(3)]
    for client in clients[:2]:
        await client.send("/register hunter22")
        await client.expect("you are logged in")
    await clients[2].send("/register hunter22")
    assert "too many accounts registered from your address" in await clients[2].expect("error:")
    for client in clients:
        client.close()


async def test_registration_off_and_operators_only(chat):
    port = await chat(accounts="operators-only", operators={"root": OPER_HASH})
    alice = await chat_client(port, "alice")
    await alice.send("/register hunter22")
    assert await alice.expect("error:") == "error: only operators register accounts here"
    root = await chat_client(port, "root")
    await root.send("/oper root s3cret")
    await root.expect("you are now a server operator")
    await root.send("/register alice hunter22")
    await root.expect("-- account alice registered")
    await alice.send("/identify hunter22")
    await alice.expect("-- you are logged in as alice")
    # The operator resets a forgotten password; the old one stops working.
    await root.send("/resetpass alice newpassword1")
    await root.expect("-- the password of alice is set")
    await alice.send("/identify oldpassword")
    await alice.expect("wrong account name or password")
    await alice.send("/identify newpassword1")
    await alice.expect("-- you are logged in as alice")
    await alice.send("/resetpass root whatever12")
    assert await alice.expect("error:") == "error: only operators reset passwords"
    for client in (alice, root):
        client.close()


async def test_change_password_and_drop(chat):
    port = await chat()
    alice = await chat_client(port, "alice")
    await alice.send("/register hunter22")
    await alice.expect("you are logged in")
    await alice.send("/password wrongold newpassword1")
    await alice.expect("wrong account name or password")
    await alice.send("/password hunter22 newpassword1")
    await alice.expect("-- the password of alice is changed")
    await alice.send("/drop newpassword1")
    await alice.expect("-- account alice is dropped")
    await alice.send("/identify newpassword1")
    await alice.expect("wrong account name or password")
    alice.close()


async def test_owned_nick_is_renamed_after_the_grace_period(chat):
    port = await chat(nick_grace=0.3)
    alice = await chat_client(port, "alice")
    await alice.send("/register hunter22")
    await alice.expect("you are logged in")
    await alice.send("/quit")
    await alice.expect_eof()
    mallory = await arrive(port, "alice")
    note = await mallory.expect("belongs to account")
    assert note == ("-- nick alice belongs to account alice: /identify PASSWORD within "
                    "0.3 seconds, or you will be renamed")
    line = await mallory.expect("you did not identify")
    assert line.startswith("-- you did not identify for alice; you are now guest-")
    # Identifying in time keeps it.
    owner = await arrive(port, "alice")
    await owner.expect("belongs to account")
    await owner.send("/identify hunter22")
    await owner.expect("-- you are logged in as alice")
    await owner.send("/who")
    line = await owner.expect("-- in #lobby (")
    assert "alice" in line.split(": ", 1)[1].split()
    # A rename onto an owned nick is watched too.
    for client in (mallory, owner):
        client.close()


async def test_no_one_takes_the_name_nickserv(chat):
    """Else the passwords line users /msg to NickServ, as IRC users do, would reach them."""
    port = await chat()
    mallory = LineClient(*await open_client(port))
    await mallory.expect("enter a nick")
    await mallory.send("NickServ")
    assert "accounts service" in await mallory.expect("error:")
    await mallory.send("mallory")
    await mallory.expect("-- you are mallory")
    await mallory.send("/nick nickserv")
    assert "accounts service" in await mallory.expect("error:")
    alice = await chat_client(port, "alice")
    await alice.send("/msg NickServ IDENTIFY hunter22")
    await alice.expect("error:")
    await alice.send("/register nickserv1")  # a password like the name is still one
    await alice.expect("you are logged in")
    for client in (mallory, alice):
        client.close()
