"""The ``sockhub`` command: parse options into config objects, call the library.

One module per concern: :mod:`~sockhub.cli.serve` (the servers, its flags
generated from the settings declarations), :mod:`~sockhub.cli.clients`
(``connect``, ``ping``, ``chat``), :mod:`~sockhub.cli.exec`,
:mod:`~sockhub.cli.bench`, :mod:`~sockhub.cli.passwd`; and
:mod:`~sockhub.cli.reference`, the option tables of docs/config.md. Each
command's parser names the function that runs it; no argparse Namespace
leaves this package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sockhub._version import __version__
from sockhub.cli.bench import add_bench
from sockhub.cli.clients import add_chat, add_connect, add_ping
from sockhub.cli.exec import add_exec
from sockhub.cli.files import add_get, add_ls, add_rm, add_send
from sockhub.cli.passwd import add_passwd
from sockhub.cli.summaries import SUMMARIES
from sockhub.errors import ConfigError

__all__ = ["build_parser", "main"]


def add_serve(sub: Any) -> None:
    """``serve``'s parser, imported only when built: it needs the whole service registry."""
    from sockhub.cli.serve import add_serve as add

    add(sub)


#: Every command and what adds its parser.
ADDERS: dict[str, Callable[[Any], None]] = {
    "serve": add_serve, "connect": add_connect, "ping": add_ping, "bench": add_bench,
    "chat": add_chat, "exec": add_exec, "passwd": add_passwd,
    "send": add_send, "get": add_get, "ls": add_ls, "rm": add_rm,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``command`` only that command's in full.

    The other commands are then listed by name and summary alone, so a
    client command does not import the service registry ``serve`` needs.
    """
    parser = argparse.ArgumentParser(
        prog="sockhub",
        description="Socket services on asyncio: servers, a netcat-like client, "
        "ping and load generators.",
        epilog="Run 'sockhub COMMAND --help' for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"sockhub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, add in ADDERS.items():
        if command is None or name == command:
            add(sub)
        else:
            sub.add_parser(name, help=SUMMARIES[name])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sockhub`` command; returns the exit status."""
    words = sys.argv[1:] if argv is None else list(argv)
    command = next((w for w in words if not w.startswith("-")), None)
    args = build_parser(command if command in ADDERS else None).parse_args(words)
    try:
        status: int = args.run(args)
        return status
    except ConfigError as exc:
        print(f"sockhub {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
