"""The protocol base classes, ConnectionInfo and Limits, driven without sockets."""

from __future__ import annotations

import dataclasses

import pytest

from helpers import connected, run_protocol, split_at_every_byte
from sockhub.codec.lines import DEFAULT_MAX_LINE
from sockhub.limits import Limits, limit_names
from sockhub.protocols.base import ConnectionInfo, DatagramProtocol, LineProtocol, Protocol


class Recorder(LineProtocol):
    """Records the lines it gets; closes on "quit"."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def line_received(self, line: str) -> None:
        self.lines.append(line)
        if line == "quit":
            self.close()


# --- Protocol --------------------------------------------------------------------


def test_base_protocol_ignores_input_and_closes_on_eof() -> None:
    protocol = connected(Protocol())
    assert run_protocol(protocol, b"anything\n", b"\xff") == b""
    assert not protocol.close_expected()
    assert run_protocol(protocol, eof=True) == b""
    assert protocol.close_expected()


def test_connection_made_stores_info() -> None:
    info = ConnectionInfo(peer="10.0.0.1:5000", service="echo")
    protocol = connected(Protocol(), info)
    assert protocol.info is info


def test_data_to_send_takes_the_queue() -> None:
    protocol = Protocol()
    protocol.send(b"a")
    protocol.send(b"b")
    assert protocol.data_to_send() == [b"a", b"b"]
    assert protocol.data_to_send() == []


def test_send_empty_is_not_queued() -> None:
    protocol = Protocol()
    protocol.send(b"")
    assert protocol.data_to_send() == []


def test_send_after_close_is_ignored() -> None:
    protocol = Protocol()
    protocol.send(b"before")
    protocol.close()
    protocol.send(b"after")
    assert protocol.close_expected()
    assert protocol.data_to_send() == [b"before"]  # queued output still goes out


def test_closing_notice_on_byte_protocol_sends_nothing() -> None:
    protocol = connected(Protocol())
    protocol.closing_notice("server shutting down")
    assert protocol.data_to_send() == []


@pytest.mark.parametrize("cls", [Protocol, LineProtocol])
def test_refusal_is_one_crlf_line(cls: type[Protocol]) -> None:
    assert cls.refusal("too many connections") == b"error: too many connections\r\n"
    injected = cls.refusal("full\r\nerror: fake")
    assert injected.count(b"\n") == 1
    assert injected.endswith(b"\r\n")


# --- LineProtocol ----------------------------------------------------------------


def test_line_protocol_dispatches_lines_at_every_split() -> None:
    stream = b"one\r\ntwo\n\nh\xc3\xa9\n"
    for chunks in split_at_every_byte(stream):
        protocol = connected(Recorder())
        assert run_protocol(protocol, *chunks) == b""
        assert protocol.lines == ["one", "two", "", "hé"], chunks


def test_line_protocol_decoder_uses_default_limit_before_connection_made() -> None:
    protocol = Recorder()
    line = b"x" * DEFAULT_MAX_LINE
    run_protocol(protocol, line + b"\n")
    assert protocol.lines == [line.decode()]
    out = run_protocol(protocol, line + b"x\n")
    assert out == f"error: line too long (max {DEFAULT_MAX_LINE} bytes); closing\r\n".encode()


def test_invalid_utf8_line_gets_an_error_and_is_skipped() -> None:
    protocol = connected(Recorder())
    out = run_protocol(protocol, b"ok\nab\xffc\nnext\n")
    assert out == b"error: invalid UTF-8 at byte 2; line ignored\r\n"
    assert protocol.lines == ["ok", "next"]
    assert not protocol.close_expected()


def test_receive_eof_dispatches_unterminated_last_line_then_closes() -> None:
    protocol = connected(Recorder())
    run_protocol(protocol, b"first\nlast", eof=True)
    assert protocol.lines == ["first", "last"]
    assert protocol.close_expected()


def test_receive_eof_with_nothing_pending_just_closes() -> None:
    protocol = connected(Recorder())
    run_protocol(protocol, b"only\n", eof=True)
    assert protocol.lines == ["only"]
    assert protocol.close_expected()


def test_receive_eof_with_invalid_utf8_tail_reports_it() -> None:
    protocol = connected(Recorder())
    out = run_protocol(protocol, b"\xc3", eof=True)
    assert out == b"error: invalid UTF-8 at byte 0; line ignored\r\n"
    assert protocol.lines == []
    assert protocol.close_expected()


def test_lines_after_close_are_not_dispatched() -> None:
    protocol = connected(Recorder())
    run_protocol(protocol, b"a\nquit\nb\n", b"c\n", eof=True)
    assert protocol.lines == ["a", "quit"]


def test_oversize_line_answers_earlier_lines_then_errors_and_closes() -> None:
    protocol = connected(Recorder(), ConnectionInfo(limits=Limits(max_line=4)))
    out = run_protocol(protocol, b"ab\ncd\r\nabcdef")
    assert protocol.lines == ["ab", "cd"]
    assert out == b"error: line too long (max 4 bytes); closing\r\n"
    assert protocol.close_expected()
    # whatever the engine still hands over is dropped quietly
    assert run_protocol(protocol, b"more\n", eof=True) == b""
    assert protocol.lines == ["ab", "cd"]


def test_connection_info_limits_reach_line_protocol() -> None:
    info = ConnectionInfo(limits=Limits(max_line=8))
    accepted = connected(Recorder(), info)
    assert run_protocol(accepted, b"12345678\r\n") == b""
    assert accepted.lines == ["12345678"]
    refused = connected(Recorder(), info)
    out = run_protocol(refused, b"123456789\n")
    assert out == b"error: line too long (max 8 bytes); closing\r\n"
    assert refused.lines == []
    assert refused.close_expected()


def test_line_protocol_without_line_limit() -> None:
    protocol = connected(Recorder(), ConnectionInfo(limits=Limits(max_line=None)))
    line = "z" * (DEFAULT_MAX_LINE * 2)
    assert run_protocol(protocol, line.encode() + b"\n") == b""
    assert protocol.lines == [line]


def test_send_line_and_send_error() -> None:
    protocol = connected(LineProtocol())
    protocol.send_line("a\nb")
    protocol.send_error("bad\r\nthing")
    assert b"".join(protocol.data_to_send()) == b"a b\r\nerror: bad thing\r\n"


def test_closing_notice_on_line_protocol_sends_error_line() -> None:
    protocol = connected(LineProtocol())
    protocol.closing_notice("server shutting down")
    assert b"".join(protocol.data_to_send()) == b"error: server shutting down\r\n"


def test_line_protocol_base_ignores_lines() -> None:
    protocol = connected(LineProtocol())
    assert run_protocol(protocol, b"hello\n") == b""
    assert not protocol.close_expected()


# --- DatagramProtocol ---------------------------------------------------------------


def test_datagram_protocol_base() -> None:
    protocol = DatagramProtocol()
    assert protocol.info.transport == "udp"
    protocol.receive_datagram(b"ignored", ("127.0.0.1", 9))
    assert protocol.datagrams_to_send() == []
    protocol.send_datagram(b"a", ("127.0.0.1", 1))
    protocol.send_datagram(b"", ("::1", 2, 0, 0))
    assert protocol.datagrams_to_send() == [(b"a", ("127.0.0.1", 1)), (b"", ("::1", 2, 0, 0))]
    assert protocol.datagrams_to_send() == []
    info = ConnectionInfo(transport="udp", service="udp-echo")
    protocol.connection_made(info)
    assert protocol.info is info


# --- ConnectionInfo ------------------------------------------------------------------


def test_connection_info_defaults_and_immutability() -> None:
    info = ConnectionInfo()
    assert info.transport == "tcp"
    assert info.limits == Limits()
    assert dict(info.options) == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.peer = "elsewhere"  # type: ignore[misc]


# --- Limits ----------------------------------------------------------------------------


def test_limits_merged_returns_a_changed_copy() -> None:
    base = Limits()
    changed = base.merged(max_line=10, idle_timeout=None)
    assert changed.max_line == 10
    assert changed.idle_timeout is None
    assert base.max_line == DEFAULT_MAX_LINE
    assert base.idle_timeout == 300.0


def test_limits_merged_rejects_unknown_names() -> None:
    with pytest.raises(TypeError, match="max_lines"):
        Limits().merged(max_lines=10)


@pytest.mark.parametrize("name", ["max_line", "max_frame", "idle_timeout", "drain_timeout"])
def test_limits_reject_negative_values(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Limits(**{name: -1})
    with pytest.raises(ValueError, match=name):
        Limits().merged(**{name: -1})


@pytest.mark.parametrize("value", [True, "10", [10]])
def test_limits_reject_non_numbers(value: object) -> None:
    with pytest.raises(ValueError, match="max_conns"):
        Limits(max_conns=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    ["write_high_water", "write_buffer_max", "tls_handshake_timeout", "drain_timeout"],
)
def test_limits_that_cannot_be_turned_off(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} cannot be turned off"):
        Limits().merged(**{name: None})


@pytest.mark.parametrize(
    "name", ["max_conns", "max_conns_per_ip", "max_line", "max_frame", "idle_timeout"]
)
def test_optional_limits_can_be_turned_off(name: str) -> None:
    assert getattr(Limits().merged(**{name: None}), name) is None


def test_limit_names_match_fields() -> None:
    names = limit_names()
    assert {"max_line", "max_frame", "idle_timeout", "drain_timeout"} <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("max_line", 0, "at least 1"),
        ("max_conns", 0, "at least 1"),
        ("max_line", 1.5, "whole number"),
        ("max_conns", float("nan"), "whole number"),
        ("idle_timeout", 0, "more than 0"),
        ("idle_timeout", float("nan"), "more than 0"),
        ("drain_timeout", float("inf"), "more than 0"),
        ("write_high_water", True, "whole number"),
    ],
)
def test_limits_refuse_unusable_values(name: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits().merged(**{name: value})


def test_max_frame_zero_allows_only_empty_frames() -> None:
    assert Limits(max_frame=0).max_frame == 0


def test_only_a_complete_line_marks_a_line_protocol_active() -> None:
    # The engine's idle check reads and clears ``active`` (counts_messages):
    # half a line, however slowly it trickles in, is no sign of life.
    assert LineProtocol.counts_messages and not Protocol.counts_messages
    protocol = LineProtocol()
    protocol.connection_made(ConnectionInfo())
    for byte in b"half a line":
        protocol.receive_data(bytes([byte]))
        assert not protocol.active
    protocol.receive_data(b"\n")
    assert protocol.active
