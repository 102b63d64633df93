"""Every scrypt off the event loop: registering, resetting a password, /oper and OPER
(issue 14, item 6; docs/accounts.md).

The servers run in the test's own loop. A hash or check is held on its thread
(a threading.Event), so another client being answered meanwhile proves the loop
free: were the scrypt on the loop, the loop itself would wait on the event and
the other client's answer would never come. The asking client's own replies
keep the order of its commands, labeled responses included.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from net import LineClient, chat_client, irc_client, open_client
from sockhub.passwords import hash_password
from sockhub.services import accounts as accounts_module
from sockhub.services import chat as chat_module

OPER_HASH = hash_password("s3cret", log_n=10)  # cheap cost: tests only


class Gates:
    """Patch ``module.name`` so that each call waits on the next armed gate, if any."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str) -> None:
        real = getattr(module, name)
        self.armed: list[tuple[threading.Event, threading.Event]] = []
        self.all: list[threading.Event] = []
        self.threads: list[str] = []

        def held(*args: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            if self.armed:
                started, release = self.armed.pop(0)
                started.set()
                assert release.wait(10), "the test never released the computation"
            return real(*args)

        monkeypatch.setattr(module, name, held)

    def arm(self) -> tuple[threading.Event, threading.Event]:
        gate = threading.Event(), threading.Event()
        self.armed.append(gate)
        self.all.append(gate[1])
        return gate


@pytest.fixture
def gates(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[ModuleType, str], Gates]]:
    made: list[Gates] = []

    def make(module: ModuleType, name: str) -> Gates:
        made.append(Gates(monkeypatch, module, name))
        return made[-1]

    yield make
    for each in made:
        for release in each.all:
            release.set()


@pytest.fixture
async def hub(serve, tmp_path):
    async def start(**options):
        settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0,
                    "operators": {"root": OPER_HASH}, **options}
        line, irc = await serve("chat", options=settings)
        return line.ports[0], irc.ports[0]

    return start


async def served_meanwhile(port: int, nick: str) -> None:
    """Another line-door client arrives and is answered."""
    other = await chat_client(port, nick)
    await other.send(f"hello from {nick}")
    await other.expect(f"<{nick}> hello from {nick}")
    other.close()


async def irc_pong_meanwhile(port: int, nick: str) -> None:
    other = await irc_client(port, nick)
    await other.send(f"PING {nick}-token\r\n".encode())
    assert " PONG " in await other.expect(f"{nick}-token")
    other.close()


async def started_on_its_thread(started: threading.Event) -> None:
    """Wait (in a thread, not the loop) until the held computation has begun."""
    assert await asyncio.to_thread(started.wait, 5), "the computation never started"


def before(seen: list[str], first: str, then: str) -> bool:
    """Does a line holding ``first`` come before every line holding ``then``?"""
    a = next(i for i, line in enumerate(seen) if first in line)
    return all(a < i for i, line in enumerate(seen) if then in line)


async def test_line_register_hashes_off_the_loop_and_keeps_the_asker_in_order(hub, gates):
    hashing = gates(accounts_module, "hash_password")
    started, release = hashing.arm()
    port, _ = await hub()
    alice = await chat_client(port, "alice")
    # One write: the second line is read while the first is being hashed.
    await alice.send(b"/register hunter22\nsaid after register\n")
    await started_on_its_thread(started)
    await served_meanwhile(port, "bob")  # the loop is free while alice's hash is held
    assert started.is_set() and hashing.threads[0].startswith("sockhub-scrypt")
    release.set()
    await alice.expect("<alice> said after register")
    assert before(alice.seen, "account alice registered; you are logged in",
                  "<alice> said after register")
    alice.close()


