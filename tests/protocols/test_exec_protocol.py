"""The exec protocol, sans-I/O: both state machines driven with bytes only."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import connected, split_at_every_byte
from sockhub.codec.lenprefix import FrameDecoder, encode_frame
from sockhub.errors import ProtocolError
from sockhub.limits import Limits
from sockhub.protocols.base import ConnectionInfo
from sockhub.protocols.exec import (
    CHUNK_SIZE,
    LABEL,
    NONCE_SIZE,
    PREAUTH_MAX_FRAME,
    ClientState,
    ErrorCode,
    ErrorReport,
    ExecClientProtocol,
    ExecProtocolError,
    ExecServerProtocol,
    ExitStatus,
    FrameType,
    Output,
    Ready,
    RunRequest,
    ServerState,
    StdinAck,
    compute_answer,
    encode,
    parse_run_request,
    verify_answer,
)

TOKEN = b"correct horse battery staple 123"
NONCE = bytes(range(NONCE_SIZE))


class Recorder(ExecServerProtocol):
    """A server protocol with the policy of a test: one token, every RUN accepted."""

    def __init__(self, nonce: bytes = NONCE, **kwargs: int) -> None:
        super().__init__(nonce, **kwargs)
        self.calls: list[tuple[object, ...]] = []

    def auth_received(self, answer: bytes) -> None:
        self.calls.append(("auth",))
        if verify_answer(TOKEN, self.nonce, answer):
            self.accept_auth(Ready(max_frame=self.info.limits.max_frame,
                                   stdin_window=self.stdin_window))
        else:
            self.fail(ErrorCode.AUTH_FAILED, "wrong token")

    def run_received(self, request: RunRequest) -> None:
        self.calls.append(("run", request))

    def stdin_received(self, data: bytes) -> None:
        self.calls.append(("stdin", data))

    def stdin_ended(self) -> None:
        self.calls.append(("eof",))

    def cancel_received(self) -> None:
        self.calls.append(("cancel",))

    def bad_run_received(self, body: bytes, error: ExecProtocolError) -> None:
        self.calls.append(("bad run", body, error.code))


class Deferring(Recorder):
    """A service that takes its time over every answer (a delayed verdict)."""

    def auth_received(self, answer: bytes) -> None:
        self.calls.append(("auth",))


def frames(data: bytes) -> list[tuple[int, bytes]]:
    return [(f[0], f[1:]) for f in FrameDecoder(None).feed(data)]


def out(protocol: ExecServerProtocol) -> list[tuple[int, bytes]]:
    return frames(b"".join(protocol.data_to_send()))


def error_of(sent: list[tuple[int, bytes]]) -> dict[str, object]:
    found = [json.loads(body) for kind, body in sent if kind == FrameType.ERROR]
    assert len(found) == 1, sent
    return found[0]


def server(limits: Limits | None = None, **kwargs: int) -> Recorder:
    protocol = Recorder(**kwargs)
    connected(protocol, ConnectionInfo(limits=limits or Limits()))
    return protocol


def authed(limits: Limits | None = None, **kwargs: int) -> Recorder:
    protocol = server(limits, **kwargs)
    protocol.data_to_send()
    protocol.receive_data(encode(FrameType.AUTH, compute_answer(TOKEN, NONCE)))
    assert protocol.state is ServerState.READY
    protocol.data_to_send()
    return protocol


def run(protocol: Recorder, argv: list[str], *, stdin: bool = False) -> None:
    protocol.receive_data(encode(FrameType.RUN, RunRequest(tuple(argv), stdin).to_body()))


def pump(client: ExecClientProtocol, srv: ExecServerProtocol) -> list[object]:
    """Move bytes both ways until both are quiet; the client's events."""
    events: list[object] = []
    while True:
        to_server = client.data_to_send()
        if to_server:
            srv.receive_data(to_server)
        to_client = b"".join(srv.data_to_send())
        if to_client:
            events += client.receive_data(to_client)
        if not to_server and not to_client:
            return events


# --- Authentication ------------------------------------------------------------------


def test_answer_is_hmac_sha256_of_label_and_nonce() -> None:
    import hashlib
    import hmac

    assert LABEL == b"sockhub-exec-v1"
    expected = hmac.new(TOKEN, b"sockhub-exec-v1" + NONCE, hashlib.sha256).digest()
    assert compute_answer(TOKEN, NONCE) == expected
    assert verify_answer(TOKEN, NONCE, expected)
    assert not verify_answer(b"another token of enough length!", NONCE, expected)


