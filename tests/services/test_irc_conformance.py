"""Issue 13's IRC fidelity items, driven with raw IRC lines (no sockets, a manual clock):
WHOWAS, channel names modern servers accept, msgid on every message, TAGMSG
relaying, labeled responses to oneself and to unknown commands, KILL, secret
and private channels, and 417 versus truncation of what the server relays.

A real IRC client library (jaraco's ``irc``) drives WHOWAS and KILL over real
sockets at the end.
"""

from __future__ import annotations

import asyncio

import irc.client_aio
import pytest

from irc_support import Network, commands, find
from net import STEP, chat_client, irc_client
from sockhub.codec.irc import MAX_BODY
from sockhub.passwords import hash_password

OPER_HASH = hash_password("s3cret", log_n=10)


@pytest.fixture
def net(tmp_path):
    network = Network(tmp_path, operators={"admin": OPER_HASH})
    yield network
    network.close()


def quit_(client, reason="bye"):
    client.send(f"QUIT :{reason}")
    client.take()


# WHOWAS (RFC 2812 §3.6.3; Modern IRC) -----------------------------------------------

def test_whowas_lists_earlier_holders_newest_first(net):
    me = net.register("me")
    quit_(net.register("gone", realname="First One"))
    later = net.connect()
    later.ask("NICK gone", "USER second 0 * :Second One")
    quit_(later)
    replies = me.ask("WHOWAS gone")
    assert commands(replies) == ["314", "312", "314", "312", "369"]
    assert replies[0].params == ("me", "gone", "second", "127.0.0.1", "*", "Second One")
    assert replies[1].params[:3] == ("me", "gone", "irc.test")
    assert replies[2].params == ("me", "gone", "gone", "127.0.0.1", "*", "First One")
    assert replies[4].params == ("me", "gone", "End of WHOWAS")
    # a count limits the entries; zero or a negative count asks for all
    assert commands(me.ask("WHOWAS gone 1")) == ["314", "312", "369"]
    assert commands(me.ask("WHOWAS gone -1")) == ["314", "312", "314", "312", "369"]
    assert commands(me.ask("WHOWAS GONE 0")) == ["314", "312", "314", "312", "369"]


def test_whowas_remembers_a_nick_given_up_by_a_nick_change(net):
    me = net.register("me")
    mover = net.register("before")
    mover.ask("NICK after")
    assert commands(me.ask("WHOWAS before")) == ["314", "312", "369"]
    # a change of case gives up nothing
    mover.ask("NICK AFTER")
    assert commands(me.ask("WHOWAS after")) == ["406", "369"]


def test_whowas_of_an_unknown_nick_and_without_one(net):
    me = net.register("me")
    replies = me.ask("WHOWAS nobody")
    assert [(m.command, m.params) for m in replies] == [
        ("406", ("me", "nobody", "There was no such nickname")),
        ("369", ("me", "nobody", "End of WHOWAS")),
    ]
    replies = me.ask("WHOWAS")
    assert [(m.command, m.params) for m in replies] == [("431", ("me", "No nickname given"))]


# Channel names (Modern IRC, "Channels"; ISUPPORT CHANTYPES/CHANNELLEN) --------------

@pytest.mark.parametrize("name", ["#c++", "##linux", "#café", "#a!b", "#" + "é" * 24])
def test_channel_names_modern_servers_accept(net, name):
    alice = net.register("alice")
    replies = alice.ask(f"JOIN {name}")
    assert find(replies, "JOIN").params == (name,)
    bob = net.register("bob")
    bob.ask(f"JOIN {name}")
    alice.take()
    bob.ask(f"PRIVMSG {name} :hello")
    assert find(alice.take(), "PRIVMSG").params == (name, "hello")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("#" + "x" * 50, "a room name is at most 50 bytes (this one is 51)"),
        ("#" + "é" * 25, "a room name is at most 50 bytes (this one is 51)"),
        ("#a:b", "a room name cannot contain ':'"),
        ("#bell\x07", "a room name cannot contain '\\x07'"),
        ("#", "a room name needs something after the #"),
    ],
)
def test_bad_channel_names_are_refused_with_the_reason(net, name, why):
    alice = net.register("alice")
    replies = alice.ask(f"JOIN {name}")
    assert commands(replies) == ["476"]
    assert replies[0].params[:2] == ("alice", name)
    assert replies[0].params[2].startswith(f"Bad channel name: {why}")


