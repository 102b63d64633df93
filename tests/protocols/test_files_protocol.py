"""The files protocol, sans-I/O: the server's state machine and the client decoder, bytes only."""

from __future__ import annotations

import hashlib
import importlib
import json
import struct
import sys

import blake3
import pytest

from helpers import connected, split_at_every_byte
from sockhub.errors import ProtocolError
from sockhub.protocols.challenge import NONCE_SIZE
from sockhub.protocols.exec import compute_answer as exec_answer
from sockhub.protocols.files import (
    PREAUTH_MAX_FRAME,
    Accept,
    Challenge,
    ClientDecoder,
    DeleteRequest,
    Digest,
    Done,
    Entry,
    ErrorCode,
    ErrorReport,
    FileHeader,
    FilesProtocolError,
    FilesServerProtocol,
    FrameType,
    GetRequest,
    Listing,
    ListRequest,
    PutRequest,
    RawData,
    Ready,
    ServerState,
    check_name,
    compute_answer,
    digests,
    encode,
    parse_server_frame,
    verify_answer,
)

TOKEN = b"correct horse battery staple 123"
NONCE = bytes(range(NONCE_SIZE))
AUTH = encode(FrameType.AUTH, compute_answer(TOKEN, NONCE))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Recorder(FilesServerProtocol):
    """A server with a test's policy: one token; uploads kept in memory."""

    def __init__(self, *, resume_from: bytes = b"", defer: bool = False) -> None:
        super().__init__(NONCE)
        self.calls: list[tuple[object, ...]] = []
        self.stored = bytearray()
        self.part = resume_from
        self.defer = defer

    def auth_received(self, answer: bytes) -> None:
        self.calls.append(("auth",))
        if verify_answer(TOKEN, self.nonce, answer):
            self.accept_auth(Ready())
        else:
            self.fail(ErrorCode.AUTH_FAILED, "wrong token")

    def put_received(self, request: PutRequest) -> None:
        self.calls.append(("put", request))
        if not self.defer:
            self.accept_put(Accept(len(self.part), sha(self.part) if self.part else None))

    def start_received(self, offset: int) -> None:
        self.calls.append(("start", offset))
        self.stored = bytearray(self.part[:offset])

    def data_received(self, data: bytes | memoryview) -> None:
        self.stored += data

    def end_received(self, digest: Digest) -> None:
        self.calls.append(("end", digest.hex))
        if digest.hex != sha(bytes(self.stored)):
            self.refuse(ErrorCode.CHECKSUM_MISMATCH, "SHA-256 differs")
        else:
            self.send_done(Done("f", len(self.stored), digest.hex))

    def get_received(self, request: GetRequest) -> None:
        self.calls.append(("get", request))
        data = b"hello, world\n"
        self.send_file_header(FileHeader(request.name, len(data), 0o644, request.offset))
        self.send(data[request.offset :])
        self.send_file_end(Digest(sha(data)))

    def list_received(self, request: ListRequest) -> None:
        self.calls.append(("list", request))
        self.send_listing(Listing((Entry("a", "file", 3, 0o644, 1.5),)))

    def delete_received(self, request: DeleteRequest) -> None:
        self.calls.append(("delete", request))
        self.send_done(Done(request.name))

    def bad_request_received(self, kind: int, body: bytes, error: FilesProtocolError) -> None:
        self.calls.append(("bad", kind, error.code))


