"""Accounts at the IRC door, over raw lines on real sockets: SASL PLAIN and SCRAM-SHA-256
(IRCv3 sasl, numerics 900-908), REGISTER (draft/account-registration), NickServ,
account-tag, account-notify, extended-join, WHOIS 330, WHOX, and owned nicks."""

from __future__ import annotations

import base64

import pytest

from net import LineClient, irc_client, open_client, registered
from scram_client import ScramClient


@pytest.fixture
async def hub(serve, tmp_path):
    async def start(**options):
        settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0,
                    "account_delay": 0.05, "account_delay_max": 0.2, **options}
        line, irc = await serve("chat", options=settings)
        return line.ports[0], irc.ports[0]

    return start


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def auth(payload: bytes) -> bytes:
    """One AUTHENTICATE line carrying ``payload``, base64-encoded."""
    return b"AUTHENTICATE " + base64.b64encode(payload) + b"\r\n"


async def sasl_start(port: int, nick: str, mechanism: str) -> LineClient:
    client = LineClient(*await open_client(port))
    await client.send(b"CAP LS 302\r\n")
    caps = await client.expect(" CAP * LS ")
    assert "sasl=PLAIN,SCRAM-SHA-256" in caps.split()
    await client.send(f"NICK {nick}\r\nUSER {nick} 0 * :{nick} real\r\n"
                      "CAP REQ :sasl account-tag extended-join\r\n".encode())
    await client.expect(" ACK ")
    await client.send(f"AUTHENTICATE {mechanism}\r\n".encode())
    return client


async def test_register_on_line_door_then_sasl_plain_on_irc(hub):
    line_port, irc_port = await hub()
    await registered(line_port, "alice", "hunter22")
    watcher = await irc_client(irc_port, "watcher", "#lobby")
    await watcher.send(b"CAP REQ :account-tag extended-join\r\n")
    await watcher.expect(" ACK ")
    alice = await sasl_start(irc_port, "alice", "PLAIN")
    assert await alice.expect("AUTHENTICATE") == "AUTHENTICATE +"
    await alice.send(auth(b'alice\0alice\0hunter22'))
    line = await alice.expect(" 900 ")
    assert line.endswith(" 900 * alice!alice@127.0.0.1 alice :You are now logged in as alice")
    await alice.expect(" 903 * :SASL authentication successful")
    await alice.send(b"CAP END\r\nJOIN #lobby\r\nPRIVMSG #lobby :hi\r\n")
    await alice.expect(" 001 alice ")
    # extended-join names the account; account-tag marks what alice says.
    assert (await watcher.expect(" JOIN ")).endswith(" JOIN #lobby alice :alice real")
    line = await watcher.expect("PRIVMSG #lobby")
    assert line.startswith("@account=alice") and line.endswith(":alice!alice@127.0.0.1 "
                                                               "PRIVMSG #lobby :hi")
    await watcher.send(b"WHOIS alice\r\nWHO alice %na\r\n")
    assert (await watcher.expect(" 330 ")).endswith(" 330 watcher alice alice :is logged in as")
    assert (await watcher.expect(" 354 ")).endswith(" 354 watcher alice :alice")
    for client in (alice, watcher):
        client.close()


async def test_sasl_scram_sha_256(hub):
    line_port, irc_port = await hub()
    await registered(line_port, "alice", "hunter22")
    alice = await sasl_start(irc_port, "alice", "SCRAM-SHA-256")
    await alice.expect("AUTHENTICATE +")
    scram = ScramClient("alice", "hunter22", nonce="clientnonce123")
    await alice.send(auth(scram.first()))
    server_first = base64.b64decode((await alice.expect("AUTHENTICATE")).split()[-1])
    await alice.send(auth(scram.final(server_first)))
    server_final = base64.b64decode((await alice.expect("AUTHENTICATE")).split()[-1])
    assert scram.verify(server_final)  # the server knew the password too
    await alice.send(b"AUTHENTICATE +\r\n")
    await alice.expect(" 900 * alice!alice@127.0.0.1 alice ")
    await alice.expect(" 903 ")
    await alice.send(b"CAP END\r\n")
    await alice.expect(" 001 alice ")
    alice.close()


