"""Registered rooms (docs/accounts.md): ChanServ on IRC, /room on the line door.

A registered room keeps its topic, settings and bans across a restart and
while empty; operator status follows the founder's and operator accounts (a
MODE +o from ChanServ everyone sees), never arrival order; each refusal is
told clearly at both doors. Also: a topic or setting is stored before anyone
is told of it.
"""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from net import LineClient, chat_client, irc_client
from proc import start_sockhub
from sockhub.hub.events import HubEvent, ModeChange, ModeChanged, TopicChanged
from sockhub.hub.model import Registration, RoomState
from sockhub.limits import Limits
from sockhub.services.chat import ChatService
from sockhub.services.chat_settings import ChatSettings
from sockhub.store.history import ChatStore

CHANSERV = ":ChanServ!ChanServ@services. NOTICE"


@pytest.fixture
async def hub(serve, tmp_path):
    async def start(**options):
        settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0,
                    "account_delay": 0.05, "account_delay_max": 0.2, **options}
        line, irc = await serve("chat", options=settings)
        return line.ports[0], irc.ports[0]

    return start


async def irc_account(port: int, nick: str, *rooms: str) -> LineClient:
    """An IRC client that registers its nick as an account, then joins ``rooms``."""
    client = await irc_client(port, nick)
    await client.send(f"PRIVMSG NickServ :REGISTER pw-{nick}-123")
    await client.expect(f" 900 {nick} ")
    for room in rooms:
        await client.send(f"JOIN {room}")
        await client.expect(f" 366 {nick} {room} ")
    return client


async def cs(client: LineClient, text: str) -> str:
    """Send ChanServ a command; its first answer (a NOTICE), after the NOTICE's colon."""
    await client.send(f"PRIVMSG ChanServ :{text}")
    return (await client.expect(CHANSERV)).split(" :", 1)[1]


async def test_registered_room_survives_a_restart_and_ops_follow_accounts(tmp_path):
    args = ("chat", "--port", "0", "--irc-port", "0", "--data-dir", str(tmp_path),
            "--flood-rate", "none")
    served = await start_sockhub(*args, listeners=2)
    try:
        irc = served.ports["irc"]
        alice = await irc_account(irc, "alice", "#den")
        await alice.send("TOPIC #den :the den\r\nMODE #den +sC\r\nMODE #den +b troll!*@*")
        await alice.expect("MODE #den +b troll!*@*")
        assert await cs(alice, "REGISTER #den") == "#den is registered to your account alice"
        assert (await cs(alice, "INFO #den")).startswith("#den: founder alice, registered ")
        await alice.send("QUIT :bye")
        await alice.expect("ERROR")
    finally:
        await served.stop()

    served = await start_sockhub(*args, listeners=2)
    try:
        irc, line = served.ports["irc"], served.ports["chat"]
        # A stranger first into the empty registered room is not its operator.
        carol = await irc_client(irc, "carol")
        await carol.send("JOIN #den")
        assert (await carol.expect(" 332 ")).endswith(" 332 carol #den :the den")
        assert (await carol.expect(" 353 ")).endswith(" #den :carol")
        await carol.send("MODE #den\r\nMODE #den b")
        modes = (await carol.expect(" 324 ")).split(" 324 carol #den ")[1]
        assert set(modes.lstrip(":")) == set("+Cnst")
        assert (await carol.expect(" 367 ")).endswith(" 367 carol #den :troll!*@*")
        await carol.send("TOPIC #den :mine now")
        await carol.expect(" 482 carol #den ")
        # The founder joins, then logs in: ChanServ gives operator status, seen by all.
        alice = await irc_client(irc, "alice", "#den")
        await alice.send("PRIVMSG NickServ :IDENTIFY pw-alice-123")
        await alice.expect(" 900 alice ")
        assert (await carol.expect(" MODE #den ")).endswith(
            ":ChanServ!ChanServ@services. MODE #den +o alice")
        # The founder adds bob's account; bob, on the line door, gets ops on joining.
        bob = await chat_client(line, "bob")
        await bob.send("/register pw-bob-123")
        await bob.expect("you are logged in")
        assert await cs(alice, "AMODE #den +o bob") == "bob is now an operator of #den"
        await bob.send("/join #den")
        assert (await carol.expect(" MODE #den ")).endswith(" MODE #den +o bob")
        await bob.expect("#den * ChanServ made bob an operator")
        await bob.send("/room info")
        assert (await bob.expect("founder")).endswith("operator accounts: bob")
        # Ops were given by account, not taken from a nick: carol still has none.
        await carol.send("NAMES #den")
        assert sorted((await carol.expect(" 353 ")).split(" :", 1)[1].split()) == [
            "@alice", "@bob", "carol"]
        for client in (alice, bob, carol):
            client.close()
    finally:
        await served.stop()


