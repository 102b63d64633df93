"""Chat doors against hostile clients (issue 8, items 4 and 5), over real sockets.

Control characters: whatever a user sends, a line-door user receives no raw
byte below 0x20 but the line end, no DEL and no C1 character, live or on
history replay; IRC users keep IRC's formatting codes and never get ESC,
BEL or NUL. Silent and slow clients: no nick within ``registration_timeout``
and the client is told and closed, at both doors; half a line trickling in
is idleness, not activity.
"""

from __future__ import annotations

import asyncio

import pytest

from irc_support import Network
from net import STEP, LineClient, chat_client, irc_client, open_client, read_line
from proc import start_sockhub
from sockhub.doors.line import LineDoor
from sockhub.protocols.base import ConnectionInfo

ATTACK = b"\x1b[2J\x1b]0;pwned\x07 nul\x00 del\x7f cr\rmid csi\xc2\x9b tab\there"
SHOWN = b"^[[2J^[]0;pwned^G nul^@ del^? cr^Mmid csiM-^[ tab here"


def assert_harmless(line: bytes) -> None:
    """One line as a terminal may safely receive it: controls only in the CRLF at its end."""
    body, end = line[:-2], line[-2:]
    assert end == b"\r\n", line
    assert all(byte >= 0x20 and byte != 0x7F for byte in body), line
    assert not any(0x80 <= ord(char) <= 0x9F for char in body.decode()), line