def frames_of(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        (length,) = struct.unpack_from("!I", data)
        payload = data[4 : 4 + length]
        out.append((payload[0], payload[1:]))
        data = data[4 + length :]
    return out


def drain(protocol: FilesServerProtocol) -> bytes:
    return b"".join(protocol.data_to_send())


def logged_in(**kwargs: object) -> Recorder:
    server = Recorder(**kwargs)  # type: ignore[arg-type]
    connected(server)
    server.receive_data(AUTH)
    kinds = [k for k, _ in frames_of(drain(server))]
    assert kinds == [FrameType.CHALLENGE, FrameType.READY]
    return server


def errors(data: bytes) -> list[dict[str, object]]:
    return [json.loads(b) for k, b in frames_of(data) if k == FrameType.ERROR]


def upload(content: bytes, *, name: str = "f", size: int | None = None) -> bytes:
    size = len(content) if size is None else size
    return (encode(FrameType.PUT, PutRequest(name, size, 0o600).to_body())
            + encode(FrameType.START, b'{"offset":0}')
            + content
            + encode(FrameType.END, Digest(sha(content)).to_body()))


# --- login -------------------------------------------------------------------------------


def test_challenge_then_ready_on_the_right_answer() -> None:
    server = Recorder()
    connected(server)
    (kind, body), = frames_of(drain(server))
    assert kind == FrameType.CHALLENGE
    assert body == b"\x01" + NONCE
    server.receive_data(AUTH)
    (kind, body), = frames_of(drain(server))
    assert kind == FrameType.READY
    assert json.loads(body)["version"] == 1
    assert server.state is ServerState.READY


def test_an_exec_answer_is_no_files_answer() -> None:
    """Same token, same nonce: the label keeps the two services' answers apart."""
    assert exec_answer(TOKEN, NONCE) != compute_answer(TOKEN, NONCE)
    server = Recorder()
    connected(server)
    drain(server)
    server.receive_data(encode(FrameType.AUTH, exec_answer(TOKEN, NONCE)))
    (error,) = errors(drain(server))
    assert error["code"] == "auth_failed"
    assert server.close_expected()


def test_requests_before_login_are_refused() -> None:
    server = Recorder()
    connected(server)
    drain(server)
    server.receive_data(upload(b"x"))
    (error,) = errors(drain(server))
    assert error["code"] == "auth_required"
    assert error["fatal"] is True
    assert server.close_expected()
    assert ("put", PutRequest("f", 1, 0o600)) not in server.calls


def test_a_large_frame_before_login_is_refused_unread() -> None:
    server = Recorder()
    connected(server)
    drain(server)
    server.receive_data(struct.pack("!I", PREAUTH_MAX_FRAME + 1))
    (error,) = errors(drain(server))
    assert error["code"] == "frame_too_large"


def test_input_while_the_answer_is_weighed_is_discarded() -> None:
    class Slow(Recorder):
        def auth_received(self, answer: bytes) -> None:
            self.calls.append(("auth",))

    server = Slow()
    connected(server)
    drain(server)
    server.receive_data(AUTH + upload(b"abc"))
    assert server.state is ServerState.CHECKING
    server.accept_auth(Ready())
    drain(server)
    assert server.calls == [("auth",)]


# --- uploads ------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"x", b"hello\n" * 100, bytes(range(256))])
def test_upload_round_trip_at_every_split(content: bytes) -> None:
    stream = upload(content)
    for reads in split_at_every_byte(stream) if len(stream) < 200 else [[stream]]:
        server = logged_in()
        for read in reads:
            server.receive_data(read)
        out = frames_of(drain(server))
        assert [k for k, _ in out] == [FrameType.ACCEPT, FrameType.DONE]
        assert bytes(server.stored) == content
        assert json.loads(out[1][1])["sha256"] == sha(content)
        assert server.state is ServerState.READY


def feed_like_the_engine(server: FilesServerProtocol, stream: bytes, read: int) -> list[bool]:
    """Deliver ``stream`` in reads of at most ``read`` bytes, as the engine does.

    While the protocol asked for ``read_into(True)`` a read goes into its
    ``get_buffer`` (as much as fits) and ``buffer_updated``; otherwise to
    ``receive_data``. Returns the protocol's ``read_into`` calls.
    """
    calls: list[bool] = []
    server.read_into = calls.append
    position = 0
    while position < len(stream):
        if calls and calls[-1]:
            buffer = server.get_buffer(read)
            count = min(len(buffer), read, len(stream) - position)
            assert count > 0
            buffer[:count] = stream[position:position + count]
            position += count
            server.buffer_updated(count)
        else:
            server.receive_data(stream[position:position + read])
            position += read
    return calls


@pytest.mark.parametrize("read", [1, 7, 4096, 1 << 20])
def test_upload_bytes_go_into_lent_buffers_and_end_is_read_as_a_frame(read: int) -> None:
    """After START the engine reads into the protocol's buffers, never past the last file byte."""
    content = bytes(range(256)) * 64
    server = logged_in()
    calls = feed_like_the_engine(server, upload(content), read)
    out = frames_of(drain(server))
    assert [k for k, _ in out] == [FrameType.ACCEPT, FrameType.DONE]
    assert bytes(server.stored) == content
    assert calls == [True, False]  # lent reads for the contents only
    assert server.state is ServerState.READY


def test_a_failure_mid_upload_reads_the_rest_into_scratch() -> None:
    """Failed while lent (the disk broke): later reads land in scratch and are dropped."""
    server = logged_in()
    calls: list[bool] = []
    server.read_into = calls.append
    server.receive_data(encode(FrameType.PUT, PutRequest("f", 100).to_body())
                        + encode(FrameType.START, b'{"offset":0}'))
    assert calls == [True]
    server.fail(ErrorCode.IO_ERROR, "disk broke")
    buffer = server.get_buffer(65536)
    buffer[:10] = b"x" * 10
    server.buffer_updated(10)
    assert server.stored == b"" and server.state is ServerState.CLOSED


def test_raw_bytes_that_look_like_frames_are_contents() -> None:
    """After START, a frame header inside the file is just bytes."""
    content = encode(FrameType.DELETE, DeleteRequest("victim").to_body())
    server = logged_in()
    server.receive_data(upload(content))
    assert bytes(server.stored) == content
    assert not any(c[0] == "delete" for c in server.calls)


def test_a_wrong_digest_is_a_non_fatal_checksum_mismatch() -> None:
    server = logged_in()
    stream = (encode(FrameType.PUT, PutRequest("f", 3).to_body())
              + encode(FrameType.START, b'{"offset":0}') + b"abc"
              + encode(FrameType.END, Digest(sha(b"abd")).to_body()))
    server.receive_data(stream)
    (error,) = errors(drain(server))
    assert error == {"code": "checksum_mismatch", "message": "SHA-256 differs", "fatal": False}
    assert server.state is ServerState.READY
    server.receive_data(encode(FrameType.LIST, ListRequest().to_body()))
    assert [k for k, _ in frames_of(drain(server))] == [FrameType.LISTING]


def test_resume_offers_the_part_and_its_hash() -> None:
    content = b"0123456789"
    server = logged_in(resume_from=content[:4])
    server.receive_data(encode(FrameType.PUT, PutRequest("f", 10, resume=True).to_body()))
    (kind, body), = frames_of(drain(server))
    assert kind == FrameType.ACCEPT
    assert json.loads(body) == {"offset": 4, "prefix_sha256": sha(content[:4]), "digest": "sha256"}
    server.receive_data(encode(FrameType.START, b'{"offset":4}') + content[4:]
                        + encode(FrameType.END, Digest(sha(content)).to_body()))
    assert bytes(server.stored) == content
    assert [k for k, _ in frames_of(drain(server))] == [FrameType.DONE]


def test_a_client_may_start_over_instead_of_resuming() -> None:
    server = logged_in(resume_from=b"XXXX")
    server.receive_data(encode(FrameType.PUT, PutRequest("f", 3, resume=True).to_body()))
    drain(server)
    server.receive_data(encode(FrameType.START, b'{"offset":0}') + b"abc"
                        + encode(FrameType.END, Digest(sha(b"abc")).to_body()))
    assert bytes(server.stored) == b"abc"
    assert ("start", 0) in server.calls


def test_any_other_start_offset_is_fatal() -> None:
    server = logged_in(resume_from=b"XXXX")
    server.receive_data(encode(FrameType.PUT, PutRequest("f", 10, resume=True).to_body()))
    drain(server)
    server.receive_data(encode(FrameType.START, b'{"offset":2}'))
    (error,) = errors(drain(server))
    assert error["code"] == "bad_request"
    assert error["fatal"] is True
    assert server.close_expected()


def test_a_request_sent_ahead_waits_for_the_answer() -> None:
    server = logged_in(defer=True)
    server.receive_data(encode(FrameType.PUT, PutRequest("f", 2).to_body())
                        + encode(FrameType.START, b'{"offset":0}') + b"ab"
                        + encode(FrameType.END, Digest(sha(b"ab")).to_body()))
    assert server.state is ServerState.WORKING
    server.accept_put(Accept())
    assert bytes(server.stored) == b"ab"
    assert [k for k, _ in frames_of(drain(server))] == [FrameType.ACCEPT, FrameType.DONE]


def test_refusing_a_put_answers_and_returns_to_ready() -> None:
    server = logged_in(defer=True)
    server.receive_data(encode(FrameType.PUT, PutRequest("f", 2).to_body()))
    server.refuse(ErrorCode.EXISTS, "f exists; use --force")
    (error,) = errors(drain(server))
    assert error["code"] == "exists"
    assert server.state is ServerState.READY


def test_refusing_while_bytes_are_due_is_fatal() -> None:
    """Mid-upload there is no way back to frames: a failure then closes."""
    server = logged_in()
    server.receive_data(encode(FrameType.PUT, PutRequest("f", 100).to_body())
                        + encode(FrameType.START, b'{"offset":0}') + b"abc")
    assert server.state is ServerState.RECEIVING
    server.refuse(ErrorCode.IO_ERROR, "disk full")
    drain(server)
    assert server.close_expected()


def test_anything_but_end_after_the_bytes_is_fatal() -> None:
    server = logged_in()
    server.receive_data(encode(FrameType.PUT, PutRequest("f", 1).to_body())
                        + encode(FrameType.START, b'{"offset":0}') + b"a"
                        + encode(FrameType.LIST, ListRequest().to_body()))
    out = drain(server)
    assert errors(out)[-1]["code"] == "bad_frame"
    assert server.close_expected()


# --- names and malformed requests ------------------------------------------------------


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/",
                                  "a\0b", "a\nb", "\ud800", "x" * 256, "a/" * 2049 + "b", 7])