async def test_sasl_failures(hub):
    line_port, irc_port = await hub()
    await registered(line_port, "alice", "hunter22")
    client = await sasl_start(irc_port, "alice", "EXTERNAL")
    assert (await client.expect(" 908 ")).endswith(
        " 908 * PLAIN,SCRAM-SHA-256 :are available SASL mechanisms")
    await client.expect(" 904 ")
    # A wrong PLAIN password: 904, told after the delay.
    await client.send(b"AUTHENTICATE PLAIN\r\n")
    await client.expect("AUTHENTICATE +")
    await client.send(auth(b'\0alice\0wrongpass'))
    await client.expect(" 904 * :SASL authentication failed")
    # Acting as another account, bad base64, abort, too long.
    for line in (auth(b"bob\0alice\0hunter22"), b"AUTHENTICATE !!notbase64\r\n"):
        await client.send(b"AUTHENTICATE PLAIN\r\n")
        await client.expect("AUTHENTICATE +")
        await client.send(line)
        await client.expect(" 904 ")
    await client.send(b"AUTHENTICATE PLAIN\r\nAUTHENTICATE *\r\n")
    await client.expect(" 906 * :SASL authentication aborted")
    await client.send(b"AUTHENTICATE PLAIN\r\n")
    await client.expect("AUTHENTICATE +")
    await client.send(b"AUTHENTICATE " + b"A" * 401 + b"\r\n")
    await client.expect(" 905 * :SASL message too long")
    # A wrong SCRAM password.
    scram = ScramClient("alice", "wrongpass")
    await client.send(b"AUTHENTICATE SCRAM-SHA-256\r\n")
    await client.expect("AUTHENTICATE +")
    await client.send(auth(scram.first()))
    server_first = base64.b64decode((await client.expect("AUTHENTICATE")).split()[-1])
    await client.send(auth(scram.final(server_first)))
    await client.expect(" 904 ")
    # Still allowed in with the right one, and registration goes on.
    await client.send(b"AUTHENTICATE PLAIN\r\n")
    await client.expect("AUTHENTICATE +")
    await client.send(auth(b'\0alice\0hunter22'))
    await client.expect(" 903 ")
    await client.send(b"AUTHENTICATE PLAIN\r\n")
    await client.expect(" 907 ")
    await client.send(b"CAP END\r\n")
    await client.expect(" 001 alice ")
    client.close()


async def test_register_command_before_connect(hub):
    _, irc_port = await hub()
    client = LineClient(*await open_client(irc_port))
    await client.send(b"CAP LS 302\r\nNICK carol\r\nUSER carol 0 * :Carol\r\n")
    assert "draft/account-registration=before-connect" in (await client.expect(" LS ")).split()
    await client.send(b"REGISTER * * short\r\n")
    assert " FAIL REGISTER WEAK_PASSWORD carol :" in await client.expect("FAIL")
    await client.send(b"REGISTER * * hunter22\r\n")
    assert (await client.expect("REGISTER SUCCESS")).endswith(
        " REGISTER SUCCESS carol :Account created")
    await client.expect(" 900 * carol!carol@127.0.0.1 carol ")
    await client.send(b"CAP END\r\nREGISTER dave * hunter22\r\n")
    await client.expect(" 001 carol ")
    assert " FAIL REGISTER ALREADY_AUTHENTICATED dave " in await client.expect("FAIL")
    other = await irc_client(irc_port, "erin")
    await other.send(b"REGISTER dave * hunter22\r\n")  # not erin's nick
    assert " FAIL REGISTER ACCOUNT_NAME_MUST_BE_NICK dave " in await other.expect("FAIL")
    await other.send(b"REGISTER carol * hunter22\r\n")  # held by someone: no land grabs
    assert " FAIL REGISTER ACCOUNT_EXISTS carol " in await other.expect("FAIL")
    await other.send(b"REGISTER * * hunter22\r\nNS LOGOUT\r\nREGISTER erin * hunter22\r\n")
    assert " FAIL REGISTER ACCOUNT_EXISTS erin " in await other.expect("FAIL")
    for c in (client, other):
        c.close()


async def test_register_only_after_connect_when_so_configured(hub):
    _, irc_port = await hub(accounts_after_connect=True)
    client = LineClient(*await open_client(irc_port))
    await client.send(b"CAP LS 302\r\nNICK carol\r\nUSER carol 0 * :Carol\r\n")
    caps = (await client.expect(" LS ")).split()
    assert "draft/account-registration" in caps and "sasl=PLAIN,SCRAM-SHA-256" in caps
    await client.send(b"REGISTER * * hunter22\r\n")
    assert " FAIL REGISTER COMPLETE_CONNECTION_REQUIRED " in await client.expect("FAIL")
    await client.send(b"CAP END\r\nREGISTER * * hunter22\r\n")
    await client.expect("REGISTER SUCCESS carol ")
    client.close()


async def test_nickserv_register_identify_and_account_notify(hub):
    _, irc_port = await hub()
    watcher = await irc_client(irc_port, "watcher", "#lobby")
    await watcher.send(b"CAP REQ account-notify\r\n")
    await watcher.expect(" ACK ")
    bob = await irc_client(irc_port, "bob", "#lobby")
    await bob.send(b"PRIVMSG NickServ :REGISTER hunter22\r\n")
    line = await bob.expect("NOTICE bob")
    assert line == (":NickServ!NickServ@services. NOTICE bob "
                    ":Account bob registered; you are logged in")
    assert (await watcher.expect(" ACCOUNT ")).endswith(":bob!bob@127.0.0.1 ACCOUNT bob")
    await bob.send(b"NS LOGOUT\r\n")
    await bob.expect(" 901 bob ")
    assert (await watcher.expect(" ACCOUNT ")).endswith(" ACCOUNT *")
    # Logged out, bob holds an owned nick again: told to identify.
    assert "nick bob belongs to account bob" in await bob.expect("NOTICE bob")
    await bob.send(b"PRIVMSG NickServ :IDENTIFY wrongpass\r\n")
    assert (await bob.expect("NOTICE bob")).endswith(":Invalid account name or password")
    await bob.send(b"PRIVMSG nickserv :IDENTIFY bob hunter22\r\n")
    await bob.expect(" 900 bob bob!bob@127.0.0.1 bob ")
    await bob.send(b"NICKSERV PASSWD hunter22 newpassword1\r\n")
    assert (await bob.expect("NOTICE bob")).endswith(":The password of bob is changed")
    await bob.send(b"NS HELP\r\n")
    assert "NickServ commands" in await bob.expect("NOTICE bob")
    for c in (watcher, bob):
        c.close()


