"""The exec service's settings: what may run, where, for how long, and who may log in.

Checked once, when the configuration is read (and again on SIGHUP), so the
running service only ever sees valid settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sockhub.errors import ConfigError
from sockhub.paths import default_data_dir
from sockhub.protocols.exec import DEFAULT_STDIN_WINDOW


def _number(name: str, value: Any, *, whole: bool = False, off: bool = True,
            minimum: float = 0) -> Any:
    if value is None and off:
        return None
    kind = int if whole else int | float
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise ConfigError(f"exec: {name} must be {'a whole number' if whole else 'a number'}"
                          f"{' or none' if off else ''}, not {value!r}")
    if value < minimum or (not whole and value == 0):
        raise ConfigError(f"exec: {name} must be more than 0, not {value!r}")
    return value


def _env(value: Any) -> dict[str, str]:
    items = value.items() if isinstance(value, dict) else (
        str(item).partition("=")[::2] for item in value or ()
    )
    env: dict[str, str] = {}
    for key, val in items:
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ConfigError(f"exec: bad environment variable name {key!r}")
        if not isinstance(val, str) or "\0" in val:
            raise ConfigError(f"exec: bad value for environment variable {key}")
        env[key] = val
    return env


_COUNT = {"whole": True, "off": False, "minimum": 1}
_SECONDS = {"off": False}
#: How each numeric setting is checked: whole or not, may it be None (off).
_NUMBERS: dict[str, dict[str, Any]] = {
    "timeout": {}, "max_output": {"whole": True},
    "max_concurrent": _COUNT, "stdin_window": _COUNT,
    "auth_max_pending": _COUNT, "auth_max_pending_per_ip": _COUNT,
    "auth_timeout": _SECONDS, "auth_window": _SECONDS, "auth_delay": _SECONDS,
    "auth_delay_max": _SECONDS, "kill_grace": _SECONDS,
}

NO_ALLOW_LIST = """exec: no allow list: every token holder could run anything, shells included.
Say what clients may run, for example:
  sockhub serve exec --allow uptime --allow df
or accept that explicitly:
  sockhub serve exec --allow-any
(in a TOML config: allow = ["uptime", "df"], or allow_any = true)"""


@dataclass(frozen=True, kw_only=True)
class ExecSettings:
    """The exec service's settings (``options`` of its ServiceConfig).

    Every limit has a default fit for a server others can reach; ``None``
    turns the optional ones off.
    """

    data_dir: Path = field(default_factory=default_data_dir)
    #: The shared secret; generated into ``data_dir/exec-token`` if not given.
    token_file: Path | None = None
    #: argv[0] must be one of these, exactly (``ls`` does not allow ``/bin/ls``).
    #: Required, unless ``allow_any``.
    allow: tuple[str, ...] | None = None
    #: Any argv[0] runs: the token is then the only gate. Exclusive with ``allow``.
    allow_any: bool = False
    #: Adds ``sh`` to the allow list (so ``sockhub exec --shell`` works); on
    #: its own it is the allow list ``["sh"]``, which runs anything.
    allow_shell: bool = False
    cwd: Path | None = None
    #: Added to the clean environment (``PATH=/usr/bin:/bin``); may replace PATH.
    env: dict[str, str] = field(default_factory=dict)
    # Limits
    timeout: float | None = 300.0  # seconds a command may run
    max_output: int | None = 128 * 1024 * 1024  # stdout + stderr bytes per command
    max_concurrent: int = 8  # commands at once; one more is refused with "busy"
    stdin_window: int = DEFAULT_STDIN_WINDOW
    # Authentication
    insecure: bool = False  # allow a non-loopback address without TLS
    auth_timeout: float = 10.0  # seconds from connect to an AUTH
    # A wrong answer is told after auth_delay seconds, doubled for each earlier
    # failure from that address, at most auth_delay_max.
    auth_delay: float = 0.5
    auth_delay_max: float = 5.0  # below the clients' 10 s login timeout
    auth_window: float = 60.0  # this long without a failure, an address starts over
    # Logins in progress (connected, not yet in; a wrong answer counts until
    # it is told): past either cap a new connection is refused before any
    # challenge, so guessing costs an attacker slots for the delays above.
    auth_max_pending: int = 64
    auth_max_pending_per_ip: int = 8
    kill_grace: float = 2.0  # SIGTERM, then SIGKILL after this

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ExecSettings:
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"exec: unknown option(s): {', '.join(sorted(unknown))}")
        values = dict(options)
        values["data_dir"] = Path(values.get("data_dir") or default_data_dir())
        if values.get("token_file") is not None:
            values["token_file"] = Path(values["token_file"])
        if values.get("allow") is not None:
            allow = values["allow"]
            if isinstance(allow, str) or not all(isinstance(a, str) and a for a in allow):
                raise ConfigError("exec: allow must be a list of command names")
            values["allow"] = tuple(allow)
        for flag in ("allow_any", "allow_shell", "insecure"):
            if not isinstance(values.get(flag, False), bool):
                raise ConfigError(f"exec: {flag} must be true or false")
        if values.get("allow_any") and values.get("allow") is not None:
            raise ConfigError("exec: give an allow list or allow_any (--allow or --allow-any), "
                              "not both")
        if not (values.get("allow") or values.get("allow_any") or values.get("allow_shell")):
            raise ConfigError(NO_ALLOW_LIST)
        if values.get("cwd") is not None:
            cwd = Path(values["cwd"])
            if not cwd.is_dir():
                raise ConfigError(f"exec: cwd {cwd} is not a directory")
            values["cwd"] = cwd
        values["env"] = _env(values.get("env"))
        for name in set(values) & set(_NUMBERS):
            values[name] = _number(name, values[name], **_NUMBERS[name])
        settings = cls(**values)
        if settings.auth_delay_max < settings.auth_delay:
            raise ConfigError("exec: auth_delay_max must be at least auth_delay")
        return settings

    def allowed(self) -> frozenset[str] | None:
        """The argv[0] values that may run, or None for any."""
        if self.allow_any:
            return None
        return frozenset((*(self.allow or ()), *(["sh"] if self.allow_shell else [])))
