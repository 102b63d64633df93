"""An idle registered client holds only what it uses (issue 16: idle memory per client).

The nick guard, the barred-nick set and the IRC door's read markers are made
on first use; these tests pin that, and that the first use still works.
"""

from __future__ import annotations

from irc_support import Network, find


def test_an_irc_client_whose_nick_is_no_ones_holds_no_guard_markers_or_bars(tmp_path):
    net = Network(tmp_path, nick_grace=30.0)
    try:
        client = net.register("alice")
        door = client.door
        assert door.acct.guard is None
        assert door.markers is None
        assert door.user is not None and door.user.barred == frozenset()
        assert isinstance(door.user.barred, frozenset)
    finally:
        net.close()


def test_the_guard_is_made_when_the_nick_becomes_someones(tmp_path):
    net = Network(tmp_path, nick_grace=30.0)
    try:
        owner = net.register("owner")
        owner.ask("PRIVMSG NickServ :REGISTER hunter22")
        net.service.commit()
        owner.send("QUIT :bye")
        taker = net.register("taker")
        assert taker.door.acct.guard is None
        taker.take()
        taker.send("NICK owner")
        told = find(taker.take(), "NOTICE")
        assert "belongs to account owner" in told.params[1]
        guard = taker.door.acct.guard
        assert guard is not None and guard.timer is not None
        net.clock.advance(31)  # not identified: renamed, and barred from it
        user = taker.door.user
        assert user is not None and user.nick != "owner"
        assert user.barred == frozenset({"owner"})
    finally:
        net.close()


def test_read_markers_of_a_user_without_an_account_are_made_on_first_use(tmp_path):
    net = Network(tmp_path)
    try:
        client = net.register("alice", "draft/read-marker")
        client.ask("JOIN #r")
        assert client.door.markers is None
        client.ask("MARKREAD #r timestamp=2026-01-01T00:00:00.000Z")
        assert client.door.markers is not None and len(client.door.markers) == 1
    finally:
        net.close()
