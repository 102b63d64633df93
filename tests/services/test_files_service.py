"""The files service over real loopback sockets: a real server process, real files.

What issue 11 asks to be tested: round trips (empty, small, 1 GiB sparse, a
nested tree) with hashes checked; a transfer killed in the middle leaves
nothing visible and resumes to the right hash; a corrupted resume base is
detected; escapes refused; a wrong token refused with nothing written;
quota and --max-size; two uploads at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import blake3
import pytest
import trustme

from helpers import write_token
from proc import Served, run_sockhub, start_sockhub
from sockhub.client.files import (
    EXIT_CONNECTION,
    EXIT_EXISTS,
    EXIT_INTEGRITY,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_USAGE,
    FilesClient,
    FilesError,
    Result,
)
from sockhub.protocols.files import (
    Digest,
    FrameType,
    PutRequest,
    compute_answer,
    encode,
)

TOKEN = b"0123456789abcdef-files-token-32b"
GIB = 1024**3
STEP_TIMEOUT = 10.0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def sha_file(path: Path, name: str = "sha256") -> str:
    digest = hashlib.sha256() if name == "sha256" else blake3.blake3()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return write_token(tmp_path / "files-token", TOKEN)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


async def serve(token_file: Path, root: Path, *extra: str) -> Served:
    return await start_sockhub("files", "--port", "0", "--root", str(root),
                               "--token-file", str(token_file), "--loop", "asyncio", *extra)


@pytest.fixture
async def server(token_file: Path, root: Path) -> AsyncIterator[Served]:
    served = await serve(token_file, root)
    yield served
    assert await served.stop() == 0


def client(served: Served, digest: str = "auto") -> FilesClient:
    return FilesClient.connect("127.0.0.1", served.ports["files"], token=TOKEN, timeout=10,
                               digest=digest)


def digest_of(name: str, data: bytes) -> str:
    return sha(data) if name == "sha256" else b3(data)


def address(served: Served) -> str:
    return f"127.0.0.1:{served.ports['files']}"


async def cli(served: Served, token_file: Path, *args: str, stdin: bytes = b""
              ) -> tuple[int, bytes, bytes]:
    command, *rest = args
    return await run_sockhub(command, *rest[:1], address(served), *rest[1:],
                             "--token-file", str(token_file), stdin=stdin)


def visible(root: Path) -> list[str]:
    """What a reader of the root sees (part files start with a dot)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


def raw_login(served: Served, token: bytes = TOKEN) -> socket.socket:
    """A socket logged in by hand, for transfers the client would not do."""
    sock = socket.create_connection(("127.0.0.1", served.ports["files"]), timeout=10)
    challenge = read_frame(sock)
    sock.sendall(encode(FrameType.AUTH, compute_answer(token, challenge[2:])))
    return sock