def test_a_name_without_a_channel_prefix_is_no_channel(net):
    alice = net.register("alice")
    replies = alice.ask("JOIN lobby")
    assert [(m.command, m.params) for m in replies] == [
        ("403", ("alice", "lobby", "No such channel"))]


def test_isupport_says_which_names_are_channels(net):
    client = net.connect()
    replies = client.ask("NICK alice", "USER a 0 * :A")
    tokens = dict(
        t.partition("=")[::2] for m in replies if m.command == "005" for t in m.params[1:-1]
    )
    assert tokens["CHANTYPES"] == "#"
    assert tokens["CHANNELLEN"] == "50"


# msgid on every message; TAGMSG (IRCv3 message-tags) ---------------------------------

def test_private_messages_and_tagmsg_carry_a_msgid(net):
    alice = net.register("alice", "message-tags", "echo-message")
    bob = net.register("bob", "message-tags")
    carol = net.register("carol")
    alice.send("@+draft/reply=x PRIVMSG bob :hi")
    echo, delivered = find(alice.take(), "PRIVMSG"), find(bob.take(), "PRIVMSG")
    assert echo.tags["msgid"] and echo.tags["msgid"] == delivered.tags["msgid"]
    assert delivered.tags["+draft/reply"] == "x"
    alice.send("PRIVMSG carol :hi")
    assert carol.take_raw().startswith(b":alice!")  # no tags to a client without the cap
    alice.send("@+typing=active;other=dropped TAGMSG bob")
    echo, delivered = find(alice.take(), "TAGMSG"), find(bob.take(), "TAGMSG")
    assert delivered.tags["+typing"] == "active" and "other" not in delivered.tags
    assert echo.tags["msgid"] == delivered.tags["msgid"] != ""
    assert carol.take() == []  # TAGMSG only to message-tags clients
    # a new id every time
    alice.send("PRIVMSG bob :again")
    assert find(bob.take(), "PRIVMSG").tags["msgid"] != echo.tags["msgid"]


def test_tagmsg_to_a_channel_with_the_longest_client_tags(net):
    alice = net.register("alice", "message-tags", "echo-message")
    bob = net.register("bob", "message-tags")
    alice.ask("JOIN #t")
    bob.ask("JOIN #t")
    alice.take()
    alice.send("@foo=bar;+baz=%s TAGMSG #t" % ("a" * 4081))
    # (the server's own tags may pass the 4094 bytes a client may send: raw bytes here)
    echo, relay = alice.take_raw(), bob.take_raw()
    assert b"+baz=" + b"a" * 4081 in relay and b";foo=" not in relay
    msgid = relay.split(b"msgid=")[1].split(b";")[0].split(b" ")[0]
    assert msgid and b"msgid=" + msgid in echo
    assert commands(alice.ask("@foo=bar;+baz=%s TAGMSG #t" % ("a" * 4082))) == ["417"]
    assert bob.take() == []


# labeled-response ---------------------------------------------------------------------

@pytest.mark.parametrize("command", ["PRIVMSG", "NOTICE"])
def test_a_labeled_message_to_oneself_labels_only_the_echo(net, command):
    me = net.register("me", "echo-message", "batch", "labeled-response")
    replies = me.ask(f"@label=12345 {command} me :hi")
    assert commands(replies) == [command, command]
    assert sorted(m.tags.get("label", "") for m in replies) == ["", "12345"]


def test_a_tagmsg_to_oneself_comes_back_twice_with_echo_message(net):
    me = net.register("me", "echo-message", "batch", "labeled-response", "message-tags")
    replies = me.ask("@label=l1;+react=x TAGMSG me")
    assert commands(replies) == ["TAGMSG", "TAGMSG"]
    assert sorted(m.tags.get("label", "") for m in replies) == ["", "l1"]
    # without echo-message, the delivery alone
    other = net.register("other", "message-tags")
    assert commands(other.ask("@+react=x TAGMSG other")) == ["TAGMSG"]