def test_names_that_could_escape_or_cannot_be_held_are_refused(name: object) -> None:
    with pytest.raises(FilesProtocolError) as caught:
        check_name(name)
    assert caught.value.code == ErrorCode.BAD_NAME


@pytest.mark.parametrize("name", ["a", "dir/sub/file.txt", "..a", "a..", "ünïcødé", "x" * 255,
                                  "with space", "a\\b"])
def test_ordinary_names_pass(name: str) -> None:
    assert check_name(name) == tuple(name.split("/"))


def test_a_bad_name_is_a_non_fatal_refusal_and_audited() -> None:
    server = logged_in()
    server.receive_data(encode(FrameType.PUT, b'{"name":"../etc/passwd","size":1}'))
    (error,) = errors(drain(server))
    assert error["code"] == "bad_name"
    assert error["fatal"] is False
    assert ("bad", FrameType.PUT, ErrorCode.BAD_NAME) in server.calls
    assert server.state is ServerState.READY


@pytest.mark.parametrize("body", [b"\xff", b"[]", b"{", b'{"name":"a"}', b'{"name":"a","size":-1}',
                                  b'{"name":"a","size":true}', b'{"name":"a","size":1,"mode":4096}',
                                  b'{"name":"a","size":1,"owner":"root"}',
                                  b'{"name":"a","size":1,"force":"yes"}'])
