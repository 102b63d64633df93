"""The echo family (Echo, Upper, Hello, UdpEcho) and a user-written line service."""

from __future__ import annotations

import pytest

from helpers import connected, run_protocol, split_at_every_byte
from sockhub.limits import Limits
from sockhub.protocols.base import ConnectionInfo, LineProtocol
from sockhub.protocols.echo import Echo, Hello, UdpEcho, Upper

# --- Echo -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [
        [b"hello\n"],
        [b"no newline"],
        [b"\x00\xff\r\n\x80", b"\xc3"],  # binary and invalid UTF-8 alike
        [bytes(range(256))] * 3,
    ],
)
def test_echo_returns_bytes_unchanged(chunks: list[bytes]) -> None:
    protocol = connected(Echo())
    assert run_protocol(protocol, *chunks) == b"".join(chunks)
    assert not protocol.close_expected()


def test_echo_ignores_line_limit() -> None:
    protocol = connected(Echo(), ConnectionInfo(limits=Limits(max_line=4)))
    assert run_protocol(protocol, b"much longer than four bytes") == b"much longer than four bytes"


def test_echo_closes_on_eof() -> None:
    protocol = connected(Echo())
    assert run_protocol(protocol, b"x", eof=True) == b"x"
    assert protocol.close_expected()


# --- Upper ------------------------------------------------------------------------------


def test_upper_upper_cases_each_line_at_every_split() -> None:
    stream = b"hello\nWorld\r\n\ncaf\xc3\xa9 stra\xc3\x9fe\n"
    for chunks in split_at_every_byte(stream):
        out = run_protocol(connected(Upper()), *chunks)
        assert out == "HELLO\r\nWORLD\r\n\r\nCAFÉ STRASSE\r\n".encode(), chunks


def test_upper_invalid_utf8_line_gets_one_error_and_service_continues() -> None:
    protocol = connected(Upper())
    out = run_protocol(protocol, b"ab\xfe\n", b"next\n")
    assert out == b"error: invalid UTF-8 at byte 2; line ignored\r\nNEXT\r\n"
    assert not protocol.close_expected()


def test_upper_oversize_line_errors_and_closes_after_answering_earlier_lines() -> None:
    protocol = connected(Upper(), ConnectionInfo(limits=Limits(max_line=5)))
    out = run_protocol(protocol, b"one\r\ntwo\n" + b"x" * 100 + b"\nthree\n")
    assert out == b"ONE\r\nTWO\r\nerror: line too long (max 5 bytes); closing\r\n"
    assert protocol.close_expected()
    assert run_protocol(protocol, b"four\n") == b""


def test_upper_oversize_partial_line_is_refused_before_its_ending() -> None:
    protocol = connected(Upper(), ConnectionInfo(limits=Limits(max_line=5)))
    assert run_protocol(protocol, b"12345") == b""
    assert not protocol.close_expected()
    out = run_protocol(protocol, b"6")
    assert out == b"error: line too long (max 5 bytes); closing\r\n"
    assert protocol.close_expected()


def test_upper_answers_unterminated_last_line_on_eof() -> None:
    protocol = connected(Upper())
    assert run_protocol(protocol, b"a\nb", eof=True) == b"A\r\nB\r\n"
    assert protocol.close_expected()


# --- Hello --------------------------------------------------------------------------------


def test_hello_greets_on_connect() -> None:
    protocol = Hello()
    assert protocol.data_to_send() == []
    protocol.connection_made(ConnectionInfo())
    assert b"".join(protocol.data_to_send()) == b"hello!\r\n"


def test_hello_answers_names() -> None:
    out = run_protocol(connected(Hello()), b"bob\n", b"al", b"ice\r\n")
    assert out == b"hello!\r\nHello, bob!\r\nHello, alice!\r\n"


@pytest.mark.parametrize("exit_line", [b"exit\n", b"exit\r\n", b"  exit \r\n", b"\texit\n"])
def test_hello_exit_says_bye_and_closes(exit_line: bytes) -> None:
    protocol = connected(Hello())
    out = run_protocol(protocol, b"bob\n" + exit_line + b"carol\n", b"dave\n")
    assert out == b"hello!\r\nHello, bob!\r\nBye!\r\n"
    assert protocol.close_expected()


def test_hello_exit_is_whole_line_only() -> None:
    protocol = connected(Hello())
    out = run_protocol(protocol, b"exiting\n", b"EXIT\n")
    assert out == b"hello!\r\nHello, exiting!\r\nHello, EXIT!\r\n"
    assert not protocol.close_expected()


def test_hello_exit_at_every_split() -> None:
    stream = b"bob\r\nexit\r\nlater\r\n"
    for chunks in split_at_every_byte(stream):
        protocol = connected(Hello())
        assert run_protocol(protocol, *chunks) == b"hello!\r\nHello, bob!\r\nBye!\r\n", chunks
        assert protocol.close_expected()


def test_hello_unterminated_exit_on_eof() -> None:
    protocol = connected(Hello())
    assert run_protocol(protocol, b"exit", eof=True) == b"hello!\r\nBye!\r\n"
    assert protocol.close_expected()


def test_hello_name_cannot_inject_lines() -> None:
    out = run_protocol(connected(Hello()), b"a\rb\n")
    assert out == b"hello!\r\nHello, a b!\r\n"


# --- UdpEcho ----------------------------------------------------------------------------------


def test_udp_echo_answers_each_datagram_to_its_sender() -> None:
    protocol = UdpEcho()
    protocol.connection_made(ConnectionInfo(transport="udp"))
    alice, bob = ("127.0.0.1", 40001), ("::1", 40002, 0, 0)
    protocol.receive_datagram(b"one", alice)
    protocol.receive_datagram(b"\x00\xff", bob)
    protocol.receive_datagram(b"", alice)
    assert protocol.datagrams_to_send() == [(b"one", alice), (b"\x00\xff", bob), (b"", alice)]
    assert protocol.datagrams_to_send() == []


# --- a service in a few lines ------------------------------------------------------------------


class Shout(LineProtocol):
    def line_received(self, line: str) -> None:
        self.send_line(line.upper() + "!")


def test_user_defined_line_service() -> None:
    protocol = connected(Shout(), ConnectionInfo(limits=Limits(max_line=10)))
    out = run_protocol(protocol, b"hi\r\nthe", b"re\n", b"\xff\n", b"0123456789A\n")
    assert out == (
        b"HI!\r\nTHERE!\r\n"
        b"error: invalid UTF-8 at byte 0; line ignored\r\n"
        b"error: line too long (max 10 bytes); closing\r\n"
    )
    assert protocol.close_expected()