def test_unknown_commands_and_missing_parameters_answer_with_the_label(net):
    me = net.register("me", "batch", "labeled-response")
    replies = me.ask("@label=deadbeef NONEXISTENT_COMMAND")
    assert [(m.command, m.tags.get("label")) for m in replies] == [("421", "deadbeef")]
    replies = me.ask("@label=two KICK")
    assert [(m.command, m.tags.get("label")) for m in replies] == [("461", "two")]
    # no label without the capability
    plain = net.register("plain")
    assert "label" not in plain.ask("@label=x NOPE")[0].tags


# KILL (Modern IRC) ----------------------------------------------------------------------

def test_kill_needs_an_operator_then_disconnects_the_victim(net):
    oper, alice, bob = net.register("oper"), net.register("alice"), net.register("bob")
    for client in (oper, bob):
        client.ask("JOIN #room")
    alice.ask("JOIN #room")
    oper.take(), bob.take()
    replies = alice.ask("KILL bob :no reason")
    assert [(m.command, m.params) for m in replies] == [
        ("481", ("alice", "Permission Denied- You're not an IRC operator"))]
    assert not bob.closed
    assert commands(oper.ask("OPER admin s3cret"))[0] == "381"
    assert commands(oper.ask("KILL nobody :x")) == ["401"]
    oper.ask("KILL bob :spamming")
    assert bob.closed
    error = bob.take()[-1]
    assert error.command == "ERROR" and "Killed (oper (spamming))" in error.params[0]
    quit_line = find(alice.take(), "QUIT")
    assert quit_line.source.startswith("bob!") and quit_line.params == ("Killed (oper (spamming))",)
    assert net.service.find_user("bob") is None
    # the nick is free again, and WHOWAS remembers it
    assert commands(net.register("bob2").ask("WHOWAS bob"))[0] == "314"


# Secret (+s) and private (+p) channels -------------------------------------------------

def test_secret_and_private_channels_are_hidden_from_outsiders(net):
    alice = net.register("alice")
    alice.ask("JOIN #sec", "JOIN #prv", "JOIN #pub")
    replies = alice.ask("MODE #sec +s", "MODE #prv +p")
    assert [m.params for m in replies if m.command == "MODE"] == [("#sec", "+s"), ("#prv", "+p")]
    assert "s" in find(alice.ask("MODE #sec"), "324").params[2]
    assert "p" in find(alice.ask("MODE #prv"), "324").params[2]
    names = {m.params[2]: m.params[1] for m in alice.ask("NAMES #sec,#prv,#pub")
             if m.command == "353"}
    assert names == {"#sec": "@", "#prv": "*", "#pub": "="}  # RFC 2812 §5.2's symbols
    listed = [m.params[1] for m in alice.ask("LIST") if m.command == "322"]
    assert sorted(listed) == ["#prv", "#pub", "#sec"]

    bob = net.register("bob")
    assert [m.params[1] for m in bob.ask("LIST") if m.command == "322"] == ["#pub"]
    assert [m.params[1] for m in bob.ask("LIST #sec") if m.command == "322"] == []
    assert commands(bob.ask("NAMES #sec")) == ["366"]
    assert [m.params[2] for m in bob.ask("NAMES") if m.command == "353"] == ["#pub"]
    assert commands(bob.ask("WHO #sec")) == ["315"]
    assert find(bob.ask("WHOIS alice"), "319").params[2] == "@#pub"
    # a member sees it again
    bob.ask("JOIN #sec")
    assert [m.params[1] for m in bob.ask("LIST") if m.command == "322"] == ["#pub", "#sec"]


# 417 versus truncation: what the server relays fits 512 bytes, prefix included ----------

def _sizes(alice, bob, target, command="PRIVMSG"):
    """Send bodies around the limit; return what bob got (or None) for each."""
    source_len = len(":alice!alice@127.0.0.1 ")
    fits = MAX_BODY + 2 - source_len - len(f"{command} {target} :\r\n")
    got = []
    for body in ("a" * fits, "a" * (fits + 1), "a" * (fits - 3) + "😃"):
        alice.send(f"{command} {target} :{body}")
        lines = bob.take_raw().split(b"\r\n")
        got.append([ln for ln in lines if ln])
    return fits, got, alice.take()


