"""irctest controller for sockhub's IRC door.

Source of truth: sockhub's tools/irctest/sockhub.py.  Symlink (or copy) it to
irctest/controllers/sockhub.py in an irctest checkout, then run
``pytest --controller irctest.controllers.sockhub ...`` (see README.md here).

The sockhub binary is $SOCKHUB_BIN if set, else <repo>/.venv/bin/sockhub when
this file is (a symlink to) the repository copy, else ``sockhub`` on $PATH.
``make irctest`` (the repository's Makefile) does all of this for you.

What the server declares below (capabilities, optional behaviors, ISUPPORT
values) is what docs/irc.md promises: each declaration turns one of
irctest's "not supported" skips into a test that must pass.
"""

import atexit
import functools
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from irctest import patma
from irctest.basecontrollers import (
    BaseServerController,
    DirectoryBasedController,
    ProcessStopped,
)
from irctest.runner import NotImplementedByController
from irctest.specifications import Capabilities, OptionalBehaviors

OPER_NAME = "operuser"  # what irctest's OPER tests send
OPER_PASSWORD = "operpassword"
START_ATTEMPTS = 3
# Tests that need what this server does not do (yet), by name: the reason.
NOT_BUILT = {
    # Ergo's always-on: a client that reconnects is put back in its channels.
    "testReadMarkerPersistsAcrossReconnect": "always-on clients (rejoined on reconnect)",
    # Ergo's per-account NickServ SET MULTICLIENT: here --multiclient is server-wide.
    "testDisableAutomaticResumption": "a per-account multiclient setting (NS SET MULTICLIENT)",
}


def sockhub_bin() -> str:
    env = os.environ.get("SOCKHUB_BIN")
    if env:
        return env
    # <repo>/tools/irctest/sockhub.py -> <repo>/.venv/bin/sockhub
    repo_guess = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "sockhub"
    if repo_guess.is_file():
        return str(repo_guess)
    found = shutil.which("sockhub")
    if not found:
        raise RuntimeError("sockhub not found: set SOCKHUB_BIN")
    return found


