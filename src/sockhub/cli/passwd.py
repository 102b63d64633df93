"""``sockhub passwd``: a password hash for the config, so no plain password is stored."""

from __future__ import annotations

import argparse
import sys

from sockhub.cli.summaries import SUMMARIES
from sockhub.errors import ConfigError


def add_passwd(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "passwd",
        help=SUMMARIES["passwd"],
        description="Read a password (twice, without echo, on a terminal; one line from "
        "standard input otherwise) and print its scrypt hash, to paste into the config as "
        "an operator's password or pass to --oper NAME=HASH.",
    )
    p.set_defaults(run=_cmd_passwd)


def _cmd_passwd(args: argparse.Namespace) -> int:
    import getpass

    from sockhub.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ConfigError("an empty password is not allowed")
    print(hash_password(password))
    return 0