def test_the_server_opens_with_a_challenge_holding_version_and_nonce() -> None:
    sent = out(server())
    assert sent == [(FrameType.CHALLENGE, b"\x01" + NONCE)]


def test_a_fresh_nonce_per_connection_by_default() -> None:
    assert ExecServerProtocol().nonce != ExecServerProtocol().nonce


def test_client_and_server_log_in_and_run_a_command() -> None:
    srv, client = server(), ExecClientProtocol(TOKEN)
    events = pump(client, srv)
    assert client.state is ClientState.READY
    assert events == [Ready(max_frame=Limits().max_frame)]
    client.run(["printf", "%s", "x"])
    pump(client, srv)
    assert srv.calls[-1] == ("run", RunRequest(("printf", "%s", "x"), False))
    srv.send_output(1, b"x")
    srv.send_output(2, b"warn")
    srv.send_exit(ExitStatus(0, None, "exit", 0.25, 1, 4))
    events = pump(client, srv)
    assert events == [Output(1, b"x"), Output(2, b"warn"), ExitStatus(0, None, "exit", 0.25, 1, 4)]
    assert client.state is ClientState.READY and srv.state is ServerState.READY


def test_a_wrong_token_is_refused_with_a_fatal_error_and_a_close() -> None:
    srv, client = server(), ExecClientProtocol(b"not the token, but long enough")
    events = pump(client, srv)
    assert events == [ErrorReport("auth_failed", "wrong token", True)]
    assert srv.close_expected() and srv.state is ServerState.CLOSED
    assert client.state is ClientState.CLOSED


def test_an_answer_captured_on_one_connection_fails_on_another() -> None:
    first = server(nonce=NONCE)
    captured = encode(FrameType.AUTH, compute_answer(TOKEN, NONCE))
    first.receive_data(captured)
    assert first.state is ServerState.READY
    second = server(nonce=bytes(reversed(NONCE)))
    second.data_to_send()
    second.receive_data(captured)
    assert error_of(out(second))["code"] == "auth_failed"
    assert second.close_expected()


def test_anything_before_auth_is_refused_and_never_reaches_the_service() -> None:
    srv = server()
    srv.data_to_send()
    run(srv, ["touch", "/tmp/marker"])
    error = error_of(out(srv))
    assert error == {"code": "auth_required", "message": "authenticate first: expected an AUTH "
                     "frame", "fatal": True}
    assert srv.calls == [("bad run", RunRequest(("touch", "/tmp/marker")).to_body(),
                          "auth_required")]
    assert srv.close_expected()


def test_while_the_verdict_is_pending_input_is_discarded_unread() -> None:
    srv = Deferring()
    connected(srv)
    srv.data_to_send()
    srv.receive_data(encode(FrameType.AUTH, b"w" * 32) + encode(FrameType.RUN, b'{"argv":["id"]}'))
    # Not even decoded: a frame too big for a login would otherwise get an
    # immediate frame_too_large, telling the client its answer was wrong.
    srv.receive_data(struct.pack("!I", PREAUTH_MAX_FRAME + 1) + b"\x02" * 100)
    assert srv.state is ServerState.CHECKING and srv.calls == [("auth",)]
    assert srv.data_to_send() == [] and not srv.close_expected()
    srv.fail(ErrorCode.AUTH_FAILED, "wrong token")  # later, the verdict
    assert error_of(out(srv))["code"] == "auth_failed" and srv.close_expected()


def test_a_verdict_may_also_come_later_and_be_yes() -> None:
    srv = Deferring()
    connected(srv)
    srv.receive_data(encode(FrameType.AUTH, compute_answer(TOKEN, NONCE)))
    srv.accept_auth(Ready())
    run(srv, ["true"])
    assert srv.calls == [("auth",), ("run", RunRequest(("true",)))]


def test_an_auth_body_of_the_wrong_size_is_refused() -> None:
    srv = server()
    srv.data_to_send()
    srv.receive_data(encode(FrameType.AUTH, b"short"))
    assert error_of(out(srv))["code"] == "auth_failed"
    assert srv.calls == []