@functools.cache
def oper_hash() -> str:
    """The operator password hash, computed once per process by `sockhub passwd`."""
    out = subprocess.run(
        [sockhub_bin(), "passwd"],
        input=OPER_PASSWORD + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert out and "\n" not in out, out
    return out


# Servers started by this process (one xdist worker) and not yet killed.
# irctest never calls tearDown when a setUp raises SkipTest after starting the
# server (bot_mode.py's BotModeTestCase does: sockhub has no BOT token), so such
# servers would outlive the run. A worker runs one test at a time, so a server
# still here when the next one starts is a leftover: it is stopped then, and
# the rest when the worker exits.
_live: "dict[int, SockhubController]" = {}


def _stop_leftovers(keep: "SockhubController | None" = None) -> None:
    for controller in list(_live.values()):
        if controller is not keep:
            controller.kill()


atexit.register(_stop_leftovers)


class SockhubController(BaseServerController, DirectoryBasedController):
    software_name = "sockhub"
    _port_wait_interval = 0.05
    # Accounts are built in (docs/accounts.md): SASL, and NickServ answered by
    # the server itself, as Ergo does; no STS.
    supported_sasl_mechanisms = {"PLAIN", "SCRAM-SHA-256"}
    supports_sts = False
    nickserv = "NickServ"

    # Capabilities offered by the IRC door (docs/irc.md, "IRCv3").
    # Not offered: setname, multiline, message-redaction, sts.
    capabilities = frozenset(
        (
            Capabilities.ACCOUNT_NOTIFY,
            Capabilities.ACCOUNT_TAG,
            Capabilities.AWAY_NOTIFY,
            Capabilities.BATCH,
            Capabilities.ECHO_MESSAGE,
            Capabilities.EXTENDED_JOIN,
            Capabilities.EXTENDED_MONITOR,
            Capabilities.LABELED_RESPONSE,
            Capabilities.MESSAGE_TAGS,
            Capabilities.MULTI_PREFIX,
            Capabilities.READ_MARKER,
            Capabilities.SERVER_TIME,
        )
    )

    # Declaring a behavior turns irctest's "not supported" skip into a failure,
    # so only what docs/irc.md claims is listed.
    optional_behaviors = frozenset(
        (
            OptionalBehaviors.CAP_REQ_MINUS,  # CAP REQ -name
            OptionalBehaviors.ELIST_M,  # ELIST=MNU: LIST *mask*, !*mask*, >n, <n
            OptionalBehaviors.ELIST_N,
            OptionalBehaviors.ELIST_U,
            OptionalBehaviors.INVITE_LIST,  # INVITE alone: 336... 337
            OptionalBehaviors.NO_CTCP,  # +C
            OptionalBehaviors.INVITE_OVERRIDES_LIMIT,  # invitation passes +i +k +l +b
            OptionalBehaviors.MULTI_JOIN,  # TARGMAX JOIN:
            OptionalBehaviors.MULTI_KICK,  # TARGMAX KICK:4
            OptionalBehaviors.MULTI_NAMES_COMMAND,  # TARGMAX NAMES:
            OptionalBehaviors.MULTI_PRIVMSG,  # TARGMAX PRIVMSG:4
        )
    )

    # RPL_ISUPPORT tokens the door advertises (docs/irc.md, "RPL_ISUPPORT");
    # checked by isupport.py's testValues.
    isupport = {
        "CASEMAPPING": "ascii",
        "CHANTYPES": "#",
        "CHANNELLEN": "50",
        "CHANMODES": "b,k,l,Cimnpst",
        "CHATHISTORY": patma.ANYSTR,
        "ELIST": "MNU",
        "MSGREFTYPES": "msgid,timestamp",
        "PREFIX": "(ov)@+",
        "TARGMAX": patma.ANYSTR,
        "UTF8ONLY": None,
        "WHOX": None,
    }

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: str | None,
        ssl: bool,
        run_services: bool,
        faketime: str | None,
        websocket_hostname: str | None = None,
        websocket_port: int | None = None,
    ) -> None:
        # run_services: the accounts and NickServ are the server's own.
        if self.test_config.account_registration_requires_email:
            raise NotImplementedByController("account registration with an email address")
        assert self.proc is None
        _stop_leftovers(keep=self)
        _live[id(self)] = self
        self.port = port
        self.hostname = hostname
        self.create_config()  # self.directory: a fresh temporary data dir
        assert self.directory
        if faketime and shutil.which("faketime"):
            self.faketime_enabled = True
        if ssl:
            self.gen_ssl()

        # A start can fail with "address already in use" when, under xdist,
        # another test's client socket happens to hold the port irctest handed
        # out; the port cannot change (the test already knows it), so retry.
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start(port, password=password, ssl=ssl, faketime=faketime,
                            websocket_hostname=websocket_hostname,
                            websocket_port=websocket_port)
                return
            except ProcessStopped as exc:
                if attempt == START_ATTEMPTS or "already in use" not in str(exc):
                    raise
                self.proc = None
                time.sleep(0.5 * attempt)

    def kill(self) -> None:
        _live.pop(id(self), None)
        super().kill()

    def _start(self, port: int, *, password: str | None, ssl: bool, faketime: str | None,
               websocket_hostname: str | None = None,
               websocket_port: int | None = None) -> None:
        assert self.directory
        # The line door must listen somewhere too: take its port from irctest's
        # registry of used ports rather than "--port 0", whose ephemeral pick
        # could be a port irctest has just handed to a parallel (xdist) test.
        (_, line_port) = self.get_hostname_and_port()
        self.line_port = line_port

        # Loopback only, whatever address irctest picked (it hands out
        # 0.0.0.0, which its clients reach through loopback anyway).
        cmd = [
            sockhub_bin(),
            "serve",
            "chat",
            "--host",
            "127.0.0.1",
            "--port",
            str(line_port),
            "--irc-port",
            str(port),
            # IRC over WebSocket (irctest's websocket.py): the web door at /.
            # irctest's clients name the host it handed out (0.0.0.0), which the
            # web door's DNS-rebinding check refuses (421) unless it is an origin.
            *(
                ["--web-port", str(websocket_port),
                 "--web-origin", f"http://{websocket_hostname or self.hostname}:{websocket_port}"]
                if websocket_port is not None
                else []
            ),
            "--data-dir",
            str(self.directory / "data"),
            "--server-name",
            "My.Little.Server",
            "--flood-rate",
            "none",
            "--oper",
            f"{OPER_NAME}={oper_hash()}",
            # irctest registers many accounts from one address, with short passwords.
            "--accounts-per-hour",
            "100000",
            "--account-password-min",
            "1",
            *([] if self.test_config.account_registration_before_connect
              else ["--accounts-after-connect"]),
        ]
        if password is not None:
            cmd += ["--irc-password", password]
        if ssl:
            cmd += ["--tls-cert", str(self.pem_path), "--tls-key", str(self.key_path)]
        if self.faketime_enabled:
            cmd = ["faketime", "-f", str(faketime), *cmd]

        if self.debug_mode:  # IRCTEST_DEBUG_LOGS=1: stream the server's log
            self.proc = self.execute(cmd, proc_name="sockhub")
        else:  # keep it in the temporary directory, to explain a failed start
            log_path = self.directory / "sockhub.log"
            with log_path.open("wb") as log:
                self.proc = self.execute(cmd, stdout=log, stderr=log)
        if not self.debug_mode:
            self._wait_for_log(log_path, f"listening on 127.0.0.1:{port} (irc)")
        # Then irctest's own check (connect, QUIT, wait for ERROR).
        self.wait_for_port()

    def wait_for_services(self) -> None:
        """NickServ is the server itself: nothing to wait for (as with Ergo)."""

    def registerUser(self, case: Any, username: str, password: str | None = None) -> None:
        """Register an account at the line door (its lines are longer than IRC's 512
        bytes, so irctest's 592-character passwords fit): nick, then /register."""
        # pytest names the running test: "path::Class::testName[param] (call)".
        current = os.environ.get("PYTEST_CURRENT_TEST", "").rpartition("::")[2]
        reason = NOT_BUILT.get(current.split("[")[0].split(" ")[0])
        if reason is not None:
            raise NotImplementedByController(reason)
        assert password
        with socket.create_connection(("127.0.0.1", self.line_port), timeout=30) as sock:
            reader = sock.makefile("rb")

            def wait_for(needle: bytes) -> None:
                while True:
                    line = reader.readline()
                    if not line or line.startswith(b"error:"):
                        raise AssertionError(f"registering {username}: {line!r}")
                    if needle in line:
                        return

            wait_for(b"enter a nick")
            sock.sendall(username.encode() + b"\n")
            wait_for(b"-- you are ")
            sock.sendall(b"/register " + password.encode() + b"\n")
            wait_for(b"registered")
            sock.sendall(b"/quit\n")
            wait_for(b"bye")

    def _wait_for_log(self, log_path: Path, needle: str, timeout: float = 60) -> None:
        """Wait for sockhub to log that the IRC door listens (a bare connect
        could reach another process that holds the port)."""
        assert self.proc
        deadline = time.monotonic() + timeout
        while True:
            text = log_path.read_text(errors="replace")
            if needle in text:
                return
            if self.proc.poll() is not None:
                raise ProcessStopped(
                    f"process returned {self.proc.returncode}; sockhub said:\n{text[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"sockhub did not log {needle!r}:\n{text[-2000:]}")
            time.sleep(0.02)


def get_irctest_controller_class() -> type[SockhubController]:
    return SockhubController
