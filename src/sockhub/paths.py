"""Where sockhub keeps state by default, and how it keeps it private.

Chat history, bans and the exec token are for the server's owner only: the
data directory is created mode 0700 and each file in it 0600, whatever the
umask. A directory that already exists is left as it is (it may be one the
operator chose and shares on purpose), but one others may read is reported
with the ``chmod`` that fixes it, and one others may write is refused: they
could plant a file or a symlink under a name sockhub is about to open.
Files are sockhub's own, so a loose one (from an older sockhub) is tightened
to 0600 and the change logged; a symlink or anything but a regular file
where one of them should be is refused, never followed.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sockhub.errors import ConfigError

log = logging.getLogger("sockhub.paths")

#: Modes of what sockhub creates: the owner alone may read, write or list.
DIR_MODE = 0o700
FILE_MODE = 0o600


def default_data_dir() -> Path:
    """``$XDG_STATE_HOME/sockhub``, or ``~/.local/state/sockhub``: history, tokens."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local/state")
    return Path(base) / "sockhub"


def private_dir(path: str | Path) -> Path:
    """Create ``path`` and its missing parents with mode 0700, or check an existing one.

    Missing parents are 0700 too, as the XDG base directory spec asks. An
    existing directory open to group or others gets a warning with the fix.

    Raises:
        OSError: the directory cannot be created.
    """
    path = Path(path)
    missing = []
    for parent in (path, *path.parents):
        if parent.exists():
            break
        missing.append(parent)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            continue  # made by a process starting beside us
        os.chmod(directory, DIR_MODE)  # mkdir's mode passes through the umask
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o022:
        raise ConfigError(
            f"data directory {path} is writable by group or others (mode {mode:03o}), who could "
            f"plant files sockhub opens; run: chmod 700 {path}")
    if mode & 0o077:
        log.warning(
            "data directory %s is open to group or others (mode %03o); to keep its history "
            "and tokens private, run: chmod 700 %s", path, mode, path)
    return path


def private_file(path: str | Path) -> Path:
    """Create ``path`` empty with mode 0600 if missing; tighten it to 0600 if not.

    Create a file this way before a library opens it (SQLite creates its
    ``-wal``, ``-shm`` and ``-journal`` files with the main file's mode).
    """
    path = Path(path)
    try:  # O_EXCL: a symlink planted here makes this fail, never followed
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        tighten(path)
    else:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken bits, never added any
        os.close(fd)
    return path


def tighten(path: str | Path) -> None:
    """Make an existing file of ours 0600, logging the change; absent files are fine.

    Raises:
        ConfigError: a symlink, or something other than a regular file, is
            where our file should be.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise ConfigError(f"{path} is {kind}; sockhub will not open it in place of its own file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        try:
            os.chmod(path, FILE_MODE)
        except OSError as exc:
            log.warning("%s is open to group or others (mode %03o) and cannot be tightened "
                        "(%s); run: chmod 600 %s", path, mode, exc.strerror, path)
        else:
            log.warning("%s was open to group or others (mode %03o); now 0600", path, mode)
