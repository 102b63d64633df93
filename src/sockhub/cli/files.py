"""``sockhub send``, ``get``, ``ls`` and ``rm``: the files service's clients.

Exit statuses (docs/files-protocol.md): 0 done; 1 a size or digest
mismatch, or a resume base that differs; 2 bad usage or an unreadable token
or local file; 3 not found; 4 exists (use --force); 5 refused (read-only,
too large, quota, a refused name, a directory, busy, a --digest the server
lacks); 255 cannot connect, login refused, or the connection broke.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sockhub.cli.clients import add_client_tls, client_tls
from sockhub.cli.summaries import SUMMARIES

TOKEN_HELP = ("the server's token, mode 0600 (default ~/.local/state/sockhub/files-token, "
              "where a local server puts it)")


def _common(p: argparse.ArgumentParser, *, progress: bool) -> None:
    p.add_argument("--token-file", metavar="FILE", help=TOKEN_HELP)
    add_client_tls(p, server_name=True)
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to connect and log in (default 10)")
    if progress:
        p.add_argument("--progress", action="store_true",
                       help="show a progress bar even when stderr is not a terminal")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        p.add_argument("--digest", choices=("auto", "blake3", "sha256"), default="auto",
                       help="the digest that verifies the transfer: auto (default) lets the "
                       "server pick, BLAKE3 where it has it; sha256 or blake3 insist on one")




def add_send(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("send", help=SUMMARIES["send"], description=SUMMARIES["send"] + ".")
    p.add_argument("path", metavar="PATH", help="a file, a directory (sent as a tree), or - "
                   "for standard input (needs --as)")
    p.add_argument("address", metavar="HOST:PORT", help="the files server")
    p.add_argument("--as", dest="name", metavar="NAME",
                   help="the name on the server (default: PATH's own name)")
    p.add_argument("--force", action="store_true", help="replace files that exist")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted upload from where it stopped")
    _common(p, progress=True)
    p.set_defaults(run=_cmd_send)


def add_get(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("get", help=SUMMARIES["get"], description=SUMMARIES["get"] + ".")
    p.add_argument("name", metavar="NAME", help="a file or directory on the server")
    p.add_argument("address", metavar="HOST:PORT", help="the files server")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="where to put it (default: NAME's own name here); - for stdout")
    p.add_argument("--force", action="store_true", help="replace files that exist")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted download from where it stopped")
    _common(p, progress=True)
    p.set_defaults(run=_cmd_get)


def add_ls(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ls", help=SUMMARIES["ls"], description=SUMMARIES["ls"] + ".")
    p.add_argument("address", metavar="HOST:PORT", help="the files server")
    p.add_argument("path", metavar="PATH", nargs="?", default="", help="a directory (default "
                   "the root)")
    p.add_argument("-R", "--recursive", action="store_true", help="every file below PATH")
    p.add_argument("-l", "--long", action="store_true", help="mode, size and time too")
    _common(p, progress=False)
    p.set_defaults(run=_cmd_ls)


def add_rm(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rm", help=SUMMARIES["rm"], description=SUMMARIES["rm"] + ".")
    p.add_argument("names", metavar="NAME", nargs="+", help="files on the server")
    p.add_argument("address", metavar="HOST:PORT", help="the files server")
    _common(p, progress=False)
    p.set_defaults(run=_cmd_rm)


def _connect(args: argparse.Namespace) -> Any:
    from sockhub.client.address import parse_hostport
    from sockhub.client.files import FilesClient
    from sockhub.paths import default_data_dir
    from sockhub.services.login import read_token

    host, port = parse_hostport(args.address)
    token = read_token(args.token_file or default_data_dir() / "files-token")
    tls = client_tls(args)
    return FilesClient.connect(host, port, token=token, tls=tls,
                               server_hostname=args.server_name if tls else None,
                               timeout=args.connect_timeout,
                               digest=getattr(args, "digest", "auto"))


def _fail(command: str, exc: Exception, status: int) -> int:
    print(f"sockhub {command}: {exc}", file=sys.stderr)
    return status


@contextlib.contextmanager
def _bar(args: argparse.Namespace, label: str, total: int
         ) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar (bytes, speed, ETA) on a terminal or with --progress."""
    if args.quiet or not (args.progress or sys.stderr.isatty()):
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True, force_terminal=args.progress or None)
    with Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)