async def test_line_register_refused_at_once_and_registrations_count_while_under_way(hub, gates):
    hashing = gates(accounts_module, "hash_password")
    started, release = hashing.arm()
    port, _ = await hub(accounts_per_hour=1)
    alice = await chat_client(port, "alice")
    await alice.send("/register hunter22")
    await started_on_its_thread(started)
    await served_meanwhile(port, "bob")
    assert started.is_set()
    # The address's one registration this hour is taken by the one under way.
    carol = await chat_client(port, "carol")
    await carol.send("/register hunter22")
    assert "too many accounts" in await carol.expect("error:")
    await carol.send("/register short")  # a weak password needs no hash to refuse
    assert "at least" in await carol.expect("error:")
    release.set()
    await alice.expect("account alice registered")
    for client in (alice, carol):
        client.close()


async def test_line_resetpass_and_oper_off_the_loop(hub, gates):
    checking = gates(chat_module, "verify_password")
    started, release = checking.arm()
    port, _ = await hub()
    root = await chat_client(port, "root")
    await root.send(b"/oper root s3cret\nafter oper\n")
    await started_on_its_thread(started)
    await served_meanwhile(port, "bob")
    assert started.is_set() and checking.threads[0].startswith("sockhub-scrypt")
    release.set()
    await root.expect("<root> after oper")
    assert before(root.seen, "you are now a server operator", "<root> after oper")
    # A wrong password: told in order too.
    started, release = checking.arm()
    await root.send(b"/oper root wrong\nafter wrong\n")
    await started_on_its_thread(started)
    await served_meanwhile(port, "carol")
    release.set()
    await root.expect("<root> after wrong")
    assert before(root.seen, "wrong operator name or password", "<root> after wrong")
    # An operator's reset hashes off the loop as well.
    await root.send("/register dave hunter22")
    await root.expect("account dave registered")
    hashing = gates(accounts_module, "hash_password")
    started, release = hashing.arm()
    await root.send(b"/resetpass dave newpassword1\nafter reset\n")
    await started_on_its_thread(started)
    await served_meanwhile(port, "erin")
    assert started.is_set()
    release.set()
    await root.expect("<root> after reset")
    assert before(root.seen, "the password of dave is set", "<root> after reset")
    root.close()


async def labeled_client(port: int, nick: str) -> LineClient:
    client = await irc_client(port, nick)
    await client.send(b"CAP REQ :labeled-response batch draft/account-registration\r\n")
    await client.expect(" ACK ")
    return client


async def test_irc_oper_right_and_wrong_off_the_loop_labels_in_order(hub, gates):
    checking = gates(chat_module, "verify_password")
    _, irc_port = await hub()
    root = await labeled_client(irc_port, "root")
    started, release = checking.arm()
    await root.send(b"@label=op1 OPER root wrong\r\n@label=p1 PING tok1\r\n")
    await started_on_its_thread(started)
    await irc_pong_meanwhile(irc_port, "bob")
    assert started.is_set() and checking.threads[0].startswith("sockhub-scrypt")
    release.set()
    wrong = await root.expect(" 464 ")
    assert wrong.startswith("@label=op1 ")  # one reply: the label on it
    pong = await root.expect(" PONG ")
    assert pong.startswith("@label=p1 ") and pong.endswith("tok1")
    started, release = checking.arm()
    await root.send(b"@label=op2 OPER root s3cret\r\n@label=p2 PING tok2\r\n")
    await started_on_its_thread(started)
    await irc_pong_meanwhile(irc_port, "carol")
    release.set()
    await root.expect(" PONG ")
    seen = root.seen[root.seen.index(pong) + 1:]
    opened = next(i for i, line in enumerate(seen) if "BATCH +" in line)
    assert seen[opened].startswith("@label=op2 ") and "labeled-response" in seen[opened]
    assert " 381 root " in seen[opened + 1] and " MODE root +o" in seen[opened + 2]
    assert "BATCH -" in seen[opened + 3] and seen[opened + 4].startswith("@label=p2 ")
    root.close()