def test_a_privmsg_that_would_not_fit_relayed_gets_417(net):
    alice, bob = net.register("alice"), net.register("bob")
    _fits, got, replies = _sizes(alice, bob, "bob")
    assert len(got[0]) == 1 and len(got[0][0]) + 2 == 512  # exactly 512 bytes: relayed whole
    assert got[1] == [] and got[2] == []  # one byte more: refused, not split
    assert commands(replies) == ["417", "417"]


def test_a_notice_that_would_not_fit_is_cut_without_an_error(net):
    alice, bob = net.register("alice"), net.register("bob")
    fits, got, replies = _sizes(alice, bob, "bob", command="NOTICE")
    assert replies == []  # NOTICE: no error, ever
    for lines in got:
        assert len(lines) == 1 and len(lines[0]) + 2 <= 512
        lines[0].decode()  # cut on a character boundary
    assert got[1][0].endswith(b":" + b"a" * fits)


def test_a_long_line_door_message_is_still_split_for_irc(net, tmp_path):
    """What the hub holds (up to 4,000 characters from the line door) reaches IRC whole,
    in several PRIVMSGs of at most 512 bytes each."""
    alice, bob = net.register("alice"), net.register("bob")
    alice.ask("JOIN #room")
    bob.ask("JOIN #room")
    alice.take()
    net.service.say(net.service.find_user("bob"), "#room", "word " * 300)
    lines = [ln for ln in alice.take_raw().split(b"\r\n") if ln]
    assert len(lines) > 1 and all(len(ln) + 2 <= 512 for ln in lines)


# A real client library over sockets --------------------------------------------------

async def test_whowas_and_kill_with_jaraco_irc(serve, tmp_path):
    _line, irc_server = await serve("chat", options={
        "data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0,
        "server_name": "irc.test", "operators": {"admin": OPER_HASH}})
    port = irc_server.ports[0]
    loop = asyncio.get_running_loop()
    reactor = irc.client_aio.AioReactor(loop=loop)
    events: asyncio.Queue[tuple[str, str, list[str]]] = asyncio.Queue()

    def record(connection, event):
        args = [event.target, *event.arguments] if event.type == "error" else event.arguments
        events.put_nowait((connection.get_nickname(), event.type, list(args)))

    reactor.add_global_handler("all_events", record)

    async def connect(nick):
        conn = reactor.server()
        await conn.connect("127.0.0.1", port, nick, username=nick, ircname=f"{nick} real")
        await expect(nick, "welcome")
        return conn

    async def expect(nick, kind):
        async def wait():
            while True:
                who, got, args = await events.get()
                if who == nick and got == kind:
                    return args
        return await asyncio.wait_for(wait(), STEP)

    oper, victim = await connect("oper"), await connect("victim")
    victim.send_raw("KILL oper :nope")
    await expect("victim", "noprivileges")
    oper.send_raw("OPER admin s3cret")
    await expect("oper", "youreoper")
    oper.send_raw("KILL victim :bye now")
    args = await expect("victim", "error")
    assert "Killed (oper (bye now))" in args[0]
    oper.whowas("victim")
    args = await expect("oper", "whowasuser")
    assert args[:2] == ["victim", "victim"] and args[-1] == "victim real"
    await expect("oper", "endofwhowas")
    oper.disconnect()


# Small commands irctest's core profile counts: ELIST, the invite list, LINKS, HELPOP ------

def test_list_conditions_elist_mnu(net):
    alice, bob = net.register("alice"), net.register("bob")
    alice.ask("JOIN #chan1", "JOIN #chan2")
    bob.ask("JOIN #chan2")

    def listed(condition):
        return sorted(m.params[1] for m in bob.ask(f"LIST {condition}") if m.command == "322")

    assert listed("*an1") == ["#chan1"]
    assert listed("#c*n2") == ["#chan2"]
    assert listed("!*an1") == ["#chan2"]
    assert listed(">1") == ["#chan2"]
    assert listed("<2") == ["#chan1"]
    assert listed("<1") == []
    assert listed("#ch*,>1") == ["#chan2"]  # every condition must hold
    assert listed("C>5") == ["#chan1", "#chan2"]  # not advertised: ignored
    assert "ELIST=MNU" in " ".join(
        " ".join(m.params) for m in net.connect().ask("NICK dave", "USER d 0 * :D"))


