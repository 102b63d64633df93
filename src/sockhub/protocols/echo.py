"""The echo family, the seeds' first servers, each written with the public API."""

from __future__ import annotations

from sockhub.protocols.base import Address, ConnectionInfo, DatagramProtocol, LineProtocol, Protocol


class Echo(Protocol):
    """Every byte back as received (RFC 862 over TCP), no framing at all."""

    def receive_data(self, data: bytes) -> None:
        self.send(data)


class Upper(LineProtocol):
    """Each line back upper-cased, as seed 000's first server does."""

    def line_received(self, line: str) -> None:
        self.send_line(line.upper())


class Hello(LineProtocol):
    """Seed 002's greeter: ``hello!`` on connect, ``Hello, <line>!``, bye on ``exit``."""

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        self.send_line("hello!")

    def line_received(self, line: str) -> None:
        if line.strip() == "exit":
            self.send_line("Bye!")
            self.close()
        else:
            self.send_line(f"Hello, {line}!")


class UdpEcho(DatagramProtocol):
    """Every datagram back to its sender (RFC 862 over UDP)."""

    def receive_datagram(self, data: bytes, addr: Address) -> None:
        self.send_datagram(data, addr)
