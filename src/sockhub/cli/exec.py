"""``sockhub exec``: run a command on a ``sockhub serve exec`` server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from sockhub.cli.clients import add_client_tls, client_tls
from sockhub.cli.summaries import SUMMARIES

EPILOG_EXEC = """\
Runs CMD on the server directly, without a shell (so '*' or '$HOME' reach it
as they are), copies its stdout and stderr to this one's as they arrive,
forwards standard input (unless -n), and exits with the command's exit
status: 128+N if signal N killed it, 124 if it timed out, 125 if it passed
the server's output limit, 126 if it was refused, 127 if not found, 130 if
interrupted, 255 if the connection or the login failed. Ctrl-C stops the
remote command. With no CMD, reads one command per line ('exit' quits).
Options go before the '--' that starts the command.

examples:
  sockhub exec 127.0.0.1:9001 -- uname -a
  sockhub exec 10.0.0.5:9001 --tls --cafile ca.pem --token-file tok -- df -h /
  tar c src | sockhub exec 127.0.0.1:9001 -- tar x -C /tmp/copy
  sockhub exec 127.0.0.1:9001 --shell -- 'ls | wc -l'     (server: --allow-shell)
  sockhub exec 127.0.0.1:9001                              (interactive)
"""


class _CommandAfterDashes(argparse.ArgumentParser):
    """``sockhub exec``'s parser: every word after the first ``--`` is the remote command.

    argparse alone would read the command's own options (``ls -l``) as ours.
    """

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> Any:
        words = list(sys.argv[1:] if args is None else args)
        command: list[str] = []
        if "--" in words:
            cut = words.index("--")
            words, command = words[:cut], words[cut + 1 :]
        parsed, extras = super().parse_known_args(words, namespace)
        parsed.remote_command = [*parsed.remote_command, *command]
        return parsed, extras


def add_exec(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "exec",
        help=SUMMARIES["exec"],
        description="Run a command on a 'sockhub serve exec' server.",
        epilog=EPILOG_EXEC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.__class__ = _CommandAfterDashes
    p.add_argument("address", metavar="HOST:PORT", help="the exec server ([::1]:PORT for IPv6)")
    p.add_argument("remote_command", nargs="*", metavar="CMD",
                   help="after '--': the command and its arguments; none for a prompt")
    p.add_argument("--token-file", metavar="FILE",
                   help="the server's token, mode 0600 (default "
                   "~/.local/state/sockhub/exec-token, where a local server puts it)")
    p.add_argument("-n", "--no-stdin", action="store_true",
                   help="give the command empty input instead of this standard input")
    p.add_argument("--shell", action="store_true",
                   help="run the command (or each prompt line) as sh -c TEXT; the server "
                   "needs --allow-shell")
    add_client_tls(p, server_name=True)
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to connect and log in (default 10)")
    p.set_defaults(run=_cmd_exec)


def _cmd_exec(args: argparse.Namespace) -> int:
    from sockhub.client.address import parse_hostport
    from sockhub.client.exec import exec_main
    from sockhub.engine import loops
    from sockhub.services.exec import default_token_path, read_token

    host, port = parse_hostport(args.address)
    token = read_token(args.token_file or default_token_path())
    tls = client_tls(args)
    return loops.run(exec_main(host, port, args.remote_command, token=token, tls=tls,
                               server_hostname=args.server_name if tls else None,
                               forward_stdin=not args.no_stdin, shell=args.shell,
                               connect_timeout=args.connect_timeout))
