"""The files protocol's digests, and how a transfer picks one (docs/files-protocol.md: Digests).

SHA-256 is mandatory: every server has it, and it is what a client that
offers nothing gets (version 1 clients, the standard-library uploader of
the docs). BLAKE3 is used when the ``blake3`` package imports (a declared
dependency, so normally it does); without it :data:`DIGESTS` is SHA-256
alone, so READY lists only that and no sockhub service fails to start for
want of a wheel. BLAKE3 costs a third of SHA-256's CPU per byte (0.27-0.34
against 0.71-0.73 CPU-s per GiB on the benchmark machine, paid on both
ends of a transfer: BENCHMARKS.md), which is what lets an upload keep
pace with a netcat pipe on a busy machine.

The server lists what it has in READY (``digests``, its preference order);
a client offers (``digests`` in PUT or GET) only to a server that listed
them, and the server picks the first of its own list that the client
offered, SHA-256 when none. A client can work the pick out from READY
alone, which a resumed GET needs: its ``prefix_<digest>`` goes in the GET.

Hashing is computation, not I/O: ``hashlib`` and ``blake3`` both release
the GIL on large updates, so a worker thread hashes beside the loop.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Protocol

try:
    import blake3 as _blake3  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # no wheel for this platform: SHA-256 only
    HAVE_BLAKE3 = False
else:
    HAVE_BLAKE3 = True

SHA256 = "sha256"
BLAKE3 = "blake3"
#: Every digest this process has, in the order a server prefers them.
DIGESTS: tuple[str, ...] = (BLAKE3, SHA256) if HAVE_BLAKE3 else (SHA256,)
#: A digest name on the wire: lower-case letters, digits, - and _ (an unknown one is ignored).
NAME = re.compile(r"[a-z0-9_-]{1,32}")
#: Every digest here is 256 bits: 64 lower-case hexadecimal digits.
HEX = re.compile(r"[0-9a-f]{64}")
#: How many names an offer may hold.
MAX_OFFER = 16


class Hasher(Protocol):
    """What ``hashlib.sha256()`` and ``blake3.blake3()`` have in common, as used here."""

    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...

    def copy(self) -> Hasher: ...


def new(name: str) -> Hasher:
    """A fresh hasher for ``name`` (one of :data:`DIGESTS`)."""
    if name == SHA256:
        return hashlib.sha256()
    if name == BLAKE3 and HAVE_BLAKE3:
        hasher: Hasher = _blake3.blake3()
        return hasher
    raise ValueError(f"unknown digest {name!r}")


def pick(offered: Iterable[str] | None, ours: Sequence[str] = DIGESTS) -> str:
    """The server's choice: the first of ``ours`` that the client offered, else SHA-256."""
    if offered is None:
        return SHA256
    wanted = set(offered)
    return next((name for name in ours if name in wanted), SHA256)