async def test_irc_register_and_nickserv_register_off_the_loop_in_order(hub, gates):
    hashing = gates(accounts_module, "hash_password")
    _, irc_port = await hub()
    alice = await labeled_client(irc_port, "alice")
    started, release = hashing.arm()
    await alice.send(b"@label=r1 REGISTER * * hunter22\r\n@label=p1 PING tok1\r\n")
    await started_on_its_thread(started)
    await irc_pong_meanwhile(irc_port, "bob")
    assert started.is_set() and hashing.threads[0].startswith("sockhub-scrypt")
    release.set()
    pong = await alice.expect(" PONG ")
    assert pong.startswith("@label=p1 ")
    opened = next(i for i, line in enumerate(alice.seen) if "BATCH +" in line)
    assert alice.seen[opened].startswith("@label=r1 ")
    assert before(alice.seen, "REGISTER SUCCESS alice", " PONG ")
    # NickServ REGISTER: the same, for clients without the capability.
    dave = await irc_client(irc_port, "dave")
    started, release = hashing.arm()
    await dave.send(b"PRIVMSG NickServ :REGISTER hunter22\r\nPING tok2\r\n")
    await started_on_its_thread(started)
    await irc_pong_meanwhile(irc_port, "carol")
    release.set()
    await dave.expect(" PONG ")
    assert before(dave.seen, "Account dave registered", " PONG ")
    for client in (alice, dave):
        client.close()


async def test_piped_commands_then_eof_are_all_answered_in_order(hub, gates):
    """nc piping "/oper ..., more, EOF": the answer first, the rest after, then closed."""
    checking = gates(chat_module, "verify_password")
    started, release = checking.arm()
    port, irc_port = await hub()
    root = await chat_client(port, "root")
    await root.send(b"/oper root s3cret\nafter oper\n/quit\n")
    root.writer.write_eof()
    await started_on_its_thread(started)
    release.set()
    rest = await root.expect_eof()
    told = [line for line in rest if "operator" in line or "after" in line or "bye" in line]
    assert [told[0], told[2]] == ["-- you are now a server operator", "-- bye"]
    assert told[1].endswith("#lobby <root> after oper")
    started, release = checking.arm()
    other = await irc_client(irc_port, "ops")
    await other.send(b"OPER root s3cret\r\nPING tok\r\n")
    other.writer.write_eof()
    await started_on_its_thread(started)
    release.set()
    assert " 381 ops " in await other.expect(" 381 ")
    assert "tok" in await other.expect(" PONG ")
    await other.expect_eof()
    other.close()


async def test_a_client_gone_while_its_password_is_hashed_harms_no_one(hub, gates, caplog):
    hashing = gates(accounts_module, "hash_password")
    started, release = hashing.arm()
    port, irc_port = await hub()
    alice = await chat_client(port, "alice")
    await alice.send("/register hunter22")
    await started_on_its_thread(started)
    alice.close()
    await served_meanwhile(port, "carol")
    started, release2 = hashing.arm()
    bob = await labeled_client(irc_port, "bob")
    await bob.send(b"@label=r2 REGISTER * * hunter22\r\n")
    await started_on_its_thread(started)
    bob.close()
    release.set()
    release2.set()
    # Both answers come to no one; everyone else is still served, nothing failed.
    await served_meanwhile(port, "dave")
    await irc_pong_meanwhile(irc_port, "erin")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_irc_pass_against_a_hash_is_checked_off_the_loop_in_order(hub, gates):
    checking = gates(chat_module, "verify_password")
    line_port, irc_port = await hub(irc_password=hash_password("opensesame", log_n=10))
    for password, first in (("opensesame", " 001 alice "), ("wrong", " 464 ")):
        client = LineClient(*await open_client(irc_port))
        started, release = checking.arm()
        await client.send(f"PASS {password}\r\nNICK alice\r\nUSER a 0 * :A\r\n"
                          "PING :after\r\n".encode())
        await started_on_its_thread(started)
        await served_meanwhile(line_port, f"meanwhile-{password}")
        assert checking.threads[-1].startswith("sockhub-scrypt")
        release.set()
        await client.expect(first)
        if password == "wrong":
            await client.expect("ERROR ")
            await client.expect_eof()
            assert not any("PONG" in line for line in client.seen)  # nothing past the refusal
        else:
            assert (await client.expect("PONG")).endswith(":after")  # after the welcome
        client.close()