async def test_owned_nick_taken_on_irc_is_renamed_after_the_grace_period(hub):
    line_port, irc_port = await hub(nick_grace=0.3)
    await registered(line_port, "alice", "hunter22")
    mallory = await irc_client(irc_port, "alice")
    note = await mallory.expect("NOTICE alice")
    assert "belongs to account alice: /msg NickServ IDENTIFY password within 0.3" in note
    line = await mallory.expect(" NICK ")
    assert line.startswith(":alice!alice@127.0.0.1 NICK guest-")
    # Not straight back unidentified (no squatting loop); logged in, it is theirs.
    await mallory.send(b"NICK alice\r\n")
    await mallory.expect(" 433 guest-")
    await mallory.send(b"PRIVMSG NickServ :IDENTIFY alice hunter22\r\n")
    await mallory.expect(" 900 guest-")
    await mallory.send(b"NICK alice\r\n")
    await mallory.expect(" NICK alice")
    await mallory.send(b"WHOIS alice\r\n")
    await mallory.expect(" 330 alice alice alice ")
    mallory.close()


async def test_scram_started_then_hung_up_frees_its_slot(hub):
    """A SCRAM exchange left half-way by a hang-up, or by CAP END, gives back its slot:
    else each one locks its address (and the owner behind it) out of logging in for good."""
    line_port, irc_port = await hub(account_max_pending_per_ip=1)
    await registered(line_port, "alice", "hunter22")
    watcher = await irc_client(irc_port, "watcher", "#lobby")
    # Hung up in the middle of an exchange started after registration (sasl 3.2).
    mallory = await irc_client(irc_port, "mallory", "#lobby")
    await mallory.send(b"AUTHENTICATE SCRAM-SHA-256\r\n")
    await mallory.expect("AUTHENTICATE +")
    await mallory.send(auth(ScramClient("alice", "x", nonce="n1").first()))
    await mallory.expect("AUTHENTICATE ")
    mallory.close()
    await watcher.expect(" QUIT ")  # the door has seen the hang-up
    # Registration completed in the middle of an exchange: aborted (906).
    eve = await sasl_start(irc_port, "eve", "SCRAM-SHA-256")
    await eve.expect("AUTHENTICATE +")
    await eve.send(auth(ScramClient("alice", "x", nonce="n2").first()))
    await eve.expect("AUTHENTICATE ")
    await eve.send(b"CAP END\r\n")
    await eve.expect(" 001 eve ")
    await eve.expect(" 906 ")
    # The owner, from the same address, still logs in.
    alice = await sasl_start(irc_port, "alice", "PLAIN")
    await alice.expect("AUTHENTICATE +")
    await alice.send(auth(b"\0alice\0hunter22"))
    await alice.expect(" 903 ")
    for client in (watcher, eve, alice):
        client.close()


async def test_a_stalled_scram_exchange_holds_no_slot(hub):
    """Clients that start SCRAM and never send the proof, however many, do not keep the
    owner (here from the same address, the worst case) from logging in."""
    line_port, irc_port = await hub(account_max_pending_per_ip=1, account_max_pending=1)
    await registered(line_port, "alice", "hunter22")
    stallers = []
    for n in (1, 2):
        staller = await irc_client(irc_port, f"staller{n}")
        await staller.send(b"AUTHENTICATE SCRAM-SHA-256\r\n")
        await staller.expect("AUTHENTICATE +")
        await staller.send(auth(ScramClient("alice", "x", nonce=f"n{n}").first()))
        await staller.expect("AUTHENTICATE ")
        stallers.append(staller)
    alice = await sasl_start(irc_port, "alice", "PLAIN")
    await alice.expect("AUTHENTICATE +")
    await alice.send(auth(b"\0alice\0hunter22"))
    await alice.expect(" 903 ")
    # A staller's wrong proof is still told late, and a right one still works.
    scram = ScramClient("alice", "hunter22", nonce="n3")
    owner = await sasl_start(irc_port, "alice2", "SCRAM-SHA-256")
    await owner.expect("AUTHENTICATE +")
    await owner.send(auth(scram.first()))
    server_first = base64.b64decode((await owner.expect("AUTHENTICATE")).split()[-1])
    await owner.send(auth(scram.final(server_first)))
    assert scram.verify(base64.b64decode((await owner.expect("AUTHENTICATE")).split()[-1]))
    await owner.send(b"AUTHENTICATE +\r\n")
    await owner.expect(" 903 ")
    for client in (*stallers, alice, owner):
        client.close()
