"""``sockhub serve exec`` and ``sockhub exec`` as real processes (the server on uvloop)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest
import trustme

from helpers import write_token
from net import STEP, FirstLine, wait_gone
from proc import run_sockhub, start_sockhub
from sockhub.client.exec import ExecClient

TOKEN = b"0123456789abcdef-test-token-of-32"
PY = sys.executable


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return write_token(tmp_path / "token", TOKEN)


@pytest.fixture
async def exec_serve(token_file):
    """Start ``sockhub serve exec --port 0 --token-file F ARGS``; stop it after the test.

    With no ``--allow``/``--allow-shell`` in ARGS it adds ``--allow-any``: these
    tests run Python one-liners and assorted coreutils.
    """
    served = []

    async def start(*args: str, env: dict[str, str] | None = None):
        if not {"--allow", "--allow-any", "--allow-shell"} & set(args):
            args = (*args, "--allow-any")
        server = await start_sockhub("exec", "--port", "0", "--token-file", str(token_file),
                                     *args, env=env)
        served.append(server)
        (port,) = server.ports.values()  # labelled "exec" or "exec, tls"
        return port

    yield start
    for server in served:
        assert await server.stop() == 0


async def sockhub_exec(port: int, token_file: Path, *args: str, stdin: bytes = b"",
                       env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    return await run_sockhub("exec", f"127.0.0.1:{port}", "--token-file", str(token_file),
                             *args, stdin=stdin, env=env)




async def test_output_streams_and_exit_status_pass_through(exec_serve, token_file):
    port = await exec_serve()
    code = ("import sys; sys.stdout.buffer.write(bytes(range(256))); "
            "sys.stderr.buffer.write(b'\\xff\\x00err'); sys.exit(3)")
    status, out, err = await sockhub_exec(port, token_file, "--", PY, "-c", code)
    assert (status, out, err) == (3, bytes(range(256)), b"\xff\x00err")


async def test_stdin_is_forwarded_unless_n(exec_serve, token_file):
    port = await exec_serve()
    data = os.urandom(300_000)
    assert await sockhub_exec(port, token_file, "--", "cat", stdin=data) == (0, data, b"")
    assert await sockhub_exec(port, token_file, "-n", "--", "cat", stdin=data) == (0, b"", b"")


async def test_signals_timeouts_and_refusals_map_to_exit_statuses(exec_serve, token_file):
    port = await exec_serve("--timeout", "0.5", "--allow", PY, "--allow", "sleep")
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    status, _, err = await sockhub_exec(port, token_file, "--", PY, "-c", kill)
    assert status == 137 and err == b""
    status, _, err = await sockhub_exec(port, token_file, "--", "sleep", "10")
    assert status == 124
    assert err.decode().startswith("sockhub exec: sleep: timed out; killed by SIGTERM after 0.")
    status, _, err = await sockhub_exec(port, token_file, "--", "ls")
    assert status == 126
    assert err == b"sockhub exec: ls is not in this server's allow list\n"


async def test_a_missing_command_exits_127(exec_serve, token_file):
    port = await exec_serve()
    status, _, err = await sockhub_exec(port, token_file, "--", "no-such-command-here")
    assert (status, err) == (127, b"sockhub exec: no such command: no-such-command-here\n")


async def test_a_wrong_token_exits_255_and_runs_nothing(exec_serve, tmp_path):
    port = await exec_serve("--cwd", str(tmp_path))
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"not the right token, long enough")
    wrong.chmod(0o600)
    status, out, err = await sockhub_exec(port, wrong, "--", "touch", "marker")
    assert (status, out) == (255, b"")
    assert err == b"sockhub exec: authentication failed: wrong token\n"
    assert not (tmp_path / "marker").exists()


async def test_interactive_prompt_one_command_per_line(exec_serve, token_file):
    port = await exec_serve()
    lines = b"echo hello\n\nfalse\necho 'two  words' \"x y\"\nexit\necho never\n"
    status, out, err = await sockhub_exec(port, token_file, stdin=lines)
    assert out == b"hello\ntwo  words x y\n"
    assert status == 0
    assert err.decode().startswith("sockhub exec: [exit 1 after ")


async def test_shell_mode_needs_allow_shell(exec_serve, token_file):
    port = await exec_serve("--allow-shell")
    status, out, _ = await sockhub_exec(port, token_file, "--shell", "--",
                                        "echo $((20 + 22)) | cat")
    assert (status, out) == (0, b"42\n")
    plain = await exec_serve("--allow", "echo")
    status, _, err = await sockhub_exec(plain, token_file, "--shell", "--", "echo hi")
    assert (status, err) == (126, b"sockhub exec: sh is not in this server's allow list "
                             b"(start it with --allow-shell to permit sh -c)\n")


async def test_killing_the_client_kills_the_remote_command(exec_serve, token_file):
    port = await exec_serve()
    code = ("import os, subprocess; child = subprocess.Popen(['sleep', '60']); "
            "print(os.getpid(), child.pid, flush=True); child.wait()")
    client = await asyncio.create_subprocess_exec(
        PY, "-m", "sockhub", "exec", f"127.0.0.1:{port}", "--token-file", str(token_file),
        "-n", "--", PY, "-c", code, stdout=asyncio.subprocess.PIPE)
    assert client.stdout is not None
    pids = list(map(int, (await asyncio.wait_for(client.stdout.readline(), STEP)).split()))
    client.kill()
    await client.wait()
    for pid in pids:
        await wait_gone(pid)


async def test_a_closed_stdout_stops_the_remote_command_like_sigpipe(exec_serve, token_file,
                                                                     tmp_path):
    port = await exec_serve()
    status, errors = tmp_path / "status", tmp_path / "stderr"
    pipeline = await asyncio.create_subprocess_shell(
        f"{{ {PY} -m sockhub exec 127.0.0.1:{port} --token-file {token_file} -n -- yes "
        f"2>{errors}; echo $? >{status}; }} | head -1", stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(pipeline.communicate(), STEP)
    assert out == b"y\n"
    assert status.read_text() == "141\n" and errors.read_bytes() == b""


async def test_ctrl_c_cancels_the_remote_command(exec_serve, token_file):
    port = await exec_serve()
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    client = await asyncio.create_subprocess_exec(
        PY, "-m", "sockhub", "exec", f"127.0.0.1:{port}", "--token-file", str(token_file),
        "-n", "--", PY, "-c", code,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert client.stdout is not None and client.stderr is not None
    pid = int(await asyncio.wait_for(client.stdout.readline(), STEP))
    client.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(client.wait(), STEP) == 130
    assert b"cancelled; killed by SIGTERM" in await client.stderr.read()
    await wait_gone(pid)


async def test_a_generated_token_in_the_default_place_just_works(tmp_path):
    env = {"XDG_STATE_HOME": str(tmp_path)}
    served = await start_sockhub("exec", "--port", "0", "--allow", "echo", env=env)
    try:
        path = tmp_path / "sockhub" / "exec-token"
        assert path.stat().st_mode & 0o777 == 0o600
        token = path.read_text().strip()
        log = "\n".join(served.log)
        assert f"generated a token in {path}" in log and token not in log
        status, out, _ = await run_sockhub("exec", f"127.0.0.1:{served.ports['exec']}",
                                           "--", "echo", "ok", env=env)
        assert (status, out) == (0, b"ok\n")
    finally:
        assert await served.stop() == 0
    assert token not in "\n".join(served.log)


async def test_tls_with_a_private_ca(exec_serve, token_file, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    port = await exec_serve("--tls-cert", str(tmp_path / "cert.pem"),
                            "--tls-key", str(tmp_path / "key.pem"))
    status, out, _ = await sockhub_exec(port, token_file, "--cafile", str(tmp_path / "ca.pem"),
                                        "--server-name", "localhost", "--", "echo", "sealed")
    assert (status, out) == (0, b"sealed\n")
    # Without --tls both sides wait for the other to speak first.
    status, _, err = await sockhub_exec(port, token_file, "--connect-timeout", "0.5", "--",
                                        "echo", "plain")
    assert (status, err) == (255, f"sockhub exec: 127.0.0.1:{port}: no answer to login "
                             "in 0.5s\n".encode())


async def test_a_public_address_without_tls_needs_insecure(token_file):
    status, _, err = await run_sockhub("serve", "exec", "--host", "0.0.0.0", "--port", "0",
                                       "--token-file", str(token_file), "--allow", "echo")
    assert status == 2
    assert b"without TLS would send commands and their output in clear text" in err
    served = await start_sockhub("exec", "--host", "0.0.0.0", "--port", "0",
                                 "--token-file", str(token_file), "--insecure", "--allow", "echo")
    try:
        assert any("WITHOUT TLS (--insecure)" in line for line in served.log)
    finally:
        assert await served.stop() == 0


async def test_token_files_others_can_read_are_refused_by_both_sides(token_file):
    token_file.chmod(0o644)
    status, _, err = await run_sockhub("serve", "exec", "--port", "0",
                                       "--token-file", str(token_file), "--allow", "echo")
    assert status == 2 and b"chmod 600" in err
    status, _, err = await run_sockhub("exec", "127.0.0.1:9", "--token-file", str(token_file),
                                       "--", "true")
    assert status == 2 and b"accessible to group or others (mode 644)" in err


async def test_exec_options_belong_to_exec(token_file):
    status, _, err = await run_sockhub("serve", "echo", "--port", "0", "--allow", "ls")
    assert status == 2 and b"apply to 'sockhub serve exec' only" in err
    status, _, err = await run_sockhub("serve", "exec", "--port", "0", "--token-file",
                                       str(token_file), "--env", "NOEQUALS")
    assert status == 2 and b"--env takes KEY=VALUE" in err
    status, _, err = await run_sockhub("serve", "exec", "--workers", "2", "--port", "0",
                                       "--token-file", str(token_file))
    assert status == 2 and b"cannot run with --workers" in err


# --- What may run --------------------------------------------------------------------


async def test_serve_exec_refuses_to_start_without_an_allow_list(token_file, tmp_path):
    status, out, err = await run_sockhub("serve", "exec", "--port", "0",
                                         "--token-file", str(token_file))
    assert (status, out) == (2, b"")
    text = err.decode()
    assert text.startswith("sockhub serve: exec: no allow list: every token holder could run "
                           "anything, shells included.\n")
    assert "  sockhub serve exec --allow uptime --allow df\n" in text
    assert "  sockhub serve exec --allow-any\n" in text
    config = tmp_path / "exec.toml"
    config.write_text(f'[[service]]\nservice = "exec"\nport = 0\n'
                      f'options = {{ token_file = "{token_file}" }}\n')
    status, _, err = await run_sockhub("serve", "--config", str(config))
    assert status == 2 and b'allow = ["uptime", "df"], or allow_any = true' in err
    status, _, err = await run_sockhub("serve", "exec", "--port", "0", "--token-file",
                                       str(token_file), "--allow", "ls", "--allow-any")
    assert (status, err) == (2, b"sockhub serve: exec: give an allow list or allow_any "
                             b"(--allow or --allow-any), not both\n")


async def test_allow_any_and_runners_in_the_allow_list_are_warned_about(exec_serve, token_file):
    served = await start_sockhub("exec", "--port", "0", "--token-file", str(token_file),
                                 "--allow-any")
    try:
        assert any("WARNING exec: any command allowed (--allow-any): every token holder can "
                   "run anything, shells included" in line for line in served.log)
    finally:
        assert await served.stop() == 0
    served = await start_sockhub("exec", "--port", "0", "--token-file", str(token_file),
                                 "--allow", "df", "--allow", "env")
    try:
        assert any("WARNING exec: the allow list has env, which can run any other command"
                   in line for line in served.log)
    finally:
        assert await served.stop() == 0


#: Ways to get a shell out of a program that is not one (each makes a marker file).
WRAPPERS = [
    "env sh -c 'touch m1'",
    "nice sh -c 'touch m2'",
    "timeout 5 sh -c 'touch m3'",
    "xargs sh -c 'touch m4'",
    "find . -maxdepth 0 -exec sh -c 'touch m5' ';'",
    "python3 -c 'open(\"m6\", \"w\")'",
    "perl -e 'open(F, \">m7\")'",
]


async def test_no_wrapper_gets_a_shell_past_the_allow_list(token_file, tmp_path):
    refused, ran = tmp_path / "refused", tmp_path / "ran"
    refused.mkdir()
    ran.mkdir()
    script = "".join(f"{line}\n" for line in WRAPPERS).encode()
    served = await start_sockhub("exec", "--port", "0", "--token-file", str(token_file),
                                 "--allow", "echo", "--cwd", str(refused))
    try:
        address = f"127.0.0.1:{served.ports['exec']}"
        status, out, err = await run_sockhub("exec", address, "--token-file", str(token_file),
                                             stdin=script)
        assert (status, out) == (126, b"")
        assert err.decode().splitlines() == [
            f"sockhub exec: {line.split()[0]} is not in this server's allow list"
            for line in WRAPPERS]
        status, _, err = await run_sockhub("exec", address, "--token-file", str(token_file),
                                           "--", "env", "sh", "-c", "id")
        assert (status, err) == (126, b"sockhub exec: env is not in this server's allow list\n")
    finally:
        assert await served.stop() == 0
    assert list(refused.iterdir()) == []
    audit = [line for line in served.log if " exec peer=" in line]
    assert len(audit) == len(WRAPPERS) + 1
    assert all(line.endswith("refused=not_allowed") for line in audit)
    # The same lines do get a shell where anything may run: the test is not vacuous.
    served = await start_sockhub("exec", "--port", "0", "--token-file", str(token_file),
                                 "--allow-any", "--cwd", str(ran))
    try:
        status, _, err = await run_sockhub("exec", f"127.0.0.1:{served.ports['exec']}",
                                           "--token-file", str(token_file), stdin=script)
        assert (status, err) == (0, b"")
    finally:
        assert await served.stop() == 0
    assert sorted(p.name for p in ran.iterdir()) == [f"m{n}" for n in range(1, 8)]


# --- The server's end ------------------------------------------------------------------


async def test_kill_9_of_the_server_takes_its_running_command_down(token_file):
    served = await start_sockhub("exec", "--port", "0", "--token-file", str(token_file),
                                 "--allow", "sh")
    client = await ExecClient.connect("127.0.0.1", served.ports["exec"], token=TOKEN)
    first = FirstLine()
    task = asyncio.create_task(client.run(["sh", "-c", "echo $$; exec sleep 300"],
                                          on_stdout=first))
    try:
        pid = int(await first.line())
        served.process.kill()  # SIGKILL: the server gets no chance to clean up
        await served.process.wait()
        await wait_gone(pid)  # the kernel killed it (PR_SET_PDEATHSIG)
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await client.close()
        await served.stop()