def test_malformed_puts_are_bad_requests(body: bytes) -> None:
    server = logged_in()
    server.receive_data(encode(FrameType.PUT, body))
    (error,) = errors(drain(server))
    assert error["code"] == "bad_request"
    assert server.state is ServerState.READY


def test_a_get_offset_needs_a_prefix_hash() -> None:
    with pytest.raises(FilesProtocolError):
        GetRequest.from_body(b'{"name":"a","offset":3}')
    assert GetRequest.from_body(GetRequest("a", 3, sha(b"abc")).to_body()).offset == 3


def test_unknown_and_empty_frames_are_fatal() -> None:
    for frame in (encode(FrameType.READY), b"\0\0\0\0"):
        server = logged_in()
        server.receive_data(frame)
        assert errors(drain(server))[0]["code"] == "bad_frame"
        assert server.close_expected()


def test_a_client_that_runs_ahead_by_more_than_a_frame_is_cut_off() -> None:
    server = logged_in(defer=True)
    server.receive_data(encode(FrameType.PUT, PutRequest("f", 1).to_body()))
    server.receive_data(b"x" * (server.max_frame + 10))
    assert errors(drain(server))[0]["code"] == "bad_frame"


# --- the client side ---------------------------------------------------------------------


def test_client_decoder_reads_raw_bytes_after_file_at_every_split() -> None:
    server = logged_in()
    server.receive_data(encode(FrameType.GET, GetRequest("a").to_body()))
    stream = drain(server)
    for reads in split_at_every_byte(stream):
        decoder = ClientDecoder()
        events = [e for read in reads for e in decoder.feed(read)]
        raw = b"".join(e.data for e in events if isinstance(e, RawData))
        others = [e for e in events if not isinstance(e, RawData)]
        assert raw == b"hello, world\n"
        assert others == [FileHeader("a", 13, 0o644, 0), Digest(sha(raw))]


