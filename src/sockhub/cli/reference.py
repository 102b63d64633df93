"""The option tables of docs/config.md and README.md, generated from the declarations.

Each table sits between ``<!-- options: NAME -->`` and ``<!-- /options -->``
in those files; tests/cli/test_serve_options.py fails when one differs
from what the code declares. To print the tables, or rewrite them in place::

    python -m sockhub.cli.reference                   # print them
    python -m sockhub.cli.reference docs/config.md    # exit 1 if out of date
    python -m sockhub.cli.reference --write docs/config.md README.md
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from sockhub.config import ServiceConfig
from sockhub.limits import Limits
from sockhub.options import markdown_table
from sockhub.services.registry import SERVICES

_REGION = re.compile(r"(<!-- options: ([\w-]+) -->\n)(.*?)(<!-- /options -->)", re.S)


def tables() -> dict[str, str]:
    """Every generated table, by the name its markers give it."""
    overrides = {name: spec.limits for name, spec in SERVICES.items() if spec.limits}
    found = {
        "service": markdown_table(ServiceConfig),
        "limits": markdown_table(Limits, extra=overrides),
        "readme-limits": markdown_table(Limits, columns=("option", "default"),
                                        headers={"option": "limit"}, extra=overrides),
    }
    shared: set[type] = set()
    for name, spec in SERVICES.items():  # services sharing a settings class share its table
        if spec.settings is not None and spec.settings not in shared:
            shared.add(spec.settings)
            found[name] = markdown_table(spec.settings)
    return found


def render(text: str) -> str:
    """``text`` with every marked table replaced by the generated one.

    Raises:
        KeyError: a marker names no table.
    """
    generated = tables()
    return _REGION.sub(lambda m: m.group(1) + generated[m.group(2)] + m.group(4), text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sockhub.cli.reference",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="Markdown files with marked tables (none: print the tables)")
    parser.add_argument("--write", action="store_true",
                        help="rewrite the tables in place (else: exit 1 if one is out of date)")
    args = parser.parse_args(argv)
    if not args.files:
        for name, table in tables().items():
            print(f"<!-- options: {name} -->\n{table}<!-- /options -->\n")
        return 0
    stale = []
    for file in map(Path, args.files):
        text = file.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            stale.append(str(file))
            if args.write:
                file.write_text(new, encoding="utf-8")
    if stale and not args.write:
        print(f"out of date: {', '.join(stale)}; rewrite with --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
