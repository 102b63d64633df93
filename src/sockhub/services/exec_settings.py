"""The exec service's settings: what may run, where, for how long, and who may log in.

Each is declared once and checked when made: when the configuration is
read (and again on SIGHUP), so the running service only ever sees valid
settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sockhub.options import option
from sockhub.protocols.exec import DEFAULT_STDIN_WINDOW
from sockhub.services.login_settings import LoginSettings


def _commands(name: str, allow: tuple[str, ...]) -> tuple[str, ...]:
    if not all(allow):
        raise ValueError(f"{name} must be a list of command names, not {list(allow)!r}")
    return allow


def _directory(name: str, path: Path) -> Path:
    if not path.is_dir():
        raise ValueError(f"{name} {path} is not a directory")
    return path


def _env(name: str, env: dict[str, str]) -> dict[str, str]:
    for key, value in env.items():
        if not key or "=" in key or "\0" in key:
            raise ValueError(f"bad environment variable name {key!r}")
        if "\0" in value:
            raise ValueError(f"bad value for environment variable {key}")
    return env


NO_ALLOW_LIST = """no allow list: every token holder could run anything, shells included.
Say what clients may run, for example:
  sockhub serve exec --allow uptime --allow df
or accept that explicitly:
  sockhub serve exec --allow-any
(in a TOML config: allow = ["uptime", "df"], or allow_any = true)"""


@dataclass(frozen=True, kw_only=True)
class ExecSettings(LoginSettings):
    """The exec service's settings (the ``options`` of its ServiceConfig).

    Every limit has a default fit for a server others can reach; ``None``
    turns the optional ones off.
    """

    # An exact match: allowing ``ls`` does not allow ``/bin/ls``.
    allow: tuple[str, ...] | None = option(
        None, "a command clients may run, matched exactly against argv[0]; "
        "required, unless --allow-any", metavar="CMD", check=_commands,
    )
    allow_any: bool = option(
        False, "let token holders run any command, shells included (logs a warning); the "
        "token is then the only gate"
    )
    allow_shell: bool = option(
        False, "add sh to the allow list, for 'sockhub exec --shell' (sh runs anything)"
    )
    cwd: Path | None = option(
        None, "working directory of commands", metavar="DIR", check=_directory,
        default_text="the server's",
    )
    env: dict[str, str] = option(
        factory=dict, help="add to the commands' clean environment (PATH=/usr/bin:/bin); "
        "may replace PATH", metavar="KEY=VALUE", check=_env,
    )
    # Limits
    timeout: float | None = option(
        300.0, "time a command may run before its process group is killed",
        unit="seconds", off=True,
    )
    max_output: int | None = option(
        128 * 1024 * 1024, "stdout + stderr bytes per command before it is killed",
        unit="bytes", off=True, minimum=0,
    )
    max_concurrent: int = option(
        8, "commands running at once; one more is refused as busy", minimum=1
    )
    stdin_window: int = option(
        DEFAULT_STDIN_WINDOW, "standard input a client may send ahead of the command "
        "reading it", unit="bytes", minimum=1, cli=False,
    )
    kill_grace: float = option(
        2.0, "time between SIGTERM and SIGKILL when a command is stopped", unit="seconds",
        cli=False,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.allow_any and self.allow is not None:
            raise ValueError("give an allow list or allow_any (--allow or --allow-any), "
                             "not both")
        if not (self.allow or self.allow_any or self.allow_shell):
            raise ValueError(NO_ALLOW_LIST)

    def allowed(self) -> frozenset[str] | None:
        """The argv[0] values that may run, or None for any."""
        if self.allow_any:
            return None
        return frozenset((*(self.allow or ()), *(["sh"] if self.allow_shell else [])))