def _cmd_send(args: argparse.Namespace) -> int:
    from sockhub.client.files import EXIT_USAGE, FilesError, spool, walk_files

    source = Path(args.path)
    jobs: list[tuple[Path | None, str]]
    try:
        if args.path == "-":
            if not args.name:
                return _fail("send", ValueError("sending standard input needs --as NAME"),
                             EXIT_USAGE)
            jobs = [(None, args.name)]
        elif source.is_dir():
            base = args.name or source.resolve().name
            jobs = [(path, f"{base}/{name}") for path, name in walk_files(source)]
        elif source.is_file():
            jobs = [(source, args.name or source.name)]
        else:
            return _fail("send", FileNotFoundError(f"{source}: no such file or directory"),
                         EXIT_USAGE)
    except OSError as exc:
        return _fail("send", exc, EXIT_USAGE)
    try:
        with _connect(args) as client:
            for path, name in jobs:
                try:
                    stream = spool(sys.stdin.buffer) if path is None else open(path, "rb")  # noqa: SIM115
                except OSError as exc:
                    return _fail("send", exc, EXIT_USAGE)
                size = os.fstat(stream.fileno()).st_size
                with stream, _bar(args, name, size) as progress:
                    client.put(stream, name, force=args.force, resume=args.resume,
                               progress=progress)
    except FilesError as exc:
        return _fail("send", exc, exc.exit_status)
    return 0


def _cmd_get(args: argparse.Namespace) -> int:
    from sockhub.client.files import EXIT_REFUSED, FilesError

    try:
        with _connect(args) as client:
            listing = client.list(args.name, recursive=True)
            top = [e for e in listing.entries if e.name == args.name.strip("/")]
            if args.output == "-":
                if not top:
                    return _fail("get", ValueError(f"{args.name} is a directory; a tree "
                                 "cannot go to standard output"), EXIT_REFUSED)
                with _bar(args, args.name, top[0].size) as progress:
                    client.get(args.name, None, stdout=sys.stdout.buffer, progress=progress)
                sys.stdout.buffer.flush()
                return 0
            out = Path(args.output or Path(args.name).name)
            if top:  # a single file
                jobs = [(args.name, out)]
            else:
                prefix = args.name.strip("/") + "/"
                out.mkdir(parents=True, exist_ok=True)
                jobs = [(e.name, out / e.name[len(prefix):]) for e in listing.entries
                        if e.name.startswith(prefix)]
            for name, target in jobs:
                size = next((e.size for e in listing.entries if e.name == name), 0)
                with _bar(args, name, size) as progress:
                    client.get(name, target, force=args.force, resume=args.resume,
                               progress=progress)
    except FilesError as exc:
        return _fail("get", exc, exc.exit_status)
    except OSError as exc:
        return _fail("get", exc, 2)
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    import time

    from sockhub.client.files import FilesError

    try:
        with _connect(args) as client:
            listing = client.list(args.path, recursive=args.recursive)
    except FilesError as exc:
        return _fail("ls", exc, exc.exit_status)
    for entry in listing.entries:
        name = entry.name + ("/" if entry.type == "dir" else "")
        if args.long:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime))
            print(f"{entry.mode:04o} {entry.size:>14} {when} {name}")
        else:
            print(name)
    if listing.truncated:
        print("sockhub ls: the listing was cut short by the server", file=sys.stderr)
    return 0


def _cmd_rm(args: argparse.Namespace) -> int:
    from sockhub.client.files import FilesError

    try:
        with _connect(args) as client:
            for name in args.names:
                client.delete(name)
    except FilesError as exc:
        return _fail("rm", exc, exc.exit_status)
    return 0