def test_before_auth_frames_are_capped_without_buffering_them() -> None:
    srv = server()
    srv.data_to_send()
    srv.receive_data(struct.pack("!I", PREAUTH_MAX_FRAME + 1) + b"\x01")
    error = error_of(out(srv))
    assert error["code"] == "frame_too_large"
    assert "before authentication" in str(error["message"])
    assert srv.close_expected()


def test_after_auth_the_configured_max_frame_applies() -> None:
    srv = authed(Limits(max_frame=1000))
    run(srv, ["x" * 900])  # far over the pre-auth cap: fine now
    assert srv.calls[-1][0] == "run"
    srv2 = authed(Limits(max_frame=1000))
    srv2.receive_data(struct.pack("!I", 1001))
    assert error_of(out(srv2))["code"] == "frame_too_large"
    assert srv2.close_expected()


def test_the_login_answer_arrives_in_one_byte_reads() -> None:
    answer = encode(FrameType.AUTH, compute_answer(TOKEN, NONCE))
    for chunks in split_at_every_byte(answer):
        srv = server()
        for chunk in chunks:
            srv.receive_data(chunk)
        assert srv.state is ServerState.READY, chunks


# --- Run requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"argv": ["ls", "\xff"]}', "run request is not valid UTF-8 (byte 17)"),
        (b'{"argv": ["ls"]', "run request is not valid JSON"),
        (b'["ls"]', "run request must be a JSON object"),
        (b"{}", "argv must be a non-empty list of strings"),
        (b'{"argv": []}', "argv must be a non-empty list of strings"),
        (b'{"argv": "ls -l"}', "argv must be a non-empty list of strings"),
        (b'{"argv": ["ls", 1]}', "argv[1] is not a string"),
        (b'{"argv": ["ls", "a\\u0000b"]}', "argv[1] contains a NUL byte"),
        (b'{"argv": ["ls", "\\ud800"]}', "argv[1] is not valid Unicode"),
        (b'{"argv": [""]}', "argv[0] is empty"),
        (b'{"argv": ["ls"], "stdin": "yes"}', "stdin must be true or false"),
        (b'{"argv": ["ls"], "env": {"A": "1"}}', "unknown field(s) in run request: env"),
        (b"[" * 100_000, "run request is not valid JSON"),
    ],
)
def test_bad_run_requests_get_a_non_fatal_error(body: bytes, message: str) -> None:
    srv = authed()
    srv.receive_data(encode(FrameType.RUN, body))
    error = error_of(out(srv))
    assert error["code"] == "bad_request" and error["fatal"] is False
    assert str(error["message"]).startswith(message)
    assert srv.state is ServerState.READY and not srv.close_expected()
    assert srv.calls == [("auth",), ("bad run", body, "bad_request")]
    run(srv, ["true"])  # the connection goes on
    assert srv.calls[-1] == ("run", RunRequest(("true",), False))


@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                        min_size=1), min_size=1, max_size=8), st.booleans())
def test_any_valid_argv_survives_the_wire(argv: list[str], stdin: bool) -> None:
    request = RunRequest(tuple(argv), stdin)
    assert parse_run_request(request.to_body()) == request


def test_shell_metacharacters_are_just_bytes_in_an_argument() -> None:
    request = parse_run_request(b'{"argv": ["echo", "a; rm -rf / $(id) `id` | > *"]}')
    assert request.argv == ("echo", "a; rm -rf / $(id) `id` | > *")


@pytest.mark.parametrize("frame", [b"", b"\x7f", b"\x83data"])
def test_empty_unknown_and_wrong_direction_frames_are_fatal(frame: bytes) -> None:
    srv = authed()
    srv.receive_data(encode_frame(frame))
    error = error_of(out(srv))
    assert error["code"] == "bad_frame" and error["fatal"] is True
    assert srv.close_expected()


def test_a_second_run_while_one_is_running_is_fatal() -> None:
    srv = authed()
    run(srv, ["sleep", "1"])
    run(srv, ["sleep", "2"])
    assert error_of(out(srv))["code"] == "bad_frame"
    assert srv.close_expected()
    assert [c for c in srv.calls if c[0] == "run"] == [("run", RunRequest(("sleep", "1")))]
    assert srv.calls[-1] == ("bad run", RunRequest(("sleep", "2")).to_body(), "bad_frame")


def test_a_second_auth_is_fatal() -> None:
    srv = authed()
    srv.receive_data(encode(FrameType.AUTH, compute_answer(TOKEN, NONCE)))
    assert error_of(out(srv)) == {"code": "bad_frame", "message": "already authenticated",
                                  "fatal": True}