def test_client_decoder_raw_bytes_read_past_it() -> None:
    """A client that reads a file's bytes into its own buffers says how many; END still parses."""
    server = logged_in()
    server.receive_data(encode(FrameType.GET, GetRequest("a").to_body()))
    stream = drain(server)
    header_end = stream.index(b"hello")
    decoder = ClientDecoder()
    events = decoder.feed(stream[:header_end + 3])  # FILE and "hel"
    assert events == [FileHeader("a", 13, 0o644, 0), RawData(b"hel")]
    with pytest.raises(ValueError):
        decoder.raw_taken(11)  # only 10 are still due
    decoder.raw_taken(10)  # "lo, world\n", read straight into the client's buffer
    assert decoder.feed(stream[header_end + 13:]) == [Digest(sha(b"hello, world\n"))]
    with pytest.raises(ValueError):
        decoder.raw_taken(1)  # no raw bytes are due now


def test_client_decoder_refuses_raw_taken_over_buffered_bytes() -> None:
    """With a frame's bytes buffered, skipping would lose them: refused."""
    decoder = ClientDecoder()
    file_frame = encode(FrameType.FILE, b'{"name":"a","size":5,"mode":420}')
    decoder.feed(file_frame[:3])
    with pytest.raises(ValueError):
        decoder.raw_taken(0)


def test_client_decoder_after_a_resumed_get() -> None:
    server = logged_in()
    server.receive_data(encode(FrameType.GET, GetRequest("a", 7, sha(b"hello, ")).to_body()))
    events = ClientDecoder().feed(drain(server))
    assert events[0] == FileHeader("a", 13, 0o644, 7)
    assert events[1] == RawData(b"world\n")


def test_client_parses_every_server_answer() -> None:
    for frame, event in [
        (encode(FrameType.CHALLENGE, b"\x01" + NONCE), Challenge(1, NONCE)),
        (encode(FrameType.READY, Ready(read_only=True, max_size=5).to_body()),
         Ready(read_only=True, max_size=5)),
        (encode(FrameType.ACCEPT, Accept(3, sha(b"abc")).to_body()), Accept(3, sha(b"abc"))),
        (encode(FrameType.DONE, Done("a", 3, sha(b"abc")).to_body()), Done("a", 3, sha(b"abc"))),
        (encode(FrameType.ERROR, ErrorReport("quota", "full", False).to_body()),
         ErrorReport("quota", "full", False)),
        (encode(FrameType.LISTING, Listing((Entry("d", "dir", 0, 0o755, 2.0),)).to_body()),
         Listing((Entry("d", "dir", 0, 0o755, 2.0),))),
    ]:
        assert parse_server_frame(frame[4:]) == event


