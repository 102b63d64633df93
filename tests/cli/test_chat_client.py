"""``sockhub chat``: the pure parts, then the client as a real process on a pseudo-terminal.

The process tests start a real ``sockhub serve chat`` and drive the client
with pexpect. prompt_toolkit paints the screen with escape sequences and
cursor moves, so :class:`Term` strips them and matches the text that is
left. No step sleeps to let something happen: each waits, with a timeout,
for the output it needs.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pexpect
import pytest

from sockhub.client.chat.client import MAX_LINE, Backoff
from sockhub.client.chat.complete import complete
from sockhub.client.chat.lines import Kind, parse_server_line, sanitize
from sockhub.client.chat.render import mentions, nick_style, render
from sockhub.client.chat.state import ChatState, Resume

WAIT = 10.0  # for one expected line; generous for a loaded 2-core machine
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(chat\)")
ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, modes
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window titles
    r"|\x1b[()][A-Za-z0-9]"  # character sets
    r"|\x1b[=>78DEHMNOZc]"  # the two-character ones
)


def _as_text(escape: re.Match[str]) -> str:
    # prompt_toolkit skips over blank cells with "cursor forward" (CSI n C).
    if m := re.fullmatch(r"\x1b\[(\d*)C", escape.group()):
        return " " * int(m.group(1) or 1)
    return ""


# Pure: parsing server lines ---------------------------------------------

LINES = [
    ("12:01:33 #lobby <alice> hi there", Kind.MESSAGE,
     {"time": "12:01:33", "room": "#lobby", "nick": "alice", "text": "hi there"}),
    ("12:01:33 #lobby ** alice waves at bob", Kind.MESSAGE,
     {"nick": "alice", "text": "waves at bob", "action": True}),
    ("12:01:33 #lobby ** alice joined", Kind.MESSAGE,
     {"nick": "alice", "text": "joined", "action": True}),  # an action cannot fake an event
    ("12:01:33 #lobby * alice did something new", Kind.OTHER, {}),
    ("12:01:33 #lobby * bob joined", Kind.JOIN, {"room": "#lobby", "nick": "bob"}),
    ("12:01:33 #dev * bob left", Kind.PART, {"room": "#dev", "nick": "bob", "text": ""}),
    ("12:01:33 #dev * bob left (lunch (long))", Kind.PART, {"text": "lunch (long)"}),
    ("12:01:33 #dev * bob was kicked by carol (spam)", Kind.KICK,
     {"nick": "bob", "other": "carol", "text": "spam"}),
    ("12:01:33 #dev * bob was kicked by carol", Kind.KICK, {"other": "carol", "text": ""}),
    ("12:01:33 #dev * carol set the topic: ship it", Kind.TOPIC,
     {"nick": "carol", "text": "ship it"}),
    ("12:01:33 #dev * carol cleared the topic", Kind.TOPIC, {"nick": "carol", "text": ""}),
    ("12:01:33 #dev * carol banned bob!*@*", Kind.BAN,
     {"nick": "carol", "text": "bob!*@*", "added": True}),
    ("12:01:33 #dev * carol unbanned bob", Kind.BAN, {"text": "bob", "added": False}),
    ("12:01:33 * bob quit (connection lost)", Kind.QUIT,
     {"nick": "bob", "text": "connection lost"}),
    ("12:01:33 * bob quit", Kind.QUIT, {"nick": "bob", "text": ""}),
    ("12:01:33 * bob is now known as [bob]", Kind.NICK, {"nick": "bob", "other": "[bob]"}),
    ("12:01:33 [pm] <bob> psst", Kind.PRIVATE, {"nick": "bob", "text": "psst"}),
    ("12:01:33 [pm] ** bob winks", Kind.PRIVATE, {"nick": "bob", "action": True}),
    ("12:01:33 [pm to x]] <alice> hi", Kind.PRIVATE_SENT,
     {"other": "x]", "nick": "alice", "text": "hi"}),
    ("[history] 2026-11-22 11:58:02 #lobby <bob> earlier", Kind.HISTORY,
     {"time": "2026-11-22 11:58:02", "room": "#lobby", "nick": "bob", "text": "earlier"}),
    ("[history] 2026-11-22 11:58:02 #lobby ** bob waved", Kind.HISTORY,
     {"nick": "bob", "action": True}),
    ("-- you are alice", Kind.INFO, {"text": "you are alice"}),
    ("error: nick alice is already in use", Kind.ERROR,
     {"text": "nick alice is already in use"}),
    ("something else entirely", Kind.OTHER, {}),
    ("12:01:33 #lobby <alice> <b> is not a nick", Kind.MESSAGE,
     {"nick": "alice", "text": "<b> is not a nick"}),
]


@pytest.mark.parametrize(("raw", "kind", "fields"), LINES, ids=[raw for raw, _, _ in LINES])
def test_parse_server_line(raw, kind, fields):
    line = parse_server_line(raw)
    assert line.kind is kind
    for name, value in fields.items():
        assert getattr(line, name) == value, name


@pytest.mark.parametrize("raw", [raw for raw, _, _ in LINES])
def test_render_keeps_the_text_and_colours_nicks(raw):
    fragments = render(parse_server_line(raw), own="alice")
    assert "".join(text for _, text in fragments) == raw
    line = parse_server_line(raw)
    if line.nick:
        styles = [style for style, text in fragments if text == line.nick]
        assert styles == [nick_style(line.nick, "alice")]


def test_render_styles():
    line = parse_server_line("12:01:33 #lobby <bob> hey ALICE, look")
    styles = dict((text, style) for style, text in render(line, own="alice"))
    assert "class:mention" in styles["hey ALICE, look"]
    assert "class:own" not in styles["bob"]
    assert "class:own" in nick_style("Alice", own="alice")
    assert nick_style("Bob") == nick_style("bob")  # stable, case-insensitive
    assert render(parse_server_line("error: no"))[0][0] == "class:error"
    assert render(parse_server_line("-- hi"))[0][0] == "class:info"
    assert mentions("alice: hi", "alice")
    assert not mentions("malice aforethought", "alice")


def test_sanitize_neutralises_terminal_escapes():
    assert sanitize("hi \x1b[2J\x07there\x9b") == "hi ?[2J?there?"
    assert sanitize("tab\tstays") == "tab\tstays"


# Pure: state, completion, back-off ----------------------------------------


def feed(state: ChatState, *lines: str) -> ChatState:
    for raw in lines:
        state.apply(parse_server_line(raw))
    return state


def registered() -> ChatState:
    return feed(
        ChatState(),
        "-- you are alice",
        "12:00:00 #lobby * alice joined",
        "-- in #lobby: alice bob carol",
        "12:00:01 #dev * alice joined",
        "-- in #dev: alice dave",
        "12:00:02 #dev * erin joined",
    )


def test_state_follows_nick_rooms_and_members():
    state = registered()
    assert state.nick == "alice"
    assert state.current == "#dev"
    assert list(state.rooms.values()) == ["#lobby", "#dev"]
    assert state.nicks("#dev") == ["dave", "erin"]
    feed(state, "-- talking in #lobby")
    assert state.current == "#lobby"
    feed(state, "12:00:03 * bob is now known as Bobby", "12:00:04 * carol quit (bye)")
    assert state.nicks("#lobby") == ["Bobby"]
    feed(state, "12:00:05 * alice is now known as al")
    assert state.nick == "al"
    feed(state, "-- in #dev (3): @dave erin al")  # a /who reply: not a join
    assert state.current == "#lobby"
    feed(state, "12:00:06 #lobby * al left")
    assert (state.current, list(state.rooms)) == ("#dev", ["#dev"])
    feed(state, "12:00:07 #dev * al was kicked by dave (out)")
    assert (state.current, state.rooms) == (None, {})
    feed(state, "--   #games (4): play", "-- 2 room(s):")
    assert "#games" in state.room_names()


def test_connection_lost_gives_what_to_rejoin():
    state = feed(registered(), "-- talking in #lobby")
    resume = state.connection_lost()
    assert resume == Resume("alice", ("#lobby", "#dev"), "#lobby")
    assert resume.rejoin_lines() == ["/join #dev", "/join #lobby"]
    assert state.nick is None and not state.rooms
    assert state.connection_lost() is None  # not registered: nothing to restore
    assert Resume("a", (), None).rejoin_lines() == []


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("/jo", ["/join "]),
        ("/J", ["/join "]),
        ("/b", ["/ban ", "/bans "]),
        ("//jo", []),
        ("/msg ", ["bob ", "carol ", "dave ", "erin "]),
        ("/msg D", ["dave "]),
        ("/join #", ["#dev ", "#lobby "]),
        ("/part #d", ["#dev "]),
        ("/kick e", ["erin "]),  # nicks of the current room (#dev)
        ("/kick #lobby b", ["bob "]),
        ("/kick bob re", []),  # a reason
        ("/ban #dev c", ["carol "]),  # anyone seen, present or not
        ("/who #l", ["#lobby "]),
        ("", ["dave: ", "erin: "]),
        ("/help jo", ["join "]),
        ("/nick a", []),
        ("da", ["dave: "]),
        ("hi e", ["erin "]),
    ],
)
def test_complete(typed, expected):
    got = complete(registered(), typed)
    assert [text for text, _ in got] == expected
    word = typed.split(" ")[-1]
    assert all(start == -len(word) for _, start in got)


def test_backoff_doubles_to_a_cap_with_jitter():
    backoff = Backoff()
    assert [backoff.delay(n, 0.0) for n in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.delay(0, 0.999) == pytest.approx(0.375, abs=0.001)
    assert 22.5 <= backoff.delay(10_000, 0.5) <= 30  # no overflow after days of retrying
    assert Backoff(initial=1, factor=3, maximum=5, jitter=0).delay(1, 0.7) == 3


# Real processes -------------------------------------------------------------

class Server:
    """``sockhub serve chat`` as a subprocess; stderr is read by a thread so it never blocks."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sockhub", "serve", "chat", "--port", str(port),
             "--data-dir", str(data_dir), "--flood-rate", "none"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._port: int | None = None
        self._listening = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._listening.wait(2 * WAIT) or self._port is None:
            self.stop(signal.SIGKILL)
            raise AssertionError("chat server did not start:\n" + "\n".join(self.log))

    @property
    def port(self) -> int:
        assert self._port is not None
        return self._port

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if (m := LISTENING.search(line)) and self._port is None:
                self._port = int(m.group(1))
                self._listening.set()
        self._listening.set()  # exited: stop waiting

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the server (SIGTERM: graceful) and wait for it; SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(WAIT)
            raise