def test_invite_alone_lists_pending_invitations(net):
    alice, bob = net.register("alice"), net.register("bob")
    alice.ask("JOIN #chan", "INVITE bob #chan")
    replies = bob.ask("INVITE")
    assert [(m.command, m.params) for m in replies if m.command != "INVITE"] == [
        ("336", ("bob", "#chan")), ("337", ("bob", "End of /INVITE list"))]
    bob.ask("JOIN #chan")
    assert commands(bob.ask("INVITE")) == ["337"]  # used up by the join
    assert commands(bob.ask("INVITE alice")) == ["461"]


def test_links_and_helpop(net):
    me = net.register("me")
    assert [(m.command, m.params) for m in me.ask("LINKS")] == [
        ("365", ("me", "*", "End of /LINKS list"))]
    replies = me.ask("HELPOP")
    assert replies[0].command == "704" and replies[-1].command == "706"


def test_no_ctcp_mode_lets_action_through_only(net):
    op, user = net.register("op"), net.register("user")
    op.ask("JOIN #chan")
    user.ask("JOIN #chan")
    op.take()
    op.ask("MODE #chan +C")
    user.take()
    assert user.ask("PRIVMSG #chan :\x01ACTION is testing\x01") == []
    refused = user.ask("PRIVMSG #chan :\x01PING 12345\x01")
    assert [(m.command, m.params[:2]) for m in refused] == [("404", ("user", "#chan"))]
    assert [m.params[1] for m in op.take() if m.command == "PRIVMSG"] == [
        "\x01ACTION is testing\x01"]
    assert "C" in find(op.ask("MODE #chan"), "324").params[2]


async def test_a_secret_channel_is_not_listed_at_the_line_door(hub_serve):
    """+s set from IRC hides the room from a line user's /rooms too."""
    line_port, irc_port = await hub_serve()
    alice = await irc_client(irc_port, "alice", "#hidden", "#shown")
    await alice.send("MODE #hidden +s")
    await alice.expect("MODE #hidden +s")
    bob = await chat_client(line_port, "bob")
    start = len(bob.seen)
    await bob.send("/rooms")
    await bob.expect("#shown")  # sorted: #hidden would come before it
    listing = bob.seen[start:]
    assert any("2 room(s):" in line for line in listing), listing  # #lobby and #shown
    assert not any("#hidden" in line for line in listing), listing
    alice.close()
    bob.close()


@pytest.fixture
def hub_serve(serve, tmp_path):
    async def start():
        line, irc_server = await serve("chat", options={
            "data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0,
            "server_name": "irc.test"})
        return line.ports[0], irc_server.ports[0]
    return start


def test_kill_closes_a_web_door_session_too(net):
    """KILL works on every door: a web (JSON) user is told why and closed."""
    import json

    from sockhub.doors.web.chat_json import CLOSE_POLICY, JsonChat

    class Peer:
        def __init__(self):
            self.sent, self.closed = [], None

        def send_text(self, text):
            self.sent.append(json.loads(text))

        push_text = send_text

        def close_ws(self, code, reason):
            self.closed = (code, reason)

        def wake(self):
            pass

    peer = Peer()
    web = JsonChat(net.service, peer, address="127.0.0.1", now=net.clock.time())
    web.receive_text(json.dumps({"type": "hello", "version": 1, "nick": "webby"}),
                     net.clock.time())
    oper = net.register("oper")
    oper.ask("OPER admin s3cret", "KILL webby :enough")
    assert peer.closed == (CLOSE_POLICY, "killed")
    assert peer.sent[-1] == {"type": "error", "code": "killed",
                             "message": "Killed (oper (enough))"}
    assert net.service.find_user("webby") is None
