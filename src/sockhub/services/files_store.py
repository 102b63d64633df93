"""The files service's filesystem side: names to paths inside the root, parts, hashing.

Everything here is blocking file I/O, small and checked; the door decides
when to call it (hashing a large part runs in a worker thread).

Names cannot escape the root: the protocol has refused ``..``, absolute
names and control characters already (``protocols/files/frames.py:
check_name``); here every existing component is looked at on disk, and a
symbolic link whose target lies outside the root, or anything that is not
a regular file or a directory (a device, a FIFO, a socket), is refused.
Files are opened with ``O_NOFOLLOW`` so the last component cannot be
swapped for a link between the check and the open.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sockhub.protocols.files import Entry, ErrorCode, FilesProtocolError, digests

#: The part of an upload in progress lives beside its target under this name
#: (the target's name hashed: NAME_MAX leaves no room for a suffix).
PART_PREFIX = ".sockhub-part."
READ_CHUNK = 1024 * 1024


def refused(code: ErrorCode, message: str) -> FilesProtocolError:
    return FilesProtocolError(code, message)


@dataclass(frozen=True, slots=True)
class Located:
    """A name resolved inside the root."""

    name: str
    path: Path  # with every existing symbolic link resolved; inside the root
    exists: bool
    is_dir: bool


def part_path(target: Path) -> Path:
    digest = hashlib.sha256(target.name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return target.with_name(PART_PREFIX + digest)


def is_part(name: str) -> bool:
    return name.startswith(PART_PREFIX)


def locate(root: Path, parts: tuple[str, ...]) -> Located:
    """Resolve ``parts`` under ``root`` (already resolved), refusing escapes.

    Raises:
        FilesProtocolError: BAD_NAME for a link out of the root, a special
            file on the way, a part file's name; NOT_FOUND when a component
            on the way is a file.
    """
    name = "/".join(parts)
    if any(is_part(p) for p in parts):
        raise refused(ErrorCode.BAD_NAME, f"{name!r}: names starting {PART_PREFIX!r} are "
                      "the server's own")
    real = Path(os.path.realpath(root.joinpath(*parts)))
    if real != root and root not in real.parents:
        raise refused(ErrorCode.BAD_NAME, f"{name!r} leads out of the root (a symbolic link)")
    # Every existing ancestor must be a directory (realpath does not check).
    for ancestor in [*reversed(real.parents), real]:
        if ancestor != root and root not in ancestor.parents:
            continue
        try:
            st = os.lstat(ancestor)
        except FileNotFoundError:
            return Located(name, real, False, False)
        except OSError as exc:
            raise refused(ErrorCode.IO_ERROR, f"{name!r}: {exc.strerror}") from None
        if ancestor == real:
            if stat.S_ISDIR(st.st_mode):
                return Located(name, real, True, True)
            if stat.S_ISREG(st.st_mode):
                return Located(name, real, True, False)
            raise refused(ErrorCode.BAD_NAME, f"{name!r} is not a regular file or directory")
        if not stat.S_ISDIR(st.st_mode):
            raise refused(ErrorCode.NOT_FOUND, f"{name!r}: a component on the way is a file")
    raise AssertionError("unreachable")


def hash_file(path: Path | int, count: int, name: str = digests.SHA256) -> digests.Hasher:
    """The digest ``name`` of the first ``count`` bytes (fewer if the file is shorter)."""
    digest = digests.new(name)
    fd = path if isinstance(path, int) else os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        offset = 0
        while offset < count:
            chunk = os.pread(fd, min(READ_CHUNK, count - offset), offset)
            if not chunk:
                break
            digest.update(chunk)
            offset += len(chunk)
    finally:
        if not isinstance(path, int):
            os.close(fd)
    return digest


def hash_prefix_and_whole(fd: int, offset: int, size: int, name: str = digests.SHA256
                          ) -> tuple[str, str]:
    """The digest ``name`` of the first ``offset`` bytes and of all ``size``, in one read.

    Closes ``fd``.
    """
    try:
        return _hash_prefix_and_whole(fd, offset, size, name)
    finally:
        os.close(fd)


def _hash_prefix_and_whole(fd: int, offset: int, size: int, name: str) -> tuple[str, str]:
    digest = digests.new(name)
    prefix = digest.hexdigest() if offset == 0 else ""
    position = 0
    while position < size:
        want = min(READ_CHUNK, size - position)
        if position < offset < position + want:
            want = offset - position
        chunk = os.pread(fd, want, position)
        if not chunk:
            break
        digest.update(chunk)
        position += len(chunk)
        if position == offset:
            prefix = digest.hexdigest()
    return prefix, digest.hexdigest()


def used_bytes(root: Path) -> int:
    """What the root's regular files add up to (parts included), links not followed."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def _entry(root: Path, path: Path) -> Entry | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    kind = ("file" if stat.S_ISREG(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode)
            else "other")
    return Entry(path.relative_to(root).as_posix(), kind,
                 st.st_size if kind == "file" else 0, stat.S_IMODE(st.st_mode), st.st_mtime)


def listing(root: Path, where: Located, *, recursive: bool, limit: int
            ) -> tuple[list[Entry], bool]:
    """Entries of a directory (or every regular file below it), sorted; and if cut."""
    if not where.exists:
        raise refused(ErrorCode.NOT_FOUND, f"{where.name!r} does not exist")
    if not where.is_dir:
        entry = _entry(root, where.path)
        return ([entry] if entry is not None else []), False
    found: list[Entry] = []
    if recursive:
        for directory, dirs, files in os.walk(where.path):
            dirs.sort()
            for name in sorted(files):
                if is_part(name):
                    continue
                entry = _entry(root, Path(directory, name))
                if entry is not None and entry.type == "file":
                    found.append(entry)
                    if len(found) > limit:
                        return sorted(found[:limit], key=lambda e: e.name), True
        return sorted(found, key=lambda e: e.name), False
    with os.scandir(where.path) as scan:
        for item in scan:
            if is_part(item.name):
                continue
            entry = _entry(root, Path(item.path))
            if entry is not None:
                found.append(entry)
    found.sort(key=lambda e: e.name)
    return found[:limit], len(found) > limit