class Participant:
    """A second user speaking the line protocol over a plain socket."""

    def __init__(self, port: int, nick: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.buffer = b""
        self.seen: list[str] = []
        self.send(nick)
        self.expect(rf"^-- you are {re.escape(nick)}$")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def expect(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """The first line from now on matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                raw, _, self.buffer = self.buffer.partition(b"\n")
                line = raw.decode(errors="replace").rstrip("\r")
                self.seen.append(line)
                if m := re.search(pattern, line):
                    return m
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r}; got:\n" + "\n".join(self.seen))
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise AssertionError(f"closed before {pattern!r}; got:\n" + "\n".join(self.seen))
            self.buffer += data

    def close(self) -> None:
        self.sock.close()


class Term:
    """``sockhub chat`` on a pseudo-terminal; matches the screen's text without escapes."""

    def __init__(self, port: int, *args: str) -> None:
        # pexpect does not answer cursor position requests as a terminal does;
        # without NO_CPR prompt_toolkit waits 2 s for the answer, then warns.
        env = {**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
        env.pop("NO_COLOR", None)
        self.child = pexpect.spawn(
            sys.executable, ["-m", "sockhub", "chat", f"127.0.0.1:{port}", *args],
            env=env, dimensions=(24, 100), encoding="utf-8", codec_errors="replace",
        )
        self.raw = ""
        self.pos = 0  # matching starts where the last match ended
        self.exited = False

    @property
    def text(self) -> str:
        """The output without escapes; a cursor move right counts as spaces, as it looks."""
        return ANSI.sub(_as_text, self.raw).replace("\r", "")

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def _read(self, timeout: float) -> None:
        try:
            self.raw += self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            self.exited = True

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """Wait until ``pattern`` shows after the previous match; return the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            if m := regex.search(self.text, self.pos):
                self.pos = m.end()
                return m
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.exited:
                why = "exited" if self.exited else f"not within {timeout} s"
                raise AssertionError(
                    f"{pattern!r}: {why}; screen since the last match:\n{self.text[self.pos:]}"
                )
            self._read(min(remaining, 0.5))

    def wait_exit(self, timeout: float = WAIT) -> int:
        """Wait for the client to exit; its status."""
        deadline = time.monotonic() + timeout
        while not self.exited and time.monotonic() < deadline:
            self._read(min(0.5, deadline - time.monotonic()))
        if self.child.isalive():  # output over; wait on a pidfd for the exit itself
            with contextlib.suppress(ProcessLookupError):
                fd = os.pidfd_open(self.child.pid)
                try:
                    select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
                finally:
                    os.close(fd)
        assert not self.child.isalive(), f"still running; screen:\n{self.text[self.pos:]}"
        assert "Traceback" not in self.text, self.text
        self.child.close()
        status = self.child.exitstatus
        assert status is not None, f"killed by signal {self.child.signalstatus}"
        return status

    def close(self) -> None:
        if not self.child.closed:
            self.child.close(force=True)


@pytest.fixture
def cleanup():
    """Collect servers, clients and participants; stop whatever is left after the test."""
    things: list[Server | Term | Participant] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, Server):
            thing.stop()
        else:
            thing.close()


@pytest.fixture
def start(tmp_path, cleanup):
    """``start.server()``, ``start.term(port, args...)``, ``start.user(port, nick)``."""

    class Start:
        @staticmethod
        def server(port: int = 0) -> Server:
            server = Server(tmp_path, port)
            cleanup.append(server)
            return server

        @staticmethod
        def term(port: int, *args: str) -> Term:
            term = Term(port, *args)
            cleanup.append(term)
            return term

        @staticmethod
        def user(port: int, nick: str) -> Participant:
            user = Participant(port, nick)
            cleanup.append(user)
            return user

    return Start


def joined(term: Term, room: str = "#lobby") -> None:
    """Wait until the client is in ``room`` with its prompt showing it."""
    term.wait_for(rf"-- in {room}: ")
    term.wait_for(rf"{room}>")


@pytest.mark.timeout(40)
def test_messages_both_ways_while_a_line_is_half_typed(start):
    server = start.server()
    bob = start.user(server.port, "bob")
    alice = start.term(server.port, "--nick", "alice")
    alice.wait_for("-- you are alice")
    joined(alice)
    alice.send("hello bob\r")
    bob.expect(r"^\d\d:\d\d:\d\d #lobby <alice> hello bob$")
    alice.wait_for(r"#lobby <alice> hello bob")

    alice.send("so-far")
    alice.wait_for("so-far")  # the client has it in its input line
    bob.send("hi alice")
    alice.wait_for(r"\d\d:\d\d:\d\d #lobby <bob> hi alice\n")
    alice.wait_for(r"#lobby> ?so-far")  # the prompt is drawn again below, text intact
    alice.send(" so good\r")
    bob.expect(r"#lobby <alice> so-far so good$")


@pytest.mark.timeout(40)
def test_tab_completes_commands_and_nicks(start):
    server = start.server()
    bob = start.user(server.port, "bob")
    alice = start.term(server.port, "--nick", "alice")
    joined(alice)
    alice.send("/jo\t")
    alice.wait_for("/join")
    alice.send("#dev\r")
    joined(alice, "#dev")

    alice.send("/msg b\t")
    alice.wait_for("/msg bob")
    alice.send("psst\r")
    bob.expect(r"\[pm\] <alice> psst$")


@pytest.mark.timeout(40)
def test_nick_in_use_shows_the_error_and_takes_another(start):
    server = start.server()
    holder = start.user(server.port, "alice")
    alice = start.term(server.port, "--nick", "alice")
    alice.wait_for("error: nick alice is already in use")
    alice.wait_for("nick>")
    alice.send("alice2\r")
    alice.wait_for("-- you are alice2")
    joined(alice)
    alice.send("it is me\r")
    holder.expect(r"#lobby <alice2> it is me$")


@pytest.mark.timeout(45)
def test_reconnects_to_a_restarted_server_and_rejoins(start):
    server = start.server()
    alice = start.term(server.port, "--nick", "alice")
    joined(alice)
    alice.send("/join #dev\r")
    joined(alice, "#dev")

    server.stop(signal.SIGTERM)
    alice.wait_for("-- server shutting down")
    alice.wait_for(r"-- connection lost; reconnecting in \d+\.\d s")
    alice.send("lost words\r")
    alice.wait_for("-- not connected; not sent: lost words")

    restarted = start.server(server.port)
    alice.wait_for("-- reconnected to", timeout=2.5 * WAIT)
    alice.wait_for("-- you are alice")
    joined(alice, "#dev")
    bob = start.user(restarted.port, "bob")
    bob.send("/join #dev")
    bob.expect(r"^-- in #dev: alice bob$")
    alice.send("back again\r")
    bob.expect(r"#dev <alice> back again$")
    assert not any("lost words" in line for line in bob.seen)


@pytest.mark.timeout(40)
def test_without_reconnect_a_lost_server_exits_1(start):
    server = start.server()
    alice = start.term(server.port, "--nick", "alice", "--no-reconnect")
    joined(alice)
    server.stop(signal.SIGKILL)
    alice.wait_for("-- connection lost")
    assert alice.wait_exit() == 1


@pytest.mark.timeout(40)
@pytest.mark.parametrize(
    ("keys", "status", "reason"),
    [("/quit see you\r", 0, " \\(see you\\)"), ("\x04", 0, ""), ("\x03", 130, "")],
    ids=["quit-command", "ctrl-d", "ctrl-c"],
)
def test_quit(start, keys, status, reason):
    server = start.server()
    bob = start.user(server.port, "bob")
    alice = start.term(server.port, "--nick", "alice")
    joined(alice)
    alice.send(keys)
    bob.expect(rf"\* alice quit{reason}$")
    assert alice.wait_exit() == status


@pytest.mark.timeout(40)
def test_piped_input_works_line_by_line(start):
    server = start.server()
    bob = start.user(server.port, "bob")
    too_long = b"x" * MAX_LINE  # the server would close the connection for it
    script = b"hello from a script\n" + too_long + b"\n/join #dev\nin dev\n"
    done = subprocess.run(
        [sys.executable, "-m", "sockhub", "chat", f"127.0.0.1:{server.port}", "--nick", "bot"],
        input=script, capture_output=True, timeout=30,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    out = done.stdout.decode()
    assert "\x1b" not in out
    assert "-- you are bot\n" in out
    assert "-- line too long (the server takes at most 8192 bytes); not sent\n" in out
    assert re.search(r"^\d\d:\d\d:\d\d #dev <bot> in dev$", out, re.M)
    assert out.rstrip().endswith("-- bye")
    bob.expect(r"#lobby <bot> hello from a script$")
    bob.expect(r"\* bot quit$")


@pytest.mark.timeout(40)
def test_without_a_nick_the_server_picks_a_guest_nick(start):
    server = start.server()
    done = subprocess.run(
        [sys.executable, "-m", "sockhub", "chat", f"127.0.0.1:{server.port}"],
        input=b"hello\n", capture_output=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    guest = re.search(r"^-- you are (guest-\d{4})$", out, re.M)
    assert guest
    # Held until the server answered the empty nick line, so not taken for a nick:
    assert re.search(rf"^\d\d:\d\d:\d\d #lobby <{guest.group(1)}> hello$", out, re.M)


def free_port() -> int:
    """A port nobody listens on (the probe closes it again at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(40)
def test_unreachable_server_keeps_retrying_until_ctrl_d(start):
    alice = start.term(free_port(), "--nick", "alice")
    alice.wait_for(r"cannot connect to 127\.0\.0\.1:\d+ \(connection refused\); retrying in ")
    alice.wait_for(r"\(offline\) >")
    alice.send("anyone?\r")
    alice.wait_for("-- not connected; not sent: anyone?")
    alice.send("\x04")
    assert alice.wait_exit() == 0


@pytest.mark.timeout(40)
def test_refused_connection_without_reconnect_exits_1():
    done = subprocess.run(
        [sys.executable, "-m", "sockhub", "chat", f"127.0.0.1:{free_port()}", "--no-reconnect"],
        input=b"hi\n", capture_output=True, timeout=30,
    )
    assert done.returncode == 1
    assert b"connection refused" in done.stderr
