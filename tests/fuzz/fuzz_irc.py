"""libFuzzer harness (atheris) for the IRC codec and door: bytes in, no exception out.

Run by tests/codec/test_irc_fuzz.py, or by hand for longer::

    .venv/bin/python tests/fuzz/fuzz_irc.py -runs=1000000 -artifact_prefix=/tmp/

Any exception other than the codec's own refusals is a crash; libFuzzer
then writes the input to ``crash-<sha1>`` and exits with status 1 or 77.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from sockhub.codec.irc import (
        IrcDecodeError,
        IrcFramer,
        IrcInputTooLong,
        IrcSyntaxError,
        parse_message,
    )
    from sockhub.doors.irc import INTERNAL_ERROR, IrcDoor
    from sockhub.limits import Limits
    from sockhub.protocols.base import ConnectionInfo
    from sockhub.services.chat import ChatService, ChatSettings

SERVICE = ChatService(
    ChatSettings(data_dir=Path(tempfile.mkdtemp()), flood_rate=None, server_name="fuzz"),
    Limits(),
)
PRELUDE = b"NICK fuzzer\r\nUSER f 0 * :F\r\nJOIN #f\r\n"


def one_input(data: bytes) -> None:
    framer = IrcFramer(max_line=600)
    for line in framer.feed(data):
        if isinstance(line, bytes):
            with contextlib.suppress(IrcDecodeError, IrcInputTooLong, IrcSyntaxError):
                parse_message(line)
    door = IrcDoor(SERVICE)
    door.connection_made(ConnectionInfo(peer="127.0.0.1:1"))
    door.receive_data(PRELUDE + data)
    door.receive_eof()
    for chunk in door.data_to_send():
        for line in chunk.split(b"\r\n"):
            if line:
                parse_message(line)  # whatever the server says must parse
                assert INTERNAL_ERROR.encode() not in line, line  # no handler failed
    door.connection_lost()
    assert not SERVICE.hub.users, "a user outlived its connection"


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