def test_refuse_run_returns_to_ready() -> None:
    srv = authed()
    run(srv, ["rm", "-rf", "/"])
    srv.refuse_run(ErrorCode.NOT_ALLOWED, "rm is not in this server's allow list")
    assert srv.state is ServerState.READY
    assert error_of(out(srv))["fatal"] is False


# --- Stdin -------------------------------------------------------------------------------


def test_stdin_is_passed_on_and_acknowledged() -> None:
    srv = authed(stdin_window=10)
    run(srv, ["cat"], stdin=True)
    srv.receive_data(encode(FrameType.STDIN, b"0123456789"))
    assert srv.calls[-1] == ("stdin", b"0123456789")
    srv.ack_stdin(10)
    assert out(srv) == [(FrameType.STDIN_ACK, struct.pack("!I", 10))]
    srv.receive_data(encode(FrameType.STDIN, b"abc") + encode(FrameType.STDIN_EOF))
    assert srv.calls[-2:] == [("stdin", b"abc"), ("eof",)]


def test_stdin_past_the_window_is_fatal() -> None:
    srv = authed(stdin_window=10)
    run(srv, ["cat"], stdin=True)
    srv.receive_data(encode(FrameType.STDIN, b"0123456789") + encode(FrameType.STDIN, b"!"))
    error = error_of(out(srv))
    assert error["code"] == "stdin_window" and srv.close_expected()


def test_stdin_without_asking_for_it_is_fatal() -> None:
    srv = authed()
    run(srv, ["cat"], stdin=False)
    srv.receive_data(encode(FrameType.STDIN, b"x"))
    assert error_of(out(srv))["code"] == "bad_frame"


def test_late_stdin_and_cancel_after_exit_are_ignored() -> None:
    srv = authed()
    run(srv, ["head", "-c1"], stdin=True)
    srv.send_exit(ExitStatus(0, None))
    srv.data_to_send()
    srv.receive_data(encode(FrameType.STDIN, b"late") + encode(FrameType.STDIN_EOF)
                     + encode(FrameType.CANCEL) + encode(FrameType.KEEPALIVE))
    assert out(srv) == [] and not srv.close_expected()
    assert srv.calls[-1][0] == "run"


def test_cancel_and_keepalive_while_running() -> None:
    srv = authed()
    run(srv, ["sleep", "9"])
    srv.receive_data(encode(FrameType.KEEPALIVE) + encode(FrameType.CANCEL))
    assert srv.calls[-1] == ("cancel",)


def test_client_eof_while_running_closes_so_the_command_is_killed() -> None:
    srv = authed()
    run(srv, ["cat"], stdin=True)
    srv.receive_eof()  # a dead client's FIN looks just like a half-close
    assert srv.close_expected() and srv.state is ServerState.CLOSED
    srv.send_output(1, b"late")
    srv.send_exit(ExitStatus(0, None))
    assert out(srv) == []


# --- Output and exit -----------------------------------------------------------------


