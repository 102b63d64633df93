"""The IRC door driven with bytes, no sockets: registration, commands and their numerics.

Each reply is checked against the format the Modern IRC document gives
(``<client> <params> :<text>``); error cases must answer with the standard
numeric, never silence (NOTICE excepted: RFC 2812 §3.3.2 forbids replies).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from irc_support import Network, commands, find
from sockhub.doors.irc.commands import COMMANDS
from sockhub.passwords import hash_password

OPER_HASH = hash_password("s3cret", log_n=10)
NOT_OP = "You're not channel operator"


@pytest.fixture
def net(tmp_path):
    network = Network(tmp_path, operators={"admin": OPER_HASH})
    yield network
    network.close()


# Registration ---------------------------------------------------------------------


def test_welcome_burst_in_order(net):
    client = net.connect()
    replies = client.ask("NICK alice", "USER al 0 * :Alice Liddell")
    assert commands(replies) == [
        "001", "002", "003", "004", "005", "005",
        "251", "252", "254", "255", "265", "266", "422",
    ]
    welcome = replies[0]
    assert welcome.source == "irc.test"
    assert welcome.params == ("alice", "Welcome to the irc.test Network, alice!al@127.0.0.1")
    assert replies[3].params == ("alice", "irc.test", "sockhub-0.1.0", "Biow", "Cbiklmnopstv",
                                 "bklov")
    tokens = {}
    for message in replies[4:6]:
        assert message.params[0] == "alice"
        assert len(message.params) <= 15  # at most 13 tokens per line
        assert message.params[-1] == "are supported by this server"
        for token in message.params[1:-1]:
            key, _, value = token.partition("=")
            tokens[key] = value
    assert tokens["CASEMAPPING"] == "ascii"
    assert tokens["PREFIX"] == "(ov)@+"
    assert tokens["CHANMODES"] == "b,k,l,Cimnpst"
    assert tokens["NICKLEN"] == "30" and tokens["CHANNELLEN"] == "50"
    assert tokens["CHANTYPES"] == "#"
    assert "UTF8ONLY" in tokens and "WHOX" in tokens
    assert replies[-1].params == ("alice", "MOTD File is missing")


def test_motd_file_is_sent(tmp_path):
    (tmp_path / "motd.txt").write_text("Welcome!\n\nBe nice.\n")
    net = Network(tmp_path, motd_file=tmp_path / "motd.txt")
    client = net.connect()
    replies = client.ask("NICK bob", "USER bob 0 * :Bob")
    tail = replies[-5:]
    assert commands(tail) == ["375", "372", "372", "372", "376"]
    assert [m.params[1] for m in tail[1:4]] == ["- Welcome!", "- ", "- Be nice."]
    client.send("MOTD")
    assert commands(client.take()) == ["375", "372", "372", "372", "376"]
    net.close()


def test_cap_negotiation_holds_registration_until_cap_end(net):
    client = net.connect()
    ls = client.ask("CAP LS 302")
    assert ls[0].command == "CAP" and ls[0].params[:2] == ("*", "LS")
    assert "multi-prefix" in ls[0].params[-1].split()
    assert client.ask("NICK carol", "USER carol 0 * :Carol") == []
    nak = client.ask("CAP REQ :multi-prefix bogus")
    assert nak[0].params == ("*", "NAK", "multi-prefix bogus")
    ack = client.ask("CAP REQ :multi-prefix server-time")
    assert ack[0].params == ("*", "ACK", "multi-prefix server-time")
    listed = client.ask("CAP LIST")
    assert set(listed[0].params[2].split()) == {"cap-notify", "multi-prefix", "server-time"}
    replies = client.ask("CAP END")
    assert replies[0].command == "001"
    assert "time" in replies[0].tags  # server-time: on every message from now on
    removed = client.ask("CAP REQ :-server-time")
    assert removed[0].params == ("carol", "ACK", "-server-time")
    assert "time" not in client.ask("CAP LIST")[0].tags


def test_cap_edge_cases(net):
    client = net.connect()
    assert client.ask("CAP LIST")[0].params == ("*", "LIST", "")
    assert client.ask("CAP LS")[0].params[:2] == ("*", "LS")  # 3.1: no values, one line
    bad = client.ask("CAP FROB")
    assert bad[0].command == "410" and bad[0].params[:2] == ("*", "FROB")
    assert commands(client.ask("CAP")) == ["461"]


@pytest.mark.parametrize(
    ("line", "numeric", "params"),
    [
        ("JOIN #x", "451", ("*", "You have not registered")),
        ("FROBNICATE", "451", ("*", "You have not registered")),
        ("USER onlyone", "461", ("*", "USER", "Not enough parameters")),
        ("USER u 0 * :", "461", ("*", "USER", "Not enough parameters")),
        ("NICK", "431", ("*", "No nickname given")),
        ("NICK 9lives", "432", ("*", "9lives", "Erroneous nickname")),
        ("NICK #chan", "432", ("*", "#chan", "Erroneous nickname")),
        ("PING", "461", ("*", "PING", "Not enough parameters")),
    ],
)
def test_registration_errors(net, line, numeric, params):
    client = net.connect()
    replies = client.ask(line)
    assert len(replies) == 1
    assert replies[0].command == numeric and replies[0].params == params
    assert replies[0].source == "irc.test"


def test_nick_in_use_before_and_during_registration(net):
    net.register("alice")
    early = net.connect()
    late = net.connect()
    assert find(early.ask("NICK ALICE"), "433").params == (
        "*", "ALICE", "Nickname is already in use")
    # Two clients may ask for the same free nick; the first to finish gets it.
    early.send("NICK dave")
    late.send("NICK dave", "USER d 0 * :D")
    assert commands(late.take())[0] == "001"
    assert find(early.ask("USER e 0 * :E"), "433").params[1] == "dave"
    assert commands(early.ask("NICK erin"))[0] == "001"


def test_connection_password(tmp_path):
    net = Network(tmp_path, irc_password="opensesame")
    good = net.connect()
    assert commands(good.ask("PASS opensesame", "NICK ok", "USER ok 0 * :Ok"))[0] == "001"
    assert find(good.ask("PASS again"), "462").params == ("ok", "You may not reregister")
    for lines in (["PASS wrong", "NICK bad", "USER bad 0 * :B"], ["NICK none", "USER n 0 * :N"],
                  ["NICK late", "USER l 0 * :L", "PASS opensesame"]):
        client = net.connect()
        replies = client.ask(*lines)
        assert commands(replies) == ["464", "ERROR"]
        assert client.closed
    hashed = Network(tmp_path / "h", irc_password=hash_password("pw", log_n=10))
    client = hashed.connect()
    assert commands(client.ask("PASS pw", "NICK h", "USER h 0 * :H"))[0] == "001"
    net.close()
    hashed.close()


def test_unknown_and_registered_only_errors(net):
    alice = net.register("alice")
    assert find(alice.ask("FROBNICATE x"), "421").params == (
        "alice", "FROBNICATE", "Unknown command")
    assert find(alice.ask("USER a 0 * :A"), "462").params == ("alice", "You may not reregister")
    assert find(alice.ask("JOIN"), "461").params == ("alice", "JOIN", "Not enough parameters")
    assert find(alice.ask("privmsg"), "411").params == ("alice", "No recipient given (PRIVMSG)")


def test_ping_pong_and_quit(net):
    alice = net.register("alice")
    bob = net.register("bob")
    for client in (alice, bob):
        client.ask("JOIN #q")
    alice.take()
    assert alice.ask("PING abcdef")[0].params == ("irc.test", "abcdef")
    assert find(alice.ask("PONG"), "409").params == ("alice", "No origin specified")
    replies = bob.ask("QUIT :see you")
    assert replies[-1].command == "ERROR"
    assert bob.closed
    quit_msg = find(alice.take(), "QUIT")
    assert quit_msg.source == "bob!bob@127.0.0.1" and quit_msg.params == ("Quit: see you",)


def test_nick_change_is_seen_by_everyone_sharing_a_channel(net):
    alice = net.register("alice")
    bob = net.register("bob")
    carol = net.register("carol")
    alice.ask("JOIN #a")
    bob.ask("JOIN #a")
    alice.take()
    change = find(bob.ask("NICK robert"), "NICK")
    assert change.source == "bob!bob@127.0.0.1" and change.params == ("robert",)
    assert find(alice.take(), "NICK").params == ("robert",)
    assert carol.take() == []  # shares no channel
    assert find(bob.ask("NICK alice"), "433").params == ("robert", "alice",
                                                         "Nickname is already in use")
    assert find(bob.ask("NICK"), "431").command == "431"


# Channels -------------------------------------------------------------------------


def test_join_sends_join_topic_names_in_order(net):
    alice = net.register("alice")
    replies = alice.ask("JOIN #chan")
    assert commands(replies) == ["JOIN", "353", "366"]  # no topic: no 331 on JOIN
    assert replies[0].source == "alice!alice@127.0.0.1" and replies[0].params == ("#chan",)
    assert replies[1].params == ("alice", "=", "#chan", "@alice")
    assert replies[2].params == ("alice", "#chan", "End of /NAMES list")
    assert alice.ask("JOIN #chan") == []  # already there: nothing
    alice.ask("TOPIC #chan :the topic")
    bob = net.register("bob")
    replies = bob.ask("JOIN #CHAN")
    assert commands(replies) == ["JOIN", "332", "333", "353", "366"]
    assert replies[1].params == ("bob", "#chan", "the topic")
    assert replies[2].params[:3] == ("bob", "#chan", "alice!alice@127.0.0.1")  # the setter in full
    assert replies[3].params == ("bob", "=", "#chan", "@alice bob")


def test_join_several_channels_with_keys_and_join_zero(net):
    alice = net.register("alice")
    alice.ask("JOIN #k", "MODE #k +k sesame")
    bob = net.register("bob")
    replies = bob.ask("JOIN #a,#k,#b,bad wrong,sesame")
    joins = [m.params[0] for m in replies if m.command == "JOIN"]
    assert joins == ["#a", "#k", "#b"]
    assert find(replies, "403").params == ("bob", "bad", "No such channel")
    parts = bob.ask("JOIN 0")
    assert sorted(m.params[0] for m in parts if m.command == "PART") == ["#a", "#b", "#k"]


@pytest.mark.parametrize(
    ("setup", "line", "numeric", "params"),
    [
        ([], "JOIN nohash", "403", ("bob", "nohash", "No such channel")),
        ([], "JOIN :#with space", "476",
         ("bob", "#with_space", "Bad channel name: a room name cannot contain a space "
          "(no spaces, commas, colons or control characters)")),
        ([], "PART #nowhere", "403", ("bob", "#nowhere", "No such channel")),
        ([], "PART #room", "442", ("bob", "#room", "You're not on that channel")),
        ([], "TOPIC #nowhere", "403", ("bob", "#nowhere", "No such channel")),
        ([], "TOPIC #room", "442", ("bob", "#room", "You're not on that channel")),
        (["JOIN #room"], "TOPIC #room", "331", ("bob", "#room", "No topic is set")),
        (["JOIN #room"], "TOPIC #room :mine", "482", ("bob", "#room", NOT_OP)),
        (["JOIN #room"], "KICK #room alice", "482", ("bob", "#room", NOT_OP)),
        ([], "KICK #room alice", "442", ("bob", "#room", "You're not on that channel")),
        ([], "KICK #nowhere alice", "403", ("bob", "#nowhere", "No such channel")),
        (["JOIN #room"], "MODE #room +m", "482", ("bob", "#room", "You're not channel operator")),
        ([], "MODE #room +m", "442", ("bob", "#room", "You're not on that channel")),
        ([], "MODE #nowhere", "403", ("bob", "#nowhere", "No such channel")),
        ([], "MODE #room +z", "472", ("bob", "z", "is unknown mode char to me")),
        ([], "MODE alice", "502", ("bob", "Can't change mode for other users")),
        ([], "MODE nobody", "401", ("bob", "nobody", "No such nick/channel")),
        ([], "MODE bob +x", "501", ("bob", "Unknown MODE flag")),
        ([], "INVITE nobody #room", "401", ("bob", "nobody", "No such nick/channel")),
        ([], "INVITE alice #nowhere", "403", ("bob", "#nowhere", "No such channel")),
        ([], "INVITE carol #room", "442", ("bob", "#room", "You're not on that channel")),
        (["JOIN #room"], "INVITE alice #room", "443",
         ("bob", "alice", "#room", "is already on channel")),
        ([], "PRIVMSG", "411", ("bob", "No recipient given (PRIVMSG)")),
        ([], "PRIVMSG alice", "412", ("bob", "No text to send")),
        ([], "PRIVMSG alice :", "412", ("bob", "No text to send")),
        ([], "PRIVMSG alice :   ", "412", ("bob", "No text to send")),  # only spaces
        ([], "PRIVMSG nobody :hi", "401", ("bob", "nobody", "No such nick/channel")),
        ([], "PRIVMSG #nowhere :hi", "401", ("bob", "#nowhere", "No such nick/channel")),
        ([], "WHOIS", "431", ("bob", "No nickname given")),
        ([], "WHOIS other.server alice", "402", ("bob", "other.server", "No such server")),
        ([], "OPER admin wrong", "464", ("bob", "Password incorrect")),
        ([], "OPER admin", "461", ("bob", "OPER", "Not enough parameters")),
        ([], "KICK #room", "461", ("bob", "KICK", "Not enough parameters")),
        ([], "USERHOST", "461", ("bob", "USERHOST", "Not enough parameters")),
        ([], "TIME other.server", "402", ("bob", "other.server", "No such server")),
        ([], "HELP FROB", "524", ("bob", "FROB", "No help available on this topic")),
    ],
)
def test_error_numerics(net, setup, line, numeric, params):
    alice = net.register("alice")
    alice.ask("JOIN #room", "MODE #room +t")
    net.register("carol")
    bob = net.register("bob")
    bob.ask(*setup) if setup else None
    replies = bob.ask(line)
    assert len(replies) == 1, replies
    assert replies[0].command == numeric
    assert replies[0].params == params


def test_privmsg_refusals_in_a_channel(net):
    alice = net.register("alice")
    bob = net.register("bob")
    alice.ask("JOIN #room")
    assert find(bob.ask("PRIVMSG #room :from outside"), "404").params[:2] == ("bob", "#room")
    alice.ask("MODE #room -n")
    bob.ask("PRIVMSG #room :from outside")
    assert find(alice.take(), "PRIVMSG").params == ("#room", "from outside")
    bob.ask("JOIN #room")
    alice.ask("MODE #room +m")
    assert find(bob.ask("PRIVMSG #room :muted"), "404").params[:2] == ("bob", "#room")
    alice.ask("MODE #room +v bob")
    bob.ask("PRIVMSG #room :voiced")
    assert find(alice.take(), "PRIVMSG").params == ("#room", "voiced")
    targets = bob.ask("PRIVMSG alice,alice,alice,alice,alice :five")
    assert find(targets, "407").params == ("bob", "alice", "Too many targets")


def test_notice_errors_are_silent(net):
    bob = net.register("bob")
    assert bob.ask("NOTICE nobody :hi", "NOTICE #nowhere :hi", "NOTICE", "NOTICE bob") == []


def test_topic_lock_and_op_changes(net):
    alice = net.register("alice")
    bob = net.register("bob")
    alice.ask("JOIN #t")
    bob.ask("JOIN #t")
    alice.take()
    assert find(bob.ask("TOPIC #t :first"), "482").params[1] == "#t"  # new channels are +t
    alice.ask("MODE #t -t")
    assert find(bob.take(), "MODE").params == ("#t", "-t")
    bob.ask("TOPIC #t :bob's topic")  # -t: anyone may
    assert find(alice.take(), "TOPIC").params == ("#t", "bob's topic")
    alice.ask("MODE #t +t")
    assert find(bob.take(), "MODE").params == ("#t", "+t")
    assert find(bob.ask("TOPIC #t :again"), "482").params[1] == "#t"
    granted = find(alice.ask("MODE #t +o bob"), "MODE")
    assert granted.params == ("#t", "+o", "bob")
    assert find(bob.take(), "MODE").params == ("#t", "+o", "bob")
    bob.ask("TOPIC #t :")  # an empty topic clears it
    assert find(alice.take(), "TOPIC").params == ("#t", "")
    assert find(alice.ask("TOPIC #t"), "331").params == ("alice", "#t", "No topic is set")


def test_channel_modes_and_their_numerics(net):
    op = net.register("op")
    guest = net.register("guest")
    op.ask("JOIN #m")
    replies = op.ask("MODE #m")
    assert find(replies, "324").params == ("op", "#m", "+nt")  # as IRC servers make them
    assert find(replies, "329").params[:2] == ("op", "#m")
    op.ask("MODE #m +intk-n sesame")
    assert find(op.ask("MODE #m"), "324").params == ("op", "#m", "+itk", "sesame")
    assert find(guest.ask("MODE #m"), "324").params == ("guest", "#m", "+itk", "*")
    assert find(guest.ask("JOIN #m sesame"), "473").params == ("guest", "#m",
                                                             "Cannot join channel (+i)")
    op.ask("MODE #m -i")
    assert find(guest.ask("JOIN #m"), "475").params == ("guest", "#m", "Cannot join channel (+k)")
    assert find(guest.ask("JOIN #m wrong"), "475").command == "475"
    op.ask("MODE #m -k+l *", "MODE #m +l 1")
    assert find(guest.ask("JOIN #m"), "471").params == ("guest", "#m", "Cannot join channel (+l)")
    bad = op.ask("MODE #m +k :has spaces")
    assert find(bad, "696").params[:4] == ("op", "#m", "k", "*")
    bad = op.ask("MODE #m +l many")
    assert find(bad, "696").params[:4] == ("op", "#m", "l", "many")
    assert find(op.ask("MODE #m +o"), "461").params == ("op", "MODE", "Not enough parameters")
    assert find(op.ask("MODE #m +o nobody"), "401").params == ("op", "nobody",
                                                             "No such nick/channel")
    assert find(op.ask("MODE #m +v guest"), "441").params == ("op", "guest", "#m",
                                                            "They aren't on that channel")
    # Modes that change nothing are not echoed.
    op.take()
    assert op.ask("MODE #m +t") == []


def test_bans_stop_joins_and_speech_and_list(net):
    op = net.register("op")
    bob = net.register("bob")
    op.ask("JOIN #b")
    bob.ask("JOIN #b")
    op.take()
    assert find(op.ask("MODE #b +b bob!*@*"), "MODE").params == ("#b", "+b", "bob!*@*")
    assert find(bob.take(), "MODE").params == ("#b", "+b", "bob!*@*")  # still a member
    assert find(bob.ask("PRIVMSG #b :hi"), "404").params[:2] == ("bob", "#b")
    listed = op.ask("MODE #b +b")
    assert [m.params[2] for m in listed if m.command == "367"] == ["bob!*@*"]
    assert find(listed, "368").params == ("op", "#b", "End of channel ban list")
    bob.ask("PART #b")
    assert find(bob.ask("JOIN #b"), "474").params == ("bob", "#b", "Cannot join channel (+b)")
    op.ask("MODE #b -b bob!*@*")
    assert commands(bob.ask("JOIN #b"))[0] == "JOIN"


def test_kick(net):
    op = net.register("op")
    bob = net.register("bob")
    carol = net.register("carol")
    for client in (op, bob, carol):
        client.ask("JOIN #k")
    op.take()
    bob.take()
    kick = find(op.ask("KICK #k bob :behave"), "KICK")
    assert kick.source == "op!op@127.0.0.1" and kick.params == ("#k", "bob", "behave")
    assert find(bob.take(), "KICK").params == ("#k", "bob", "behave")
    assert find(carol.take(), "KICK").params == ("#k", "bob", "behave")
    assert find(op.ask("KICK #k bob"), "441").params == ("op", "bob", "#k",
                                                         "They aren't on that channel")
    assert find(op.ask("KICK #k nobody"), "401").params[1] == "nobody"
    kicked = [m for m in op.ask("KICK #k carol,op") if m.command == "KICK"]
    assert [m.params[1] for m in kicked] == ["carol", "op"]
    assert kicked[0].params[2] == "op"  # no reason given: the kicker's nick


def test_invite_only_flow(net):
    op = net.register("op")
    guest = net.register("guest")
    op.ask("JOIN #i", "MODE #i +i")
    assert find(guest.ask("JOIN #i"), "473").command == "473"
    inviting = op.ask("INVITE guest #i")
    assert find(inviting, "341").params == ("op", "guest", "#i")
    invite = find(guest.take(), "INVITE")
    assert invite.source == "op!op@127.0.0.1" and invite.params == ("guest", "#i")
    assert commands(guest.ask("JOIN #i"))[0] == "JOIN"
    guest.ask("PART #i")
    assert find(guest.ask("JOIN #i"), "473").command == "473"  # an invitation is used up
    op.ask("MODE #i +b guest!*@*", "INVITE guest #i")
    assert find(guest.ask("JOIN #i"), "JOIN").params == ("#i",)  # past a ban too, once
    outsider = net.register("outsider")
    member = net.register("member")
    op.ask("INVITE member #i")
    member.ask("JOIN #i")
    assert find(member.ask("INVITE outsider #i"), "482").params[1] == "#i"
    assert outsider.take() == []


def test_names_list_and_prefixes(net):
    op = net.register("op", "multi-prefix", "userhost-in-names")
    plain = net.register("plain")
    op.ask("JOIN #n", "MODE #n +v op")
    plain.ask("JOIN #n")
    names = find(op.ask("NAMES #n"), "353")
    assert names.params == ("op", "=", "#n", "@+op!op@127.0.0.1 plain!plain@127.0.0.1")
    assert find(plain.ask("NAMES #n"), "353").params[-1] == "@op plain"
    assert find(plain.ask("NAMES #none"), "366").params == ("plain", "#none",
                                                           "End of /NAMES list")
    plain.ask("JOIN #other")
    several = plain.ask("NAMES #n,#none,#other")
    assert commands(several) == ["353", "353", "366"]
    assert several[-1].params[1] == "#n,#none,#other"
    every = plain.ask("NAMES")
    assert [m.params[2] for m in every[:-1]] == ["#n", "#other"]
    assert every[-1].params[1] == "*"
    op.ask("TOPIC #n :hello")
    plain.take()
    listing = plain.ask("LIST")
    assert commands(listing) == ["321", "322", "322", "323"]
    assert listing[1].params == ("plain", "#n", "2", "hello")
    assert listing[2].params == ("plain", "#other", "1", "")
    assert commands(plain.ask("LIST #nope")) == ["321", "323"]


def test_user_modes(net):
    alice = net.register("alice")
    assert find(alice.ask("MODE alice"), "221").params == ("alice", "+")
    echo = find(alice.ask("MODE alice +i"), "MODE")
    assert echo.params == ("alice", "+i")
    assert find(alice.ask("MODE alice"), "221").params == ("alice", "+i")
    replies = alice.ask("MODE alice -i+x")
    assert find(replies, "MODE").params == ("alice", "-i")
    assert find(replies, "501").command == "501"


def test_oper(net):
    alice = net.register("alice")
    replies = alice.ask("OPER admin s3cret")
    assert find(replies, "381").params == ("alice", "You are now an IRC operator")
    assert find(replies, "MODE").params == ("alice", "+o")
    assert find(alice.ask("MODE alice"), "221").params == ("alice", "+o")
    guesser = net.register("guesser")
    for _ in range(3):
        guesser.send("OPER admin nope")
    assert commands(guesser.take()) == ["464", "464", "464", "ERROR"]
    assert guesser.closed


# Messages ---------------------------------------------------------------------------


def test_privmsg_echo_message_and_server_time(net):
    alice = net.register("alice", "echo-message", "server-time", "message-tags")
    bob = net.register("bob")
    alice.ask("JOIN #c")
    bob.ask("JOIN #c")
    alice.take()
    echo = find(alice.ask("@+draft/reply=1 PRIVMSG #c :hello"), "PRIVMSG")
    assert echo.source == "alice!alice@127.0.0.1" and echo.params == ("#c", "hello")
    assert {"time", "msgid", "+draft/reply"} <= set(echo.tags)
    seen = find(bob.take(), "PRIVMSG")
    assert seen.params == ("#c", "hello") and seen.tags == {}
    bob.ask("PRIVMSG #c :\x01ACTION waves\x01")
    action = find(alice.take(), "PRIVMSG")
    assert action.params == ("#c", "\x01ACTION waves\x01")
    assert bob.ask("PRIVMSG #c :no echo for bob") == []


def test_private_messages_away_and_away_notify(net):
    alice = net.register("alice", "away-notify")
    bob = net.register("bob")
    alice.ask("JOIN #a")
    bob.ask("JOIN #a")
    alice.take()
    assert find(bob.ask("AWAY :lunch"), "306").params == (
        "bob", "You have been marked as being away")
    assert find(alice.take(), "AWAY").params == ("lunch",)
    replies = alice.ask("PRIVMSG bob :are you there?")
    assert find(replies, "301").params == ("alice", "bob", "lunch")
    got = find(bob.take(), "PRIVMSG")
    assert got.source == "alice!alice@127.0.0.1" and got.params == ("bob", "are you there?")
    assert find(bob.ask("AWAY"), "305").params == ("bob", "You are no longer marked as being away")
    assert find(alice.take(), "AWAY").params == ()
    alice.ask("JOIN #b")
    bob.ask("AWAY :again", "JOIN #b")
    joined = alice.take()
    assert commands(joined)[-2:] == ["JOIN", "AWAY"]  # away-notify on join
    assert joined[-1].source == "bob!bob@127.0.0.1" and joined[-1].params == ("again",)


def test_tagmsg_reaches_only_clients_with_message_tags(net):
    tagged = net.register("tagged", "message-tags")
    plain = net.register("plain")
    sender = net.register("sender", "message-tags")
    for client in (tagged, plain, sender):
        client.ask("JOIN #t")
    tagged.take()
    plain.take()
    sender.ask("@+typing=active TAGMSG #t")
    signal = find(tagged.take(), "TAGMSG")
    assert signal.params == ("#t",) and signal.tags["+typing"] == "active"
    assert plain.take() == []


def test_long_messages_from_the_hub_are_split_to_fit_512_bytes(net):
    alice = net.register("alice")
    alice.ask("JOIN #long")
    user = net.service.hub.find_user("alice")
    text = "word " * 700  # 3500 characters: fine for the line door, not for one IRC line
    net.service.say(user, "#long", text.strip())
    # alice's own message is not echoed without echo-message; read a second user's copy
    bob = net.register("bob")
    bob.ask("JOIN #long")
    bob.take()
    net.service.say(user, "#long", text.strip())
    raw = bob.take_raw()
    lines = [ln for ln in raw.split(b"\r\n") if ln]
    assert len(lines) >= 7
    assert all(len(ln) + 2 <= 512 for ln in lines)
    rebuilt = "".join(ln.decode().split(" :", 1)[1] for ln in lines)
    assert rebuilt == text.strip()


# Queries ------------------------------------------------------------------------------


def test_who_and_whox(net):
    cool = net.register("coolNick", realname="My Real Name")
    other = net.register("other")
    cool.ask("JOIN #w", "AWAY :brb")
    other.ask("JOIN #w")
    replies = other.ask("WHO #w")
    assert commands(replies) == ["352", "352", "315"]
    rows = sorted(replies[:2], key=lambda m: m.params[5])
    assert rows[0].params == ("other", "#w", "coolnick", "127.0.0.1", "irc.test", "coolNick",
                              "G@", "0 My Real Name")
    assert rows[1].params[5:7] == ("other", "H")
    assert replies[-1].params == ("other", "#w", "End of WHO list")
    by_nick = other.ask("WHO COOLNICK")
    assert commands(by_nick) == ["352", "315"] and by_nick[1].params[1] == "COOLNICK"
    assert commands(other.ask("WHO cool*")) == ["352", "315"]
    assert commands(other.ask("WHO nobody")) == ["315"]
    whox = other.ask("WHO coolNick %tcuhnfar,42")
    assert whox[0].command == "354"
    assert whox[0].params == ("other", "42", "*", "coolnick", "127.0.0.1", "coolNick", "G",
                              "0", "My Real Name")


def test_whois(net):
    alice = net.register("alice", realname="Alice L")
    bob = net.register("bob")
    alice.ask("JOIN #one", "JOIN #two", "AWAY :away now", "OPER admin s3cret")
    replies = bob.ask("WHOIS alice")
    assert commands(replies) == ["311", "319", "312", "313", "301", "317", "318"]
    assert replies[0].params == ("bob", "alice", "alice", "127.0.0.1", "*", "Alice L")
    assert replies[1].params == ("bob", "alice", "@#one @#two")
    assert replies[2].params == ("bob", "alice", "irc.test", "sockhub chat hub")
    assert replies[4].params == ("bob", "alice", "away now")
    assert replies[5].params[4] == "seconds idle, signon time"
    assert replies[-1].params == ("bob", "alice", "End of /WHOIS list")
    assert commands(bob.ask("WHOIS irc.test alice"))[0] == "311"
    assert commands(bob.ask("WHOIS alice alice"))[0] == "311"
    assert commands(bob.ask("WHOIS nobody")) == ["401", "318"]
    alice.ask("MODE alice +i")
    assert "319" not in commands(bob.ask("WHOIS alice"))  # invisible: channels hidden


def test_ison_userhost_lusers_version_time_info_help(net):
    alice = net.register("alice")
    bob = net.register("bob")
    alice.ask("OPER admin s3cret", "AWAY :gone")
    assert find(bob.ask("ISON alice nobody BOB"), "303").params == ("bob", "alice bob")
    assert find(bob.ask("ISON :alice nobody"), "303").params == ("bob", "alice")
    assert find(bob.ask("USERHOST alice bob nobody"), "302").params == (
        "bob", "alice*=-alice@127.0.0.1 bob=+bob@127.0.0.1")
    lusers = bob.ask("LUSERS")
    assert commands(lusers) == ["251", "252", "254", "255", "265", "266"]
    assert lusers[1].params == ("bob", "1", "operator(s) online")
    version = bob.ask("VERSION")
    assert version[0].command == "351" and version[0].params[1:3] == ("sockhub-0.1.0", "irc.test")
    assert commands(version)[1:] == ["005", "005"]
    time_reply = find(bob.ask("TIME"), "391")
    assert time_reply.params[1] == "irc.test"
    assert commands(bob.ask("INFO"))[-1] == "374"
    assert commands(bob.ask("HELP"))[0] == "704" and commands(bob.ask("HELP"))[-1] == "706"
    assert commands(bob.ask("HELP privmsg")) == ["704", "705", "706"]


def test_lusers_counts_follow_invisibility_operators_and_departures(net):
    """The counts are kept as they change (a scan of every user made each registration
    O(N)): +i and -i, OPER and -o, and a quit of an invisible operator."""
    def counts(client):  # type: ignore[no-untyped-def]
        lusers = client.ask("LUSERS")
        return find(lusers, "251").params[-1], find(lusers, "252").params[1]

    alice, bob = net.register("alice"), net.register("bob")
    assert counts(bob) == ("There are 2 users and 0 invisible on 1 servers", "0")
    alice.ask("MODE alice +i", "OPER admin s3cret")
    assert counts(bob) == ("There are 1 users and 1 invisible on 1 servers", "1")
    alice.ask("MODE alice -o")
    assert counts(bob) == ("There are 1 users and 1 invisible on 1 servers", "0")
    alice.ask("OPER admin s3cret", "MODE alice -i")
    assert counts(bob) == ("There are 2 users and 0 invisible on 1 servers", "1")
    alice.ask("MODE alice +i")
    alice.ask("QUIT :bye")
    assert counts(bob) == ("There are 1 users and 0 invisible on 1 servers", "0")


# Input limits --------------------------------------------------------------------------


def test_overlong_lines_and_bad_bytes_are_answered_and_survived(net):
    bob = net.register("bob")
    too_long = "PRIVMSG bob :" + "x" * 600
    assert find(bob.ask(too_long), "417").params == ("bob", "Input line was too long")
    tags = "@+big=" + "y" * 5000 + " PRIVMSG bob :hi"
    assert find(bob.ask(tags), "417").command == "417"
    monster = b"PRIVMSG bob :" + b"z" * 20000  # past any buffer: dropped as it arrives
    bob.send(monster[:9000])
    bob.send(monster[9000:] + b"\r\n")
    assert find(bob.take(), "417").command == "417"
    bad = bob.ask(b"PRIVMSG bob :caf\xe9\r\n")
    assert bad[0].command == "FAIL" and bad[0].params[:2] == ("PRIVMSG", "INVALID_UTF8")
    assert bob.ask("PING still-here")[0].params == ("irc.test", "still-here")
    assert bob.ask(b"\r\n\r\n") == []  # empty lines are ignored
    assert bob.ask(b"PING lf-only\n")[0].params[1] == "lf-only"


def test_labeled_response(net):
    alice = net.register("alice", "labeled-response", "batch", "echo-message")
    one = alice.ask("@label=one PING x")
    assert one[0].tags["label"] == "one" and one[0].command == "PONG"
    none = alice.ask("@label=two PONG x")
    assert none[0].command == "ACK" and none[0].tags["label"] == "two"
    many = alice.ask("@label=three JOIN #lab")
    assert many[0].command == "BATCH" and many[0].tags["label"] == "three"
    ref = many[0].params[0][1:]
    assert many[0].params[1] == "labeled-response"
    assert all(m.tags.get("batch") == ref for m in many[1:-1])
    assert commands(many[1:-1]) == ["JOIN", "353", "366"]
    assert many[-1].params == ("-" + ref,)
    bye = alice.ask("@label=four QUIT :done")
    assert bye[0].command == "ERROR" and bye[0].tags["label"] == "four"
    assert alice.closed


def test_a_paste_without_flood_control_is_not_excess_flood(net):
    bob = net.register("bob")
    bob.ask("JOIN #p")
    bob.send(b"".join(b"PRIVMSG #p :line %d\r\n" % i for i in range(400)))
    assert not bob.closed


def test_a_failing_handler_costs_one_command_not_the_connection(net, monkeypatch):
    bob = net.register("bob")

    def broken(door, message):
        raise RuntimeError("bug")

    monkeypatch.setitem(COMMANDS, "TIME", replace(COMMANDS["TIME"], handler=broken))
    replies = bob.ask("TIME", "PING after")
    assert replies[0].command == "400" and replies[0].params[1] == "TIME"
    assert replies[1].params == ("irc.test", "after")


def test_a_failing_fast_path_handler_costs_one_message_not_the_connection(net, monkeypatch,
                                                                          caplog):
    """``PRIVMSG #channel :text`` (the door's fast path) fails as any command does."""
    bob = net.register("bob")
    bob.ask("JOIN #f")

    def broken(door, target, text, size):
        raise RuntimeError("fast-path bug")

    monkeypatch.setitem(COMMANDS, "PRIVMSG", replace(COMMANDS["PRIVMSG"], fast=broken))
    with caplog.at_level(logging.ERROR, logger="sockhub.irc"):
        replies = bob.ask("PRIVMSG #f :hello", "PING after")
    assert replies[0].command == "400" and replies[0].params[1] == "PRIVMSG"
    assert replies[1].params == ("irc.test", "after")
    assert "PRIVMSG failed for" in caplog.text and "fast-path bug" in caplog.text
