"""Output pushed into other connections (chat fan-out): the end-of-turn flush.

``StreamServer._flush_dirty`` writes a plain protocol's queue itself and
sends everything else through ``StreamConnection.flush``: both must keep the
order, a protocol's own ``data_to_send``, and a close asked for with the output.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from net import STEP, open_client, read_until_eof
from sockhub.protocols.base import ConnectionInfo, Protocol


class Relay(Protocol):
    """Each line a client sends is pushed to every other client; ``kick`` pushes a
    last line and closes them."""

    members: ClassVar[list[Relay]] = []

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        self.members.append(self)
        self.send(b"hi\n")

    def connection_lost(self) -> None:
        self.members.remove(self)

    def receive_data(self, data: bytes) -> None:
        for line in data.split(b"\n"):
            if not line:
                continue
            for member in self.members:
                if member is self:
                    continue
                if line == b"kick":
                    member.send(b"bye\n")
                    member.close()
                else:
                    member.send(line + b"\n")
                member.wake()


class FramedRelay(Relay):
    """A protocol with its own ``data_to_send`` (as the web door frames its IRC output)."""

    def data_to_send(self) -> list[bytes]:
        return [b"[" + chunk + b"]" for chunk in super().data_to_send()]


async def _pair(serve, protocol: type[Relay]):
    protocol.members = []
    server = await serve(protocol)
    port = server.ports[0]
    a_reader, a = await open_client(port)
    b_reader, b = await open_client(port)
    hello = b"[hi\n]" if protocol is FramedRelay else b"hi\n"
    for reader in (a_reader, b_reader):
        assert await asyncio.wait_for(reader.readexactly(len(hello)), STEP) == hello
    return a, b_reader, b


async def test_pushed_output_arrives_in_order_one_or_many_a_turn(serve):
    a, b_reader, b = await _pair(serve, Relay)
    a.write(b"1\n2\n3\n")  # one read, most likely: three pushes in one turn
    for i in range(4, 200):
        a.write(b"%d\n" % i)
    expected = b"".join(b"%d\n" % i for i in range(1, 200))
    assert await asyncio.wait_for(b_reader.readexactly(len(expected)), STEP) == expected
    a.write(b"kick\n")  # output, then the close the protocol asked for
    assert await read_until_eof(b_reader) == b"bye\n"
    a.close()
    b.close()


async def test_a_protocol_with_its_own_data_to_send_is_flushed_through_it(serve):
    a, b_reader, b = await _pair(serve, FramedRelay)
    a.write(b"x\n")
    assert await asyncio.wait_for(b_reader.readexactly(4), STEP) == b"[x\n]"
    a.write(b"kick\n")
    assert await read_until_eof(b_reader) == b"[bye\n]"
    a.close()
    b.close()
