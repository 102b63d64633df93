"""The files service's settings: the root, what may be stored there, and how much.

The login's settings (token file, ``insecure``, the ``auth_*`` limits) are
:class:`~sockhub.services.login_settings.LoginSettings`, shared with exec.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sockhub.options import option
from sockhub.services.login_settings import LoginSettings


def _root(name: str, path: Path | None) -> Path | None:
    if path is not None and not path.is_dir():
        raise ValueError(f"{name} {path} is not a directory")
    return path


@dataclass(frozen=True, kw_only=True)
class FilesSettings(LoginSettings):
    """The files service's settings (the ``options`` of its ServiceConfig)."""

    root: Path | None = option(
        None, "the directory served; names cannot leave it", metavar="DIR",
        check=_root, default_text="required",
    )
    read_only: bool = option(False, "refuse uploads and deletions")
    max_size: int | None = option(
        None, "the largest file accepted", unit="bytes", off=True, minimum=0,
    )
    quota: int | None = option(
        None, "the most the root's files may add up to, uploads in progress included",
        unit="bytes", off=True, minimum=0,
    )
    max_list: int = option(
        10_000, "entries a listing holds at most", unit="count", minimum=1, cli=False,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.root is None:
            raise ValueError("files needs a root: sockhub serve files --root DIR")
