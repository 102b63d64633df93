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
from collections.abc import Sequence

from sockhub._version import __version__
from sockhub.cli.bench import add_bench
from sockhub.cli.clients import add_chat, add_connect, add_ping
from sockhub.cli.exec import add_exec
from sockhub.cli.passwd import add_passwd
from sockhub.cli.serve import add_serve
from sockhub.errors import ConfigError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sockhub",
        description="Socket services on asyncio: servers, a netcat-like client, "
        "ping and load generators.",
        epilog="Run 'sockhub COMMAND --help' for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"sockhub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (add_serve, add_connect, add_ping, add_bench, add_chat, add_exec, add_passwd):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sockhub`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
        return status
    except ConfigError as exc:
        print(f"sockhub {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