@pytest.mark.parametrize("frame", [b"", b"\x99", b"\x81\x01", b"\x84{}", b"\x83[]",
                                   b"\x84" + FileHeader("a", 1, 0, 2).to_body()])
def test_client_refuses_malformed_server_frames(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_server_frame(frame)


def test_client_refuses_an_oversized_frame() -> None:
    with pytest.raises(ProtocolError):
        ClientDecoder(max_frame=10).feed(struct.pack("!I", 11))


# --- digests: negotiated, SHA-256 mandatory ---------------------------------------------


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def test_the_server_picks_its_first_digest_that_the_client_offered() -> None:
    assert digests.pick(None) == "sha256"  # offered nothing: an old client
    assert digests.pick(("sha256", "blake3")) == "blake3"  # the server's order, not the client's
    assert digests.pick(("blake3",)) == "blake3"
    assert digests.pick(("sha256",)) == "sha256"
    assert digests.pick(("md5", "sha3-256")) == "sha256"  # nothing in common: the mandatory one
    assert digests.pick(("blake3",), ("sha256",)) == "sha256"
    assert digests.new("blake3").hexdigest() == b3(b"") != digests.new("sha256").hexdigest()


def test_without_the_blake3_package_the_digests_are_sha256_alone(monkeypatch) -> None:
    """The import is optional: hidden (``None`` in sys.modules), the module offers,
    lists and picks SHA-256 only, and refuses to make a BLAKE3 hasher."""
    monkeypatch.setitem(sys.modules, "blake3", None)
    try:
        importlib.reload(digests)
        assert (digests.HAVE_BLAKE3, digests.DIGESTS) == (False, ("sha256",))
        assert digests.pick(("blake3", "sha256"), digests.DIGESTS) == "sha256"
        assert digests.pick(("blake3",), digests.DIGESTS) == "sha256"
        assert digests.new("sha256").hexdigest() == hashlib.sha256().hexdigest()
        with pytest.raises(ValueError, match="blake3"):
            digests.new("blake3")
    finally:
        monkeypatch.undo()
        importlib.reload(digests)
    assert digests.DIGESTS == ("blake3", "sha256")


def test_ready_lists_the_digests_and_an_old_ready_means_sha256_only() -> None:
    assert json.loads(Ready().to_body())["digests"] == ["blake3", "sha256"]
    old = b'{"version":1,"read_only":false,"max_size":null,"idle_timeout":null}'
    event = parse_server_frame(bytes([FrameType.READY]) + old)
    assert isinstance(event, Ready) and event.digests is None


def test_an_offer_is_sent_only_when_given() -> None:
    assert "digests" not in json.loads(PutRequest("f", 1).to_body())
    assert "digests" not in json.loads(GetRequest("f").to_body())
    put = PutRequest.from_body(PutRequest("f", 1, digests=("blake3", "sha256")).to_body())
    assert put.digests == ("blake3", "sha256")


@pytest.mark.parametrize("offer", ['"blake3"', "[]", "[1]", '["BLAKE3"]', '["' + "x" * 33 + '"]',
                                   json.dumps(["a"] * 17), "null"])
def test_a_malformed_offer_is_a_bad_request(offer: str) -> None:
    for cls, body in ((PutRequest, '{"name":"f","size":1,"digests":%s}'),
                      (GetRequest, '{"name":"f","digests":%s}')):
        with pytest.raises(FilesProtocolError) as refused:
            cls.from_body((body % offer).encode())  # type: ignore[attr-defined]
        assert refused.value.code == ErrorCode.BAD_REQUEST


def test_a_resumed_get_carries_its_prefix_in_the_digest_the_server_picks() -> None:
    prefix = b3(b"abc")
    get = GetRequest.from_body(GetRequest("a", 3, prefix, ("blake3", "sha256"), "blake3")
                               .to_body())
    assert (get.digest, get.prefix, get.offset) == ("blake3", prefix, 3)
    assert json.loads(GetRequest("a", 3, prefix, ("blake3",), "blake3").to_body())[
        "prefix_blake3"] == prefix
    for body in (b'{"name":"a","offset":3,"digests":["blake3"],"prefix_sha256":"%s"}'
                 % sha(b"abc").encode(),
                 b'{"name":"a","offset":3,"prefix_blake3":"%s"}' % prefix.encode(),
                 b'{"name":"a","offset":3,"digests":["blake3"]}'):
        with pytest.raises(FilesProtocolError) as refused:
            GetRequest.from_body(body)
        assert refused.value.code == ErrorCode.BAD_REQUEST


class Picker(Recorder):
    """A Recorder that picks a digest from the offer, as the service does."""

    def put_received(self, request: PutRequest) -> None:
        self.digest = digests.pick(request.digests)
        self.accept_put(Accept(0, None, self.digest))

    def end_received(self, digest: Digest) -> None:
        self.calls.append(("end", digest))
        self.send_done(Done("f", len(self.stored), digest.hex, 0, digest.name))


def picker() -> Picker:
    server = Picker()
    connected(server)
    server.receive_data(AUTH)
    drain(server)
    return server


def test_an_upload_in_blake3_end_to_end_on_the_wire() -> None:
    server = picker()
    server.receive_data(encode(FrameType.PUT, PutRequest("f", 3, digests=("blake3",)).to_body()))
    (kind, body), = frames_of(drain(server))
    assert json.loads(body) == {"offset": 0, "digest": "blake3", "prefix_blake3": None}
    assert parse_server_frame(bytes([kind]) + body) == Accept(0, None, "blake3")
    server.receive_data(encode(FrameType.START, b'{"offset":0}') + b"abc"
                        + encode(FrameType.END, b'{"blake3":"%s"}' % b3(b"abc").encode()))
    (kind, body), = frames_of(drain(server))
    assert json.loads(body) == {"name": "f", "size": 3, "offset": 0, "digest": "blake3",
                                "blake3": b3(b"abc")}
    assert parse_server_frame(bytes([kind]) + body) == Done("f", 3, b3(b"abc"), 0, "blake3")


@pytest.mark.parametrize("end", [b'{"sha256":"%s"}' % sha(b"abc").encode(),
                                 b'{"blake3":"%s","sha256":"%s"}' % (b3(b"abc").encode(),
                                                                    sha(b"abc").encode()),
                                 b'{"md5":"00"}', b'{"blake3":"ABC"}', b"{}"])
def test_an_end_not_in_the_accepted_digest_is_fatal(end: bytes) -> None:
    server = picker()
    server.receive_data(encode(FrameType.PUT, PutRequest("f", 3, digests=("blake3",)).to_body()))
    drain(server)
    server.receive_data(encode(FrameType.START, b'{"offset":0}') + b"abc"
                        + encode(FrameType.END, end))
    (error,) = errors(drain(server))
    assert (error["code"], error["fatal"]) == ("bad_request", True)
    assert server.close_expected()
    assert not [c for c in server.calls if c[0] == "end"]


def test_client_parses_blake3_answers() -> None:
    for frame, event in [
        (encode(FrameType.ACCEPT, Accept(3, b3(b"abc"), "blake3").to_body()),
         Accept(3, b3(b"abc"), "blake3")),
        (encode(FrameType.FILE, FileHeader("a", 3, 0o600, 1, "blake3").to_body()),
         FileHeader("a", 3, 0o600, 1, "blake3")),
        (encode(FrameType.FILE_END, Digest(b3(b"abc"), "blake3").to_body()),
         Digest(b3(b"abc"), "blake3")),
        (encode(FrameType.DONE, Done("a", 3, b3(b"abc"), 0, "blake3").to_body()),
         Done("a", 3, b3(b"abc"), 0, "blake3")),
        # A version-1 server's answers: no digest member means SHA-256.
        (encode(FrameType.ACCEPT, b'{"offset":0,"prefix_sha256":null}'), Accept()),
        (encode(FrameType.DONE, b'{"name":"a","size":0,"sha256":null,"offset":0}'), Done("a")),
    ]:
        assert parse_server_frame(frame[4:]) == event
