"""Accounts, the review's follow-ups: scrypt off the event loop, logins to an account
dropped or registered again meanwhile, and REGAIN/GHOST (docs/accounts.md).

The servers run in the test's own loop, so a password check held on a
threading.Event shows whether the loop still serves everyone else meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import threading

import pytest

from net import LineClient, chat_client, irc_client, open_client, registered
from sockhub.services import accounts as accounts_module


@pytest.fixture
async def hub(serve, tmp_path):
    async def start(**options):
        settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0,
                    "account_delay": 0.05, "account_delay_max": 0.2, "nick_grace": 5.0,
                    **options}
        line, irc = await serve("chat", options=settings)
        return line.ports[0], irc.ports[0]

    return start


async def began(started: threading.Event) -> bool:
    """Has the held check begun on its thread? Waited for in a thread, not the loop:
    a worker of a loaded machine may start after the loop has served a few lines."""
    return await asyncio.to_thread(started.wait, 5)


@pytest.fixture
def held_check(monkeypatch):
    """The first password check waits (on its thread) until ``release`` is set."""
    real = accounts_module.verify_password
    started, release = threading.Event(), threading.Event()
    calls = []

    def check(password: str, stored: str) -> bool:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            started.set()
            assert release.wait(10), "the test never released the check"
        return real(password, stored)

    monkeypatch.setattr(accounts_module, "verify_password", check)
    yield started, release, calls
    release.set()


async def test_identify_checks_the_password_off_the_event_loop(hub, held_check):
    started, release, calls = held_check
    line_port, _ = await hub()
    await registered(line_port)  # the first check: /register hashes but does not verify
    alice = LineClient(*await open_client(line_port))
    await alice.expect("enter a nick")
    await alice.send("/identify alice hunter22")
    # The check is held on its thread; another client is served meanwhile.
    bob = await chat_client(line_port, "bob")
    await bob.send("hello while alice waits")
    await bob.expect("<bob> hello while alice waits")
    assert await began(started) and calls[0].startswith("sockhub-scrypt")
    await alice.send("/identify alice hunter22")  # one attempt at a time
    await alice.expect("wait for the answer to your last attempt")
    release.set()
    await alice.expect("you are alice, logged in as alice")
    for client in (alice, bob):
        client.close()


async def test_a_login_to_an_account_dropped_and_registered_again_meanwhile_is_refused(
        hub, held_check):
    started, release, _ = held_check
    line_port, _ = await hub()
    await registered(line_port)
    late = LineClient(*await open_client(line_port))
    await late.expect("enter a nick")
    await late.send("/identify alice hunter22")  # right, for the account as it is now
    assert await began(started)  # before the owner's own check, which is not held
    # Meanwhile the owner drops the account and someone registers the name again.
    owner = await chat_client(line_port, "carol")
    await owner.send("/identify alice hunter22")
    await owner.expect("you are logged in as alice")
    await owner.send("/drop hunter22")
    await owner.expect("dropped")
    await registered(line_port, "alice", "another-password")
    assert started.is_set()
    release.set()
    assert "changed meanwhile" in await late.expect("alice")
    # Not logged in, and not alice: the connection may still choose a nick.
    await late.send("late")
    await late.expect("you are late")
    for client in (late, owner):
        client.close()


async def test_regain_renames_a_squatter_and_ghost_disconnects(hub):
    line_port, irc_port = await hub()
    await registered(line_port)
    squatter = await irc_client(irc_port, "alice", "#lobby")
    owner = await chat_client(line_port, "owner")
    await owner.send("/regain")
    await owner.expect("log in to an account first")
    await owner.send("/identify alice hunter22")
    await owner.expect("you are logged in as alice")
    await owner.send("/regain")
    await owner.expect("you are alice again")
    await owner.send("/regain")
    await owner.expect("you hold alice already")
    renamed = await squatter.expect(" NICK ")
    assert renamed.startswith(":alice!") and " NICK guest-" in renamed
    await squatter.send(b"NICK alice\r\n")
    await squatter.expect(" 433 ")
    # GHOST, from IRC: the holder is disconnected, the nick freed.
    ghost_owner = LineClient(*await open_client(irc_port))
    await ghost_owner.send(b"CAP LS 302\r\nNICK other\r\nUSER o 0 * :o\r\nCAP REQ :sasl\r\n")
    await ghost_owner.expect(" ACK ")
    await ghost_owner.send(b"AUTHENTICATE PLAIN\r\n")
    await ghost_owner.expect("AUTHENTICATE +")
    await ghost_owner.send(b"AUTHENTICATE " + base64.b64encode(b"\0alice\0hunter22") + b"\r\n")
    await ghost_owner.expect(" 903 ")
    await ghost_owner.send(b"CAP END\r\n")
    await ghost_owner.expect(" 001 other ")
    await ghost_owner.send(b"PRIVMSG NickServ :GHOST bob\r\n")
    assert "bob is not a registered nick" in await ghost_owner.expect("NOTICE other")
    await ghost_owner.send(b"PRIVMSG NickServ :GHOST alice\r\n")
    assert (await ghost_owner.expect("NOTICE other")).endswith(":alice is free")
    await owner.expect_eof()  # the line connection that held alice is closed
    await ghost_owner.send(b"NICK alice\r\n")
    await ghost_owner.expect(" NICK alice")
    for client in (squatter, ghost_owner):
        client.close()


async def test_the_grace_period_waits_for_a_password_being_checked(hub, held_check):
    started, release, _ = held_check
    line_port, _ = await hub(nick_grace=0.2)
    await registered(line_port, "alice")
    await registered(line_port, "bob")
    alice = await chat_client(line_port, "alice")
    assert [line for line in alice.seen if "belongs to account alice" in line]
    await alice.send("/identify hunter22")  # held on its thread past the grace period
    # bob's grace starts later and ends later: once he is renamed, alice's has run out.
    squatter = await chat_client(line_port, "bob")
    await squatter.expect("you did not identify for bob", timeout=3)
    assert await began(started)
    release.set()
    await alice.expect("you are logged in as alice")
    assert not [line for line in alice.seen if "did not identify" in line]
    await alice.send("/who")
    assert "alice" in (await alice.expect("-- in #lobby (")).split(": ", 1)[1].split()
    for client in (alice, squatter):
        client.close()