def test_output_is_binary_exact_and_split_into_chunks() -> None:
    srv = authed()
    run(srv, ["cat"])
    data = bytes(range(256)) * (CHUNK_SIZE // 128 + 3)
    srv.send_output(1, data)
    sent = out(srv)
    assert all(kind == FrameType.STDOUT and len(body) <= CHUNK_SIZE for kind, body in sent)
    assert len(sent) == 3
    assert b"".join(body for _, body in sent) == data


def test_no_output_or_exit_outside_a_command() -> None:
    srv = authed()
    srv.send_output(1, b"x")
    srv.send_exit(ExitStatus(0, None))
    assert out(srv) == []


def test_exit_frame_is_json_with_every_field() -> None:
    srv = authed()
    run(srv, ["sleep", "9"])
    srv.send_exit(ExitStatus(None, 15, "timeout", 1.5, 7, 0))
    ((kind, body),) = out(srv)
    assert kind == FrameType.EXIT
    assert json.loads(body) == {"code": None, "signal": 15, "reason": "timeout",
                                "duration": 1.5, "stdout_bytes": 7, "stderr_bytes": 0}


def test_closing_notice_is_a_fatal_error() -> None:
    srv = authed()
    srv.closing_notice("server shutting down")
    assert error_of(out(srv)) == {"code": "closing", "message": "server shutting down",
                                  "fatal": True}


def test_a_refused_connection_gets_an_error_frame_not_a_text_line() -> None:
    ((kind, body),) = frames(ExecServerProtocol.refusal("server full"))
    assert kind == FrameType.ERROR
    assert json.loads(body) == {"code": "refused", "message": "server full", "fatal": True}


def test_exec_protocol_error_carries_code_and_fatality() -> None:
    with pytest.raises(ExecProtocolError) as caught:
        parse_run_request(b"{}")
    assert caught.value.code == ErrorCode.BAD_REQUEST and not caught.value.fatal


# --- Client side -------------------------------------------------------------------


def _command_transcript() -> bytes:
    srv, client = server(), ExecClientProtocol(TOKEN)
    pump(client, srv)
    client.run(["x"])
    pump(client, srv)
    srv.send_output(1, b"\x00\xff" * 10)
    srv.send_output(2, b"\r\n")
    srv.send_exit(ExitStatus(None, 9, "exit", 0.1, 20, 2))
    return b"".join(srv.data_to_send())


def test_the_client_decodes_the_same_events_at_every_split() -> None:
    login = encode(FrameType.CHALLENGE, b"\x01" + NONCE) + encode(FrameType.READY,
                                                                   Ready().to_body())
    command = _command_transcript()
    expected = [Output(1, b"\x00\xff" * 10), Output(2, b"\r\n"),
                ExitStatus(None, 9, "exit", 0.1, 20, 2)]
    for chunks in split_at_every_byte(login):
        client = ExecClientProtocol(TOKEN)
        events = [e for chunk in chunks for e in client.receive_data(chunk)]
        assert events == [Ready()] and client.state is ClientState.READY
        assert client.data_to_send() == encode(FrameType.AUTH, compute_answer(TOKEN, NONCE))
    for chunks in split_at_every_byte(command):
        client = ExecClientProtocol(TOKEN)
        client.receive_data(login)
        client.run(["x"])
        events = [e for chunk in chunks for e in client.receive_data(chunk)]
        assert events == expected, chunks
        assert client.state is ClientState.READY


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (encode(FrameType.READY, b"{}"), "READY before authentication"),
        (encode(FrameType.CHALLENGE, b"\x02" + NONCE), "unsupported CHALLENGE"),
        (encode(FrameType.CHALLENGE, b"\x01" + NONCE) * 2, "a second CHALLENGE"),
        (encode_frame(b"\x01" + b"x" * 32), "unknown frame type 0x01"),
        (encode_frame(b""), "empty frame"),
        (encode(FrameType.STDIN_ACK, b"\x00"), "malformed frame 0x87"),
        (encode(FrameType.CHALLENGE, b"\x01" + NONCE) + encode(FrameType.READY, b"{}")
         + encode(FrameType.EXIT, b'{"code": 0}'), "EXIT with no command running"),
        (encode(FrameType.ERROR, b"not json"), "malformed frame 0x86"),
    ],
)
def test_the_client_rejects_a_misbehaving_server(stream: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(")):
        ExecClientProtocol(TOKEN).receive_data(stream)


def test_client_stdin_credit_follows_the_window() -> None:
    srv, client = server(stdin_window=100), ExecClientProtocol(TOKEN)
    pump(client, srv)
    assert client.stdin_credit == 100
    client.run(["cat"], stdin=True)
    client.send_stdin(b"x" * 60)
    with pytest.raises(ValueError, match="exceed the credit 40"):
        client.send_stdin(b"y" * 41)
    pump(client, srv)
    assert srv.calls[-1] == ("stdin", b"x" * 60)
    srv.ack_stdin(60)
    assert pump(client, srv) == [StdinAck(60)]
    assert client.stdin_credit == 100


def test_client_splits_stdin_to_the_servers_max_frame() -> None:
    srv, client = server(Limits(max_frame=11)), ExecClientProtocol(TOKEN)
    pump(client, srv)
    assert client.stdin_chunk == 10
    client.run(["cat"], stdin=True)
    client.send_stdin(b"z" * 25)
    sent = frames(client.data_to_send())
    assert [len(body) for kind, body in sent if kind == FrameType.STDIN] == [10, 10, 5]


def test_client_refuses_to_run_before_ready() -> None:
    with pytest.raises(ProtocolError, match="cannot run in state challenge"):
        ExecClientProtocol(TOKEN).run(["ls"])