def read_frame(sock: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    (length,) = struct.unpack("!I", exact(4))
    return exact(length)


# --- Round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"hello, files\n"], ids=["empty", "small"])
async def test_round_trip_of_a_file(server, token_file, root, tmp_path, content):
    source = tmp_path / "source"
    source.write_bytes(content)
    source.chmod(0o640)
    code, _, err = await cli(server, token_file, "send", str(source), "--as", "dir/f")
    assert code == 0, err
    assert (root / "dir" / "f").read_bytes() == content
    assert (root / "dir" / "f").stat().st_mode & 0o777 == 0o640
    out = tmp_path / "out"
    code, _, err = await cli(server, token_file, "get", "dir/f", "-o", str(out))
    assert code == 0, err
    assert out.read_bytes() == content
    await server.expect_log(f'op=put name="dir/f" size={len(content)}')
    await server.expect_log(f"blake3={b3(content)} ")


async def test_round_trip_of_a_1_gib_sparse_file(server, root, tmp_path):
    """1 GiB each way over loopback: zero-copy out of the server, verified both ends.

    The download goes to a sink that hashes it (the client checks the
    server's SHA-256 itself): the disk, not the transfer, is the slow part
    of this machine, and one gibibyte written is enough to prove the upload.
    """
    source = tmp_path / "sparse"
    with source.open("wb") as f:
        f.truncate(GIB)
        f.seek(GIB // 2)
        f.write(b"a marker in the middle")
    expected = sha_file(source)

    class Sink:
        def __init__(self) -> None:
            self.digest, self.size = hashlib.sha256(), 0

        def write(self, data: bytes) -> int:
            self.digest.update(data)
            self.size += len(data)
            return len(data)

    sink = Sink()

    def transfer() -> tuple[str, str]:
        with client(server) as files, source.open("rb") as f:
            up = files.put(f, "big")
            down = files.get("big", None, stdout=sink)  # type: ignore[arg-type]
        assert up.digest == down.digest == "blake3"
        return up.hash, down.hash

    up, down = await asyncio.wait_for(asyncio.to_thread(transfer), 50)
    assert sink.digest.hexdigest() == expected
    assert up == down == sha_file(source, "blake3")
    assert sink.size == (root / "big").stat().st_size == GIB


async def test_round_trip_of_a_tree(server, token_file, root, tmp_path):
    tree = tmp_path / "tree"
    files = {"top.txt": b"top\n", "a/one": b"1" * 1000, "a/b/c/deep": os.urandom(70_000),
             "a/empty": b""}
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    code, _, err = await cli(server, token_file, "send", str(tree))
    assert code == 0, err
    assert visible(root) == sorted(f"tree/{n}" for n in files)
    code, out, _ = await cli(server, token_file, "ls", "-R")
    assert out.decode().split() == sorted(f"tree/{n}" for n in files)
    back = tmp_path / "back"
    code, _, err = await cli(server, token_file, "get", "tree", "-o", str(back))
    assert code == 0, err
    for name, data in files.items():
        assert sha_file(back / name) == sha(data)


async def test_stdin_and_stdout(server, token_file):
    code, _, err = await cli(server, token_file, "send", "-", "--as", "piped", stdin=b"from a pipe")
    assert code == 0, err
    code, out, _ = await cli(server, token_file, "get", "piped", "-o", "-")
    assert (code, out) == (0, b"from a pipe")


# --- Interrupted transfers, resume --------------------------------------------------


@pytest.mark.parametrize("digest", ["blake3", "sha256"])
async def test_a_killed_upload_leaves_nothing_visible_and_resumes(server, root, tmp_path,
                                                                  digest):
    """The part was sent under SHA-256 (no offer); the resume verifies it in its own digest."""
    content = os.urandom(3_000_000)
    half = 1_234_567
    sock = raw_login(server)
    assert read_frame(sock)[0] == FrameType.READY
    sock.sendall(encode(FrameType.PUT, PutRequest("up", len(content)).to_body()))
    assert read_frame(sock)[0] == FrameType.ACCEPT
    sock.sendall(encode(FrameType.START, b'{"offset":0}') + content[:half])
    sock.close()  # killed mid-transfer
    await server.expect_log('op=put name="up" size=3000000 result=interrupted')
    assert visible(root) == []
    source = tmp_path / "source"
    source.write_bytes(content)

    def resume() -> int:
        with client(server, digest) as files, source.open("rb") as f:
            result = files.put(f, "up", resume=True)
            assert (result.digest, result.hash) == (digest, digest_of(digest, content))
            return result.offset

    assert await asyncio.to_thread(resume) == half
    await server.expect_log(f'op=put name="up" size=3000000 bytes={len(content) - half} '
                            f"offset={half} {digest}={digest_of(digest, content)} ")
    assert (root / "up").read_bytes() == content
    assert [p.name for p in root.iterdir()] == ["up"]  # the part is gone


@pytest.mark.parametrize("digest", ["blake3", "sha256"])
async def test_a_corrupted_server_part_is_detected_and_sent_again(server, root, tmp_path,
                                                                  digest):
    content = os.urandom(500_000)
    sock = raw_login(server)
    read_frame(sock)
    sock.sendall(encode(FrameType.PUT, PutRequest("up", len(content)).to_body()))
    read_frame(sock)
    sock.sendall(encode(FrameType.START, b'{"offset":0}') + content[:200_000])
    sock.close()
    await server.expect_log("result=interrupted")
    (part,) = [p for p in root.iterdir() if p.name.startswith(".")]
    with part.open("r+b") as f:  # a flipped byte in the part
        f.seek(1000)
        f.write(bytes([content[1000] ^ 0xFF]))
    source = tmp_path / "source"
    source.write_bytes(content)

    def resume() -> int:
        with client(server, digest) as files, source.open("rb") as f:
            return files.put(f, "up", resume=True).offset

    assert await asyncio.to_thread(resume) == 0  # started over, not resumed on bad bytes
    assert (root / "up").read_bytes() == content


async def test_an_upload_whose_end_digest_differs_is_not_stored(server, root):
    sock = raw_login(server)
    read_frame(sock)
    sock.sendall(encode(FrameType.PUT, PutRequest("bad", 3).to_body()))
    read_frame(sock)
    sock.sendall(encode(FrameType.START, b'{"offset":0}') + b"abc"
                 + encode(FrameType.END, Digest(sha(b"abd")).to_body()))
    answer = read_frame(sock)
    assert answer[0] == FrameType.ERROR
    assert json.loads(answer[1:])["code"] == "checksum_mismatch"
    sock.close()
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("digest", ["auto", "sha256", "blake3"])
async def test_a_download_resumes_and_a_corrupted_local_part_is_refused(
        server, token_file, root, tmp_path, digest):
    content = os.urandom(400_000)
    (root / "f").write_bytes(content)
    out = tmp_path / "out"
    part = tmp_path / ".out.sockhub-part"
    part.write_bytes(content[:150_000])  # what a killed download left
    args = ("get", "f", "-o", str(out), "--resume", "--digest", digest)
    code, _, err = await cli(server, token_file, *args)
    assert code == 0, err
    assert out.read_bytes() == content and not part.exists()
    used = "blake3" if digest == "auto" else digest
    await server.expect_log(f'op=get name="f" size=400000 bytes=250000 offset=150000 '
                            f"{used}={digest_of(used, content)} ")
    out.unlink()
    # Its first byte changed (flipped: a fixed b"X" would match 1 content in 256).
    part.write_bytes(bytes([content[0] ^ 0xFF]) + content[1:150_000])
    code, _, err = await cli(server, token_file, *args)
    assert code == EXIT_INTEGRITY and b"resume_mismatch" in err
    assert not out.exists()


def cut_download(listener: socket.socket, content: bytes, cut: int) -> None:
    """A server that sends FILE and ``cut`` of ``content``'s bytes, then drops the connection."""
    conn, _ = listener.accept()
    with conn:
        conn.sendall(encode(FrameType.CHALLENGE, b"\x01" + os.urandom(32)))
        read_frame(conn)  # AUTH: not checked here
        conn.sendall(encode(FrameType.READY, b'{"version":1,"read_only":false,'
                            b'"max_size":null,"idle_timeout":null}'))
        read_frame(conn)  # GET
        header = json.dumps({"name": "f", "size": len(content), "mode": 0o644, "offset": 0})
        # The first bytes in the FILE frame's segment, the rest read straight into buffers.
        conn.sendall(encode(FrameType.FILE, header.encode()) + content[:1000])
        conn.sendall(content[1000:cut])


async def test_a_cut_download_leaves_nothing_visible_and_resumes_from_every_byte(
        server, root, tmp_path):
    """Cut mid-file on the receive-into-buffers path: the part holds all that came; resumed."""
    content = os.urandom(5 * 1024 * 1024 + 77)
    cut = 3 * 1024 * 1024 + 12_345  # past several of the client's 1 MiB buffers, mid-one
    out = tmp_path / "out"
    part = tmp_path / ".out.sockhub-part"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        cutter = asyncio.create_task(asyncio.to_thread(cut_download, listener, content, cut))

        def get_cut() -> None:
            with FilesClient.connect("127.0.0.1", listener.getsockname()[1], token=TOKEN,
                                     timeout=STEP_TIMEOUT) as files:
                files.get("f", out)

        with pytest.raises(FilesError) as cut_off:
            await asyncio.to_thread(get_cut)
        await cutter
    assert cut_off.value.exit_status == EXIT_CONNECTION
    assert not out.exists()
    assert part.read_bytes() == content[:cut]
    (root / "f").write_bytes(content)

    def resume() -> Result:
        with client(server) as files:
            return files.get("f", out, resume=True)

    result = await asyncio.to_thread(resume)
    assert (result.offset, result.hash) == (cut, b3(content))
    assert out.read_bytes() == content and not part.exists()


# --- Digests: negotiated, SHA-256 for whoever offers nothing ------------------------


def documented_uploader() -> Callable[..., dict[str, object]]:
    """The standard-library uploader printed in docs/files-protocol.md (it offers nothing)."""
    text = (Path(__file__).parents[2] / "docs" / "files-protocol.md").read_text()
    code = text.split("```python\n")[-1].split("```")[0]
    namespace: dict[str, object] = {}
    exec(compile(code, "files-protocol.md", "exec"), namespace)  # our own docs
    put = namespace["put"]
    assert callable(put)
    return put  # type: ignore[return-value]


async def test_the_documented_uploader_offers_nothing_and_gets_sha256(server, root, tmp_path):
    content = os.urandom(300_000)
    (tmp_path / "src").write_bytes(content)
    put = documented_uploader()
    done = await asyncio.to_thread(put, "127.0.0.1", server.ports["files"], TOKEN,
                                   str(tmp_path / "src"), "old")
    assert done["digest"] == "sha256" and done["sha256"] == sha(content)
    assert (root / "old").read_bytes() == content
    await server.expect_log(f'op=put name="old" size=300000 bytes=300000 offset=0 '
                            f"sha256={sha(content)} ")


async def test_ready_lists_the_digests_and_a_put_without_an_offer_is_sha256(server):
    sock = raw_login(server)
    ready = read_frame(sock)
    assert ready[0] == FrameType.READY
    assert json.loads(ready[1:])["digests"] == ["blake3", "sha256"]
    sock.sendall(encode(FrameType.PUT, PutRequest("x", 1).to_body()))
    accept = read_frame(sock)
    assert json.loads(accept[1:]) == {"offset": 0, "digest": "sha256", "prefix_sha256": None}
    sock.close()


@pytest.mark.parametrize("offer, picked", [(["sha256", "blake3"], "blake3"),
                                           (["blake3"], "blake3"), (["sha256"], "sha256"),
                                           (["md5", "sha3-256"], "sha256")])
async def test_the_server_picks_from_the_offer_in_its_own_order(server, root, offer, picked):
    sock = raw_login(server)
    read_frame(sock)
    sock.sendall(encode(FrameType.PUT, json.dumps({"name": "x", "size": 3, "digests": offer})
                        .encode()))
    accept = json.loads(read_frame(sock)[1:])
    assert accept["digest"] == picked
    sock.sendall(encode(FrameType.START, b'{"offset":0}') + b"abc"
                 + encode(FrameType.END, Digest(digest_of(picked, b"abc"), picked).to_body()))
    done = read_frame(sock)
    assert done[0] == FrameType.DONE
    assert json.loads(done[1:])[picked] == digest_of(picked, b"abc")
    sock.close()
    await server.expect_log(f'op=put name="x" size=3 bytes=3 offset=0 '
                            f"{picked}={digest_of(picked, b'abc')} ")


@pytest.mark.parametrize("digest", ["sha256", "blake3"])
async def test_send_and_get_with_a_chosen_digest(server, token_file, root, tmp_path, digest):
    content = os.urandom(200_000)
    (tmp_path / "src").write_bytes(content)
    code, _, err = await cli(server, token_file, "send", str(tmp_path / "src"), "--as", "f",
                             "--digest", digest)
    assert code == 0, err
    await server.expect_log(f'op=put name="f" size=200000 bytes=200000 offset=0 '
                            f"{digest}={digest_of(digest, content)} ")
    code, _, err = await cli(server, token_file, "get", "f", "-o", str(tmp_path / "out"),
                             "--digest", digest)
    assert code == 0, err
    assert (tmp_path / "out").read_bytes() == content
    await server.expect_log(f'op=get name="f" size=200000 bytes=200000 offset=0 '
                            f"{digest}={digest_of(digest, content)} ")


async def test_a_malformed_offer_is_a_non_fatal_bad_request(server, root):
    sock = raw_login(server)
    read_frame(sock)
    for offer in ('"blake3"', "[]", "[1]", '["BLAKE3"]'):
        sock.sendall(encode(FrameType.PUT, b'{"name":"x","size":1,"digests":%s}'
                            % offer.encode()))
        error = json.loads(read_frame(sock)[1:])
        assert (error["code"], error["fatal"]) == ("bad_request", False), offer
        assert "digests" in error["message"]
    sock.sendall(encode(FrameType.LIST, b"{}"))  # still READY
    assert read_frame(sock)[0] == FrameType.LISTING
    sock.close()


async def test_an_end_in_another_digest_is_fatal_and_stores_nothing(server, root):
    sock = raw_login(server)
    read_frame(sock)
    sock.sendall(encode(FrameType.PUT, PutRequest("x", 3, digests=("blake3",)).to_body()))
    assert json.loads(read_frame(sock)[1:])["digest"] == "blake3"
    sock.sendall(encode(FrameType.START, b'{"offset":0}') + b"abc"
                 + encode(FrameType.END, Digest(sha(b"abc")).to_body()))
    error = json.loads(read_frame(sock)[1:])
    assert (error["code"], error["fatal"]) == ("bad_request", True)
    assert "blake3" in error["message"]
    sock.close()
    await server.expect_log('op=put name="x" size=3 result=interrupted')
    assert visible(root) == []


class OldServer:
    """A files server from before digests were negotiated: its READY lists none,
    and it refuses members it does not know (PUT's ``digests``), as version 1 did."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.puts: list[dict[str, object]] = []
        self.ends: list[dict[str, object]] = []

    def serve_one(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            nonce = os.urandom(32)
            conn.sendall(encode(FrameType.CHALLENGE, b"\x01" + nonce))
            read_frame(conn)  # AUTH: not checked here
            conn.sendall(encode(FrameType.READY, b'{"version":1,"read_only":false,'
                                b'"max_size":null,"idle_timeout":null}'))
            try:
                frame = read_frame(conn)
            except ConnectionError:
                return
            put = json.loads(frame[1:])
            self.puts.append(put)
            if set(put) - {"name", "size", "mode", "force", "resume"}:
                conn.sendall(encode(FrameType.ERROR, b'{"code":"bad_request","message":'
                                    b'"unknown field(s) in PUT","fatal":false}'))
                return
            conn.sendall(encode(FrameType.ACCEPT, b'{"offset":0,"prefix_sha256":null}'))
            read_frame(conn)  # START
            data = b""
            while len(data) < put["size"]:  # type: ignore[operator]
                # No further than the file: END may already be behind it.
                data += conn.recv(min(65536, put["size"] - len(data)))  # type: ignore[operator]
            end = json.loads(read_frame(conn)[1:])
            self.ends.append(end)
            conn.sendall(encode(FrameType.DONE, json.dumps(
                {"name": put["name"], "size": len(data), "sha256": sha(data), "offset": 0}
            ).encode()))


async def test_a_new_client_speaks_sha256_to_an_old_server(tmp_path):
    old = OldServer()
    (tmp_path / "src").write_bytes(b"old times")

    def upload(digest: str) -> Result:
        with FilesClient.connect("127.0.0.1", old.port, token=TOKEN, timeout=10,
                                 digest=digest) as files, (tmp_path / "src").open("rb") as f:
            return files.put(f, "f")

    with old.listener:
        server = asyncio.create_task(asyncio.to_thread(old.serve_one))
        result = await asyncio.to_thread(upload, "auto")
        await server
        assert (result.digest, result.hash) == ("sha256", sha(b"old times"))
        assert "digests" not in old.puts[0] and old.ends == [{"sha256": sha(b"old times")}]
        # Insisting on BLAKE3: refused here, before any request.
        server = asyncio.create_task(asyncio.to_thread(old.serve_one))
        with pytest.raises(FilesError) as refused:
            await asyncio.to_thread(upload, "blake3")
        await server
        assert refused.value.exit_status == EXIT_REFUSED and "blake3" in str(refused.value)
        assert len(old.puts) == 1


def without_blake3(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import ``blake3`` (a platform without its wheel)."""
    hide = tmp_path / "no-blake3"
    hide.mkdir()
    (hide / "blake3.py").write_text('raise ImportError("blake3 hidden by the test")\n')
    path = [str(hide), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(path)}


async def test_without_blake3_the_server_starts_and_both_ends_agree_on_sha256(
        server, token_file, root, tmp_path):
    """BLAKE3 is optional at run time: a server without it lists SHA-256 alone,
    and a client without it offers SHA-256 alone; either way the transfer verifies."""
    env = without_blake3(tmp_path)
    content = os.urandom(100_000)
    (tmp_path / "src").write_bytes(content)
    # A client without BLAKE3, to a server with it.
    code, _, err = await run_sockhub("send", str(tmp_path / "src"), address(server), "--as",
                                     "f", "--token-file", str(token_file), env=env)
    assert code == 0, err
    await server.expect_log(f'op=put name="f" size=100000 bytes=100000 offset=0 '
                            f"sha256={sha(content)} ")
    # Insisting on BLAKE3 without it: a usage error, nothing sent.
    code, _, err = await run_sockhub("send", str(tmp_path / "src"), address(server), "--as",
                                     "g", "--digest", "blake3", "--token-file",
                                     str(token_file), env=env)
    assert code == EXIT_USAGE and b"blake3 is not available here" in err, err
    # A server without BLAKE3 starts, and lists SHA-256 alone.
    bare = await start_sockhub("files", "--port", "0", "--root", str(root), "--token-file",
                               str(token_file), "--loop", "asyncio", env=env)
    try:
        sock = raw_login(bare)
        assert json.loads(read_frame(sock)[1:])["digests"] == ["sha256"]
        sock.close()

        def download() -> Result:  # a client with BLAKE3 offers both and gets SHA-256
            with client(bare) as files:
                return files.get("f", tmp_path / "out")

        result = await asyncio.to_thread(download)
        assert (result.digest, result.hash) == ("sha256", sha(content))
        assert (tmp_path / "out").read_bytes() == content
        await bare.expect_log(f'op=get name="f" size=100000 bytes=100000 offset=0 '
                              f"sha256={sha(content)} ")
    finally:
        assert await bare.stop() == 0
    assert visible(root) == ["f"]


# --- Safety ---------------------------------------------------------------------------


async def test_names_escaping_the_root_are_refused(server, token_file, root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (root / "link").symlink_to(outside)
    (root / "filelink").symlink_to(outside / "secret")
    os.mkfifo(root / "fifo")
    source = tmp_path / "source"
    source.write_text("x")
    for name in ("../escape", "/etc/passwd", "a/../../escape", "link/planted", "filelink",
                 "fifo"):
        code, _, err = await cli(server, token_file, "send", str(source), "--as", name,
                                 "--force")
        assert code == EXIT_REFUSED, (name, err)
        assert b"bad_name" in err
    for name in ("link/secret", "filelink", "../outside/secret", "fifo"):
        code, out, err = await cli(server, token_file, "get", name, "-o", "-")
        assert code in (EXIT_REFUSED, EXIT_NOT_FOUND), (name, err)
        assert b"secret" not in out
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]

    def nul() -> str:
        with client(server) as files:
            try:
                files.delete("a\0b")
            except FilesError as exc:
                return exc.code
        return "accepted"

    assert await asyncio.to_thread(nul) == "bad_name"


async def test_overwrite_needs_force(server, token_file, root, tmp_path):
    (root / "f").write_text("old")
    source = tmp_path / "source"
    source.write_text("new")
    code, _, err = await cli(server, token_file, "send", str(source), "--as", "f")
    assert code == EXIT_EXISTS and b"--force" in err
    assert (root / "f").read_text() == "old"
    code, _, err = await cli(server, token_file, "send", str(source), "--as", "f", "--force")
    assert code == 0, err
    assert (root / "f").read_text() == "new"
    out = tmp_path / "out"
    out.write_text("mine")
    code, _, err = await cli(server, token_file, "get", "f", "-o", str(out))
    assert code == EXIT_EXISTS and out.read_text() == "mine"


async def test_a_wrong_token_is_refused_with_nothing_written(server, token_file, root, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"not-the-token-but-long-enough\n")
    wrong.chmod(0o600)
    source = tmp_path / "source"
    source.write_text("x")
    code, _, err = await run_sockhub("send", str(source), address(server), "--token-file",
                                     str(wrong))
    assert code == EXIT_CONNECTION and b"auth_failed" in err
    # By hand: a PUT right after a wrong answer is discarded unread.
    sock = raw_login(server, b"not-the-token-but-long-enough")
    sock.sendall(encode(FrameType.PUT, PutRequest("planted", 1).to_body())
                 + encode(FrameType.START, b'{"offset":0}') + b"x")
    answer = read_frame(sock)
    assert json.loads(answer[1:])["code"] == "auth_failed"
    sock.close()
    assert list(root.iterdir()) == []


async def test_read_only(token_file, root, tmp_path):
    (root / "f").write_text("keep")
    served = await serve(token_file, root, "--read-only")
    try:
        source = tmp_path / "source"
        source.write_text("x")
        code, _, err = await cli(served, token_file, "send", str(source), "--as", "g")
        assert code == EXIT_REFUSED and b"read_only" in err
        code, _, err = await cli(served, token_file, "rm", "f")
        assert code == EXIT_REFUSED and (root / "f").exists()
        code, out, _ = await cli(served, token_file, "get", "f", "-o", "-")
        assert (code, out) == (0, b"keep")
    finally:
        assert await served.stop() == 0


async def test_max_size_and_quota(token_file, root, tmp_path):
    (root / "existing").write_bytes(b"e" * 600)
    served = await serve(token_file, root, "--max-size", "1000", "--quota", "2000")
    try:
        big = tmp_path / "big"
        big.write_bytes(b"b" * 1001)
        code, _, err = await cli(served, token_file, "send", str(big))
        assert code == EXIT_REFUSED and b"too_large" in err
        fits = tmp_path / "fits"
        fits.write_bytes(b"f" * 1000)
        code, _, err = await cli(served, token_file, "send", str(fits), "--as", "one")
        assert code == 0, err
        code, _, err = await cli(served, token_file, "send", str(fits), "--as", "two")
        assert code == EXIT_REFUSED and b"quota" in err  # 600 + 1000 + 1000 > 2000
        # Replacing a file counts only the difference.
        code, _, err = await cli(served, token_file, "send", str(fits), "--as", "one", "--force")
        assert code == 0, err
        assert visible(root) == ["existing", "one"]
    finally:
        assert await served.stop() == 0


async def test_two_uploads_at_once(server, root, tmp_path):
    contents = {name: os.urandom(5_000_000) for name in ("a", "b")}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)

    def upload(name: str) -> str:
        with client(server) as files, (tmp_path / name).open("rb") as f:
            return files.put(f, f"up/{name}").hash

    results = await asyncio.gather(*(asyncio.to_thread(upload, n) for n in contents))
    assert results == [b3(contents["a"]), b3(contents["b"])]
    for name, data in contents.items():
        assert (root / "up" / name).read_bytes() == data


async def test_the_same_name_twice_at_once_is_busy(server, root):
    first = raw_login(server)
    read_frame(first)
    first.sendall(encode(FrameType.PUT, PutRequest("same", 10).to_body()))
    assert read_frame(first)[0] == FrameType.ACCEPT

    def second() -> str:
        with client(server) as files:
            try:
                files.delete("same")
            except FilesError as exc:
                return exc.code
        return "deleted"

    # The name does not exist yet, only its upload: rm says not_found, PUT busy.
    assert await asyncio.to_thread(second) == "not_found"
    other = raw_login(server)
    read_frame(other)
    other.sendall(encode(FrameType.PUT, PutRequest("same", 10).to_body()))
    answer = read_frame(other)
    assert json.loads(answer[1:])["code"] == "busy"
    first.close()
    other.close()


async def test_ls_and_rm(server, token_file, root):
    (root / "d").mkdir()
    (root / "d" / "x").write_text("x")
    (root / "f").write_text("f")
    code, out, _ = await cli(server, token_file, "ls")
    assert out.decode().split() == ["d/", "f"]
    code, _, _ = await cli(server, token_file, "rm", "f")
    assert code == 0 and not (root / "f").exists()
    code, _, err = await cli(server, token_file, "rm", "f")
    assert code == EXIT_NOT_FOUND
    code, _, err = await cli(server, token_file, "rm", "d")
    assert code == EXIT_REFUSED and b"is_directory" in err


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_tls_both_ways_on_either_loop(token_file, root, tmp_path, loop):
    """Over TLS (and on uvloop) the engine copies the file in chunks: same bytes, same hash."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    args = ["--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")]
    served = await start_sockhub("files", "--port", "0", "--root", str(root), "--token-file",
                                 str(token_file), "--loop", loop,
                                 *(args if loop == "asyncio" else []))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    content = os.urandom(3_000_000)
    source = tmp_path / "source"
    source.write_bytes(content)

    def transfer() -> bytes:
        tls = context if loop == "asyncio" else None
        (port,) = served.ports.values()  # named "files, tls" or "files"
        with FilesClient.connect("127.0.0.1", port, token=TOKEN, tls=tls,
                                 server_hostname="localhost") as files, source.open("rb") as f:
            files.put(f, "f")
            files.get("f", tmp_path / "back")
        return (tmp_path / "back").read_bytes()

    try:
        assert await asyncio.to_thread(transfer) == content
        assert (root / "f").read_bytes() == content
    finally:
        assert await served.stop() == 0


async def test_a_fifo_at_the_part_name_is_refused_and_the_server_goes_on(server, root, tmp_path):
    from sockhub.services.files_store import part_path

    os.mkfifo(part_path(root / "up"), 0o600)  # planted by someone with a shell on the host
    source = tmp_path / "source"
    source.write_bytes(b"hello")

    def put(name: str) -> None:
        with client(server) as files, source.open("rb") as f:
            files.put(f, name)

    with pytest.raises(FilesError) as refused:
        await asyncio.to_thread(put, "up")
    assert refused.value.code == "io_error"
    assert "not a regular file" in str(refused.value)
    await asyncio.to_thread(put, "other")  # the server is not stuck on the FIFO
    assert (root / "other").read_bytes() == b"hello"