async def test_refusals_at_the_irc_door(hub):
    line, irc = await hub()
    stranger = await irc_client(irc, "stranger", "#open")
    assert await cs(stranger, "REGISTER #open") == "log in to an account first (identify)"
    alice = await irc_account(irc, "alice", "#den")
    bob = await irc_account(irc, "bob")
    await bob.send("JOIN #den")
    await bob.expect(" 366 bob #den ")
    assert await cs(bob, "REGISTER #den") == "you must be an operator of #den to register it"
    assert await cs(alice, "REGISTER #nowhere") == "no such room: #nowhere (join it first)"
    assert await cs(alice, "INFO #den") == "#den is not registered"
    assert await cs(alice, "REGISTER #den") == "#den is registered to your account alice"
    assert await cs(alice, "REGISTER #den") == "#den is already registered, to alice"
    assert await cs(bob, "DROP #den") == \
        "only the founder of #den (alice) may do that"
    assert await cs(bob, "AMODE #den +o bob") == \
        "only the founder of #den (alice) may do that"
    assert await cs(bob, "OP #den") == "your account is not an operator of #den"
    assert await cs(alice, "AMODE #den +o nobody") == "no such account: nobody"
    assert await cs(alice, "AMODE #den +v bob") == "AMODE keeps only operators by account: +o or -o"
    assert await cs(alice, "AMODE #den -o bob") == "bob is not an operator of #den"
    assert await cs(alice, "OP #den stranger") == "stranger is not in #den"
    assert await cs(alice, "FROBNICATE") == "ChanServ commands (docs/accounts.md):"
    # No one may pose as ChanServ, at either door.
    await stranger.send("NICK ChanServ")
    await stranger.expect(" 432 stranger ChanServ ")
    lined = await chat_client(line, "lined")
    await lined.send("/nick chanserv")
    await lined.expect("error:")
    for client in (alice, bob, stranger, lined):
        client.close()


async def test_line_door_commands_and_refusals(hub):
    line, irc = await hub()
    alice = await chat_client(line, "alice")
    await alice.send("/room register")
    assert await alice.expect("error:") == "error: log in to an account first (identify)"
    await alice.send("/register pw-alice-123")
    await alice.expect("you are logged in")
    await alice.send("/room register")  # the current room, #lobby, is protected
    assert await alice.expect("error:") == "error: #lobby belongs to the server's operators"
    await alice.send("/join #den")
    await alice.expect("in #den: alice")
    await alice.send("/room register")
    assert await alice.expect("registered") == "-- #den is registered to your account alice"
    await alice.send("/room register #den")
    assert await alice.expect("error:") == "error: #den is already registered, to alice"
    await alice.send("/room info #nowhere")
    assert await alice.expect("error:") == "error: #nowhere is not registered"
    await alice.send("/room frob #den")
    assert (await alice.expect("error:")).startswith("error: usage: /room register|info|drop")
    await alice.send("/room addop #den")
    assert (await alice.expect("error:")).startswith("error: usage: /room")
    await alice.send("/room addop #den ghost")
    assert await alice.expect("error:") == "error: no such account: ghost"
    # bob, an IRC user with an account, is made an operator account and given ops now.
    bob = await irc_account(irc, "bob", "#den")
    await alice.send("/room addop #den bob")
    await alice.expect("-- bob is now an operator account of #den")
    assert (await bob.expect(" MODE #den ")).endswith(
        ":ChanServ!ChanServ@services. MODE #den +o bob")
    await alice.send("/room delop #den bob")
    await alice.expect("-- bob is no longer an operator account of #den")
    assert (await bob.expect(" MODE #den ")).endswith(" MODE #den -o bob")
    # Refusals to bob on the line door's side too: he is not the founder.
    assert await cs(bob, "TRANSFER #den bob") == "only the founder of #den (alice) may do that"
    # The founder transfers the room to bob; alice stays an operator account.
    await alice.send("/room transfer #den bob")
    await alice.expect("-- #den now belongs to bob")
    assert (await bob.expect(" MODE #den ")).endswith(" MODE #den +o bob")
    assert (await cs(bob, "INFO #den")).startswith("#den: founder bob, registered ")
    assert (await bob.expect(CHANSERV)).endswith(":#den: operator accounts: alice")
    await alice.send("/room drop #den")
    assert await alice.expect("error:") == "error: only the founder of #den (bob) may do that"
    assert await cs(bob, "DROP #den") == "#den is no longer registered"
    await alice.send("/room info #den")
    assert await alice.expect("error:") == "error: #den is not registered"
    alice.close()
    bob.close()


