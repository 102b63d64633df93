"""What the settings of every stateful service share: where it keeps its state.

:class:`ServiceSettings` is the base of each service's own settings class
(``ChatSettings``, ``ExecSettings``); its options are the command line's
common ``service`` group, given to every service, and the rest of each
class makes that service's group (``sockhub serve --help``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sockhub.options import option, settle
from sockhub.paths import default_data_dir


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """The options every service's settings have; checked when made."""

    data_dir: Path = option(
        factory=default_data_dir,
        help="where services keep state: chat history and bans, the exec token",
        metavar="DIR",
        default_text="$XDG_STATE_HOME/sockhub, or ~/.local/state/sockhub",
    )

    def __post_init__(self) -> None:
        settle(self)
