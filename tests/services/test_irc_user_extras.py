"""SETNAME (IRCv3 setname), WALLOPS (RFC 2812 §4.7) and bot mode (IRCv3 bot-mode)
on the IRC door: real loopback sockets, raw lines, no sleeps."""

from __future__ import annotations

import pytest

from net import LineClient, irc_client, open_client
from sockhub.passwords import hash_password

OPER_HASH = hash_password("s3cret", log_n=10)


@pytest.fixture
async def irc(serve, tmp_path):
    async def start(**options):
        settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0, **options}
        _, door = await serve("chat", options=settings)
        return door.ports[0]

    return start


async def capped(port: int, nick: str, caps: str, *channels: str) -> LineClient:
    """An IRC client with ``caps`` acknowledged, registered, in ``channels``."""
    client = LineClient(*await open_client(port))
    await client.send(f"CAP REQ :{caps}\r\nNICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode())
    await client.expect(" ACK ")
    await client.send(b"CAP END\r\n")
    await client.expect(f" 001 {nick} ")
    for channel in channels:
        await client.send(f"JOIN {channel}\r\n".encode())
        await client.expect(f" 366 {nick} {channel} ")
    return client


async def whois_realname(client: LineClient, nick: str) -> str:
    await client.send(f"WHOIS {nick}\r\n".encode())
    line = await client.expect(" 311 ")
    await client.expect(" 318 ")
    return line.split(" :", 1)[1]


# SETNAME ---------------------------------------------------------------------------


async def test_setname_is_confirmed_shown_to_capable_neighbours_and_in_whois(irc):
    port = await irc()
    alice = await capped(port, "alice", "setname", "#room")
    bob = await capped(port, "bob", "setname", "#room")
    carol = await irc_client(port, "carol", "#room")
    await alice.send(b"SETNAME :Alice Liddell <alice@example.org>\r\n")
    assert await alice.expect(" SETNAME ") == (
        ":alice!alice@127.0.0.1 SETNAME :Alice Liddell <alice@example.org>")
    assert (await bob.expect(" SETNAME ")).endswith("SETNAME :Alice Liddell <alice@example.org>")
    assert await whois_realname(carol, "alice") == "Alice Liddell <alice@example.org>"
    await carol.send(b"WHO #room\r\n")
    who = await carol.expect(" 352 carol #room alice ")
    assert who.endswith(":0 Alice Liddell <alice@example.org>")
    # carol has no setname: she saw no SETNAME line before her WHO replies
    assert not any("SETNAME" in line for line in carol.seen)
    await carol.send(b"PING :done\r\n")
    await carol.expect("PONG")
    assert not any("SETNAME" in line for line in carol.seen)


async def test_bad_realnames_fail_and_change_nothing(irc):
    port = await irc()
    alice = await capped(port, "alice", "setname")
    for bad in ("SETNAME :ring\x07bell", "SETNAME :esc\x1b[2J", "SETNAME :" + "x" * 151,
                "SETNAME :"):
        await alice.send(bad.encode() + b"\r\n")
        assert (await alice.expect(" FAIL ")).endswith(
            " FAIL SETNAME INVALID_REALNAME :Realname is not valid")
    assert await whois_realname(alice, "alice") == "alice"
    await alice.send(b"SETNAME\r\n")
    assert " 461 alice SETNAME " in await alice.expect(" 461 ")
    # IRC formatting is text, not a control: accepted
    await alice.send(b"SETNAME :\x02bold\x02 name\r\n")
    assert (await alice.expect(" SETNAME ")).endswith(":\x02bold\x02 name")


async def test_setname_without_the_cap_changes_silently_and_isupport_has_namelen(irc):
    port = await irc()
    alice = LineClient(*await open_client(port))
    await alice.send(b"NICK alice\r\nUSER alice 0 * :alice\r\n")
    await alice.expect("NAMELEN=150")
    await alice.expect(" 422 alice ")
    await alice.send(b"SETNAME :Quiet Change\r\n")
    assert await whois_realname(alice, "alice") == "Quiet Change"
    assert not any(" SETNAME " in line for line in alice.seen)


# WALLOPS ---------------------------------------------------------------------------


async def test_wallops_reach_plus_w_users_and_the_sender_only(irc):
    port = await irc(operators={"admin": OPER_HASH})
    admin = await irc_client(port, "admin")
    listener = await irc_client(port, "listener")
    deaf = await irc_client(port, "deaf")
    await listener.send(b"MODE listener +w\r\n")
    assert (await listener.expect(" MODE listener ")).endswith("MODE listener +w")
    await listener.send(b"MODE listener\r\n")
    assert (await listener.expect(" 221 ")).endswith(" 221 listener :+w")
    await deaf.send(b"MODE deaf +w-w\r\n")  # on and off again
    await admin.send(b"OPER admin s3cret\r\n")
    await admin.expect(" 381 admin ")
    await admin.send(b"WALLOPS :server going down\r\n")
    assert await admin.expect(" WALLOPS ") == (
        ":admin!admin@127.0.0.1 WALLOPS :server going down")
    assert await listener.expect(" WALLOPS ") == (
        ":admin!admin@127.0.0.1 WALLOPS :server going down")
    await deaf.send(b"PING :sync\r\n")
    await deaf.expect("PONG")
    await admin.send(b"PING :sync\r\n")
    await admin.expect("PONG")  # the WALLOPS went out before this answer
    assert not any("WALLOPS" in line for line in deaf.seen)
    await listener.send(b"MODE listener -w\r\n")
    await listener.expect(" MODE listener ")
    await admin.send(b"WALLOPS :again\r\n")
    await admin.expect(" WALLOPS ")
    await listener.send(b"PING :sync\r\n")
    await listener.expect("PONG")
    assert sum("WALLOPS" in line for line in listener.seen) == 1


async def test_wallops_from_a_non_operator_gets_481_and_reaches_no_one(irc):
    port = await irc()
    mallory = await irc_client(port, "mallory")
    listener = await irc_client(port, "listener")
    await listener.send(b"MODE listener +w\r\n")
    await listener.expect(" MODE listener ")
    await mallory.send(b"WALLOPS :fake alert\r\n")
    assert " 481 mallory :Permission Denied" in await mallory.expect(" 481 ")
    await mallory.send(b"WALLOPS\r\n")
    assert " 461 mallory WALLOPS " in await mallory.expect(" 461 ")
    await listener.send(b"PING :sync\r\n")
    await listener.expect("PONG")
    assert not any("WALLOPS" in line for line in listener.seen)


# Bot mode --------------------------------------------------------------------------


async def test_a_plus_b_user_is_shown_as_a_bot_in_whois_who_and_message_tags(irc):
    port = await irc()
    bot = await capped(port, "beeper", "message-tags echo-message", "#room")
    await bot.send(b"MODE beeper +B\r\n")
    assert (await bot.expect(" MODE beeper ")).endswith("MODE beeper +B")
    tagged = await capped(port, "tagged", "message-tags", "#room")
    plain = await irc_client(port, "plain", "#room")
    await plain.send(b"WHOIS beeper\r\n")
    assert (await plain.expect(" 335 ")).endswith(" 335 plain beeper :is a bot on sockhub")
    await plain.send(b"WHO #room\r\n")
    assert " 352 plain #room beeper " in (who := await plain.expect(" 352 plain #room beeper "))
    assert who.split()[8].startswith("HB")  # H, then the bot flag (before the @ prefix)
    await bot.send(b"PRIVMSG #room :beep\r\nPRIVMSG tagged :boop\r\nTAGMSG #room\r\n")
    echo = await bot.expect("PRIVMSG #room :beep")
    assert echo.startswith("@") and "bot" in echo.split(" ", 1)[0][1:].split(";")
    for needle in ("PRIVMSG #room :beep", "PRIVMSG tagged :boop", "TAGMSG #room"):
        line = await tagged.expect(needle)
        assert "bot" in line.split(" ", 1)[0][1:].split(";"), line
    line = await plain.expect("PRIVMSG #room :beep")
    assert not line.startswith("@")  # no message-tags: no tags at all
    # -B: no longer a bot anywhere
    await bot.send(b"MODE beeper -B\r\nPRIVMSG #room :human now\r\n")
    line = await tagged.expect("PRIVMSG #room :human now")
    assert "bot" not in line.split(" ", 1)[0][1:].split(";")
    await plain.send(b"WHOIS beeper\r\n")
    await plain.expect(" 318 plain beeper ")
    assert sum(" 335 " in seen for seen in plain.seen) == 1


async def test_isupport_advertises_the_bot_mode_and_004_lists_it(irc):
    port = await irc()
    client = LineClient(*await open_client(port))
    await client.send(b"NICK someone\r\nUSER someone 0 * :someone\r\n")
    assert (await client.expect(" 004 ")).split()[5] == "Biow"
    await client.expect("BOT=B")
    await client.send(b"MODE someone +X\r\n")
    await client.expect(" 501 someone ")