async def test_founder_back_in_the_emptied_room_is_given_ops(hub):
    _, irc = await hub()
    alice = await irc_account(irc, "alice", "#den")
    assert await cs(alice, "REGISTER #den") == "#den is registered to your account alice"
    await alice.send("PART #den")
    await alice.expect(" PART #den")
    await alice.send("JOIN #den")
    await alice.expect(" JOIN #den")
    assert (await alice.expect(" MODE #den ")).endswith(
        ":ChanServ!ChanServ@services. MODE #den +o alice")
    assert (await alice.expect(" 353 ")).endswith(" #den :@alice")
    alice.close()


async def test_dropping_an_account_unregisters_its_rooms(hub):
    line, _ = await hub()
    alice = await chat_client(line, "alice")
    await alice.send("/register pw-alice-123")
    await alice.expect("you are logged in")
    await alice.send("/join #den")
    await alice.expect("in #den")
    await alice.send("/room register")
    await alice.expect("is registered")
    await alice.send("/drop pw-alice-123")
    await alice.expect("account alice is dropped")
    await alice.send("/room info #den")
    assert await alice.expect("error:") == "error: #den is not registered"
    alice.close()


class Recorder:
    """A hub member that looks in the store when told of a topic or a setting."""

    def __init__(self, service: ChatService) -> None:
        self.service = service
        self.kept: list[tuple[str, bool]] = []

    def deliver(self, event: HubEvent) -> None:
        if isinstance(event, TopicChanged | ModeChanged):
            with contextlib.closing(sqlite3.connect(self.service.store.path)) as db:
                self.kept.append(db.execute(
                    "SELECT topic, moderated FROM rooms WHERE room_key = '#den'").fetchone())


def test_topic_and_settings_are_stored_before_anyone_is_told(tmp_path):
    service = ChatService(ChatSettings(data_dir=tmp_path, flood_rate=None), Limits())
    try:
        member = Recorder(service)
        user = service.register("alice", member, address="127.0.0.1")
        service.join(user, "#den")
        service.set_topic(user, "#den", "stored first")
        service.set_modes(user, "#den", [ModeChange("moderated", True)])
        assert member.kept == [("stored first", 0), ("stored first", 1)]
    finally:
        service.close()


def test_a_change_that_cannot_be_stored_is_told_to_no_one(tmp_path):
    service = ChatService(ChatSettings(data_dir=tmp_path, flood_rate=None), Limits())
    try:
        member = Recorder(service)
        user = service.register("alice", member, address="127.0.0.1")
        service.join(user, "#den")
        service.store._db.execute("DROP TABLE rooms")  # the store fails from now on
        with pytest.raises(Exception, match="could not be stored"):
            service.set_topic(user, "#den", "lost")
        assert member.kept == []
        assert service.find_room("#den").topic == ""
    finally:
        service.close()


def test_registrations_are_kept_in_the_store_across_opening_it_again(tmp_path):
    path = tmp_path / "chat.sqlite3"
    store = ChatStore(path)
    try:
        store.register_room(Registration("#Den", "Alice", 1_700_000_000.0),
                            RoomState("#Den", 1_699_999_000.0))
        store.add_room_operator("#den", "Bob", "alice", 1_700_000_001.0)
        store.add_room_operator("#den", "carol", "alice", 1_700_000_002.0)
        store.remove_room_operator("#DEN", "CAROL")
        with pytest.raises(sqlite3.IntegrityError):  # one registration per room
            store.register_room(Registration("#den", "bob", 0.0), RoomState("#den", 0.0))
    finally:
        store.close()
    store = ChatStore(path)
    try:
        assert store.registrations() == {
            "#den": Registration("#Den", "Alice", 1_700_000_000.0, {"bob": "Bob"})}
        assert store.rooms()["#den"].created == 1_699_999_000.0  # its state, with it
        store.unregister_room("#DEN")
        assert store.registrations() == {}
    finally:
        store.close()