async def raw_line(reader: asyncio.StreamReader, needle: bytes) -> bytes:
    """Read raw lines until one contains ``needle``; return it, line end included."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STEP
    while True:
        line = await read_line(reader, deadline - loop.time())
        if not line:
            raise AssertionError(f"EOF while waiting for {needle!r}")
        if needle in line:
            return line


async def until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                       trickle: bytes | None = None) -> bytes:
    """Everything the server sends until it closes; with ``trickle``, send that
    byte whenever it has been quiet for a tenth of a second. Stops by itself:
    a connection still open after ~30 s fails the test. (A byte trickled just
    as the server closes may come back as a reset after its last words.)
    """
    received = b""
    for _ in range(300):
        try:
            chunk = await asyncio.wait_for(reader.read(4096), 0.1)  # also the pace
        except TimeoutError:
            if trickle is not None:
                writer.write(trickle)
            continue
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            writer.close()
            return received
        received += chunk
    raise AssertionError(f"not closed; received {received[-200:]!r}")


@pytest.fixture
def hub(serve, tmp_path):
    """The chat service with both doors; returns (line port, irc port)."""

    async def start(**limits):
        settings = {"data_dir": str(tmp_path), "flood_rate": None, "irc_port": 0}
        line, irc = await serve("chat", options=settings, **limits)
        return line.ports[0], irc.ports[0]

    return start


# Control characters --------------------------------------------------------------


async def test_control_characters_reach_line_users_visible_live_and_in_history(hub):
    port, _ = await hub()
    alice = await chat_client(port, "alice")
    bob = await chat_client(port, "bob")
    await alice.expect("bob joined")
    await alice.send(ATTACK + b"\r\n")
    line = await raw_line(bob.reader, b"<alice>")
    assert_harmless(line)
    assert line.endswith(b"#lobby <alice> " + SHOWN + b"\r\n")
    await alice.send(b"/msg bob \x1b[8mhidden\x1b[0m\n")  # private: rendered per viewer
    line = await raw_line(bob.reader, b"[pm]")
    assert_harmless(line)
    assert line.endswith(b"[pm] <alice> ^[[8mhidden^[[0m\r\n")
    # A newcomer's history replay shows the same.
    carol = LineClient(*await open_client(port))
    await carol.send("carol")
    line = await raw_line(carol.reader, b"[history]")
    assert_harmless(line)
    assert line.endswith(b"#lobby <alice> " + SHOWN + b"\r\n")
    await raw_line(carol.reader, b"end of history")
    # Every other user-supplied string too: a topic, a quit reason.
    await alice.send(b"/join #t\n")
    await bob.send(b"/join #t\n")
    await alice.expect("bob joined")
    await alice.send(b"/topic #t \x1b]0;topic\x07\n")
    line = await raw_line(bob.reader, b"set the topic")
    assert_harmless(line)
    assert line.endswith(b"alice set the topic: ^[]0;topic^G\r\n")
    await alice.send(b"/quit \x1b[2Jbye\x00\n")
    line = await raw_line(bob.reader, b"alice quit")
    assert_harmless(line)
    assert line.endswith(b"* alice quit (^[[2Jbye^@)\r\n")
    for client in (alice, bob, carol):
        client.close()


async def test_a_line_of_only_spaces_is_not_a_message(hub):
    port, _ = await hub()
    alice = await chat_client(port, "alice")
    bob = await chat_client(port, "bob")
    await alice.expect("bob joined")
    await alice.send("    ")
    await alice.send(" \t ")
    await alice.send("")
    await alice.send("real")
    assert (await bob.expect("<alice>")).endswith("<alice> real")
    # The sender is told nothing either: no error, just its one message back.
    assert (await alice.expect("<alice>")).endswith("<alice> real")
    assert not [seen for seen in alice.seen if seen.startswith("error")]
    await alice.send("/history")
    assert await alice.expect("end of history") == "-- end of history of #lobby (1 message)"
    alice.close()
    bob.close()


async def test_irc_formatting_passes_between_irc_users_and_nothing_else_does(hub):
    line_port, irc_port = await hub()
    carol = await chat_client(line_port, "carol")
    dave = await irc_client(irc_port, "dave", "#lobby")
    erin = await irc_client(irc_port, "erin", "#lobby")
    await carol.expect("erin joined")
    colours = b"\x0304,01red\x03 \x02bold\x02 \x1ditalic\x1d \x1funder\x1f"
    await dave.send(b"PRIVMSG #lobby :" + colours + b" \x1b[2Jesc\x07\r\n")
    line = await raw_line(erin.reader, b"PRIVMSG #lobby")
    assert line.endswith(b" PRIVMSG #lobby :" + colours + b" ^[[2Jesc^G\r\n")
    assert b"\x1b" not in line and b"\x07" not in line
    line = await raw_line(carol.reader, b"<dave>")
    assert_harmless(line)
    assert line.endswith(b"<dave> red bold italic under ^[[2Jesc^G\r\n")
    # From the line door to IRC: ESC, BEL and NUL arrive as text.
    await carol.send(b"\x1b]0;pwned\x07 \x00\n")
    line = await raw_line(erin.reader, b":carol!")
    assert line.endswith(b" PRIVMSG #lobby :^[]0;pwned^G ^@\r\n")
    for client in (carol, dave, erin):
        client.close()


# Silent and slow clients ------------------------------------------------------------


def test_line_door_registration_deadline_on_a_manual_clock(tmp_path):
    net = Network(tmp_path, registration_timeout=20.0)
    slow, quick = LineDoor(net.service), LineDoor(net.service)
    for door, port in ((slow, 50001), (quick, 50002)):
        door.clock = net.clock
        door.connection_made(ConnectionInfo(peer=f"127.0.0.1:{port}", service="chat"))
        door.data_to_send()
    slow.receive_data(b"no line end yet")
    quick.receive_data(b"quick\n")
    net.clock.advance(19)
    assert not slow.close_expected()
    net.clock.advance(2)
    assert slow.close_expected()
    assert slow.data_to_send() == [b"error: no nick chosen within 20 seconds; closing\r\n"]
    net.clock.advance(100)  # a registered user has no deadline
    assert not quick.close_expected()
    net.close()


async def test_registration_timeout_closes_silent_and_trickling_clients(tmp_path):
    served = await start_sockhub(
        "chat", "--port", "0", "--irc-port", "0", "--registration-timeout", "2",
        "--data-dir", str(tmp_path), listeners=2,
    )
    try:
        line_port, irc_port = served.ports["chat"], served.ports["irc"]
        clients = [await open_client(port) for port in (line_port, line_port, irc_port, irc_port)]
        line_silent, line_trickle, irc_silent, irc_trickle = await asyncio.gather(
            until_closed(*clients[0]),
            until_closed(*clients[1], trickle=b"a"),
            until_closed(*clients[2]),
            until_closed(*clients[3], trickle=b"N"),
        )
    finally:
        await served.stop()
    told = b"error: no nick chosen within 2 seconds; closing\r\n"
    assert line_silent.endswith(b"enter a nick (or an empty line for a guest nick):\r\n" + told)
    assert line_trickle.endswith(told)
    for received in (irc_silent, irc_trickle):
        assert received.endswith(b"ERROR :Closing Link: 127.0.0.1 (Registration timed out)\r\n")


async def test_a_registered_client_trickling_half_a_line_is_idle(hub):
    line_port, irc_port = await hub(idle_timeout=2.0)
    alice = await chat_client(line_port, "alice")
    dave = await irc_client(irc_port, "dave")
    line_seen, irc_seen = await asyncio.gather(
        until_closed(alice.reader, alice.writer, trickle=b"h"),
        until_closed(dave.reader, dave.writer, trickle=b"P"),
    )
    assert line_seen.endswith(b"-- idle for 2 seconds; closing\r\n")
    assert irc_seen.endswith(b"ERROR :Closing Link: 127.0.0.1 (idle for 2 seconds; closing)\r\n")
